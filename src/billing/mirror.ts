import type { MirrorEntry } from "../shared/billing-state.ts";
import type { OrgRecord } from "./org-record.ts";

/**
 * The KV mirror's view of a record. The deadline is published only while it can still
 * fire (in grace, or elapsed and awaiting confirmation), not for exempt or lapsed orgs.
 */
export function mirrorEntryOf(record: OrgRecord): MirrorEntry {
  const deadlineLive = record.reason === "in_grace_period" || record.reason === "grace_elapsed_awaiting_autumn";
  return {
    state: record.state,
    since: record.since,
    version: record.version,
    suspend_at: deadlineLive ? record.suspend_at : null,
    suspended_at: record.suspended_at,
  };
}

/** Whether two records would publish the same mirror entry (versions aside). */
export function sameProjection(a: OrgRecord, b: OrgRecord): boolean {
  const x = mirrorEntryOf(a);
  const y = mirrorEntryOf(b);
  return x.state === y.state && x.since === y.since && x.suspend_at === y.suspend_at && x.suspended_at === y.suspended_at;
}
