import type { MirrorEntry } from "../../shared/billing-state.ts";
import type { IndexEntry } from "../index/entry.ts";
import { payLink, publishedDeadline, type OrgRecord } from "./record.ts";

/**
 * What the world sees of an org: its KV mirror entry (read by the ingest Worker) and its
 * index entry (read by the console). Both are published after every change to them.
 * The deadline is published only while it can still fire (in grace, elapsed and awaiting
 * confirmation, or exempt with an end: the deadline that applies once the exemption ends),
 * not for lapsed orgs or exemptions without end.
 */
export function mirrorEntryOf(record: OrgRecord): MirrorEntry {
  return {
    state: record.state,
    since: record.since,
    version: record.version,
    suspend_at: publishedDeadline(record),
    suspended_at: record.suspended_at,
    pay_url: payLink(record),
    limits: record.limits.map(({ feature_id, signals, reset_at }) => ({ feature_id, signals, reset_at })),
  };
}

/** The index lists orgs by billing state, and which features each holds a plan limit on (for the sweep). */
export function indexEntryOf(record: OrgRecord): IndexEntry {
  const { limits, ...entry } = mirrorEntryOf(record);
  return { org_id: record.org_id, reason: record.reason, ...entry, limits: limits.map((limit) => limit.feature_id) };
}

/**
 * Whether two records publish the same thing (versions aside). Among `ok` records the reason
 * does not matter, so an org that is first seen in good standing publishes nothing at all.
 */
export function sameProjection(a: OrgRecord, b: OrgRecord): boolean {
  const x = mirrorEntryOf(a);
  const y = mirrorEntryOf(b);
  const sameReason = a.reason === b.reason || (x.state === "ok" && y.state === "ok");
  return (
    sameReason &&
    x.state === y.state &&
    x.since === y.since &&
    x.suspend_at === y.suspend_at &&
    x.suspended_at === y.suspended_at &&
    x.pay_url === y.pay_url &&
    JSON.stringify(x.limits) === JSON.stringify(y.limits)
  );
}
