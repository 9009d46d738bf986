import { activeOverride } from "./policy.ts";
import type { OrgRecord, Source } from "./record.ts";

export type ScheduleConfig = { resyncIntervalMs: number; limitResyncIntervalMs: number };

const BACKOFF_BASE_MS = 5_000;
/** No retry waits longer, whatever `Retry-After` says: a day-long Retry-After must not strand an org. */
export const BACKOFF_CAP_MS = 15 * 60_000;
/** While a suspension waits only for Autumn to answer, it is retried at least this often. */
export const AWAITING_AUTUMN_CAP_MS = 60_000;
/** Reads after a webhook that left the org not ok, measured from that webhook's read. */
export const FOLLOW_UP_STEPS_MS = [60_000, 5 * 60_000, 15 * 60_000] as const;

/**
 * Exponential backoff after `failures` consecutive failures, capped at `backoffCapMs`, never
 * sooner than the server's `Retry-After`, and never longer than BACKOFF_CAP_MS whatever it says.
 */
export function retryDelay(failures: number, retryAfterMs?: number, backoffCapMs = BACKOFF_CAP_MS): number {
  const exponential = Math.min(BACKOFF_BASE_MS * 2 ** Math.min(Math.max(0, failures - 1), 30), backoffCapMs);
  return Math.min(Math.max(exponential, retryAfterMs ?? 0), BACKOFF_CAP_MS);
}

/**
 * The follow-up reads owed after a read. A webhook whose read leaves the org not ok starts
 * them; each successful read at or after a step moves to the next step still ahead; an org
 * back to ok needs none. A failed read changes nothing (its retry is owed anyway).
 */
export function nextFollowUp(prev: OrgRecord["follow_up"], read: { source: Source; ok: boolean; state: OrgRecord["state"] }, now: number): OrgRecord["follow_up"] {
  if (!read.ok) return prev;
  if (read.state === "ok") return null;
  if (read.source === "webhook") return { from: now, step: 0 };
  if (prev === null) return null;
  const step = FOLLOW_UP_STEPS_MS.findIndex((offset) => prev.from + offset > now);
  return step === -1 ? null : { from: prev.from, step: Math.max(step, prev.step) };
}

export function followUpAt(followUp: OrgRecord["follow_up"]): number | null {
  return followUp === null ? null : followUp.from + FOLLOW_UP_STEPS_MS[followUp.step]!;
}

export function earliest(...times: (number | null | undefined)[]): number | null {
  let min: number | null = null;
  for (const t of times) if (t != null && (min === null || t < min)) min = t;
  return min;
}

/**
 * When the object next owes a fresh Autumn read: a pending webhook or retry, a follow-up
 * after a webhook, the suspension deadline, the end of an override, a plan limit's reset, the periodic resync
 * while not `ok` (so a missed webhook cannot leave an org blocked or unblocked for long), or the limit resync
 * while a plan limit is in force (LIMIT_RESYNC_INTERVAL: an upgrade whose webhook is lost still lifts it).
 */
export function nextSyncAt(record: OrgRecord, now: number, config: ScheduleConfig): number | null {
  // The deadline and the end of an override are each owed one read at or after them;
  // a failed read sets retry_at instead, so neither can spin.
  const owedOnce = (at: number | null | undefined) => (at != null && (record.last_sync?.at ?? -Infinity) < at ? at : null);
  const exempt = activeOverride(record.override, now)?.action === "exempt";
  const deadline = record.state === "overdue" && !exempt ? owedOnce(record.suspend_at) : null;
  const overrideEnd = owedOnce(record.override?.until);
  const resync = record.state === "ok" ? null : (record.last_sync?.at ?? now) + config.resyncIntervalMs;
  // A plan limit is owed a read when its balance resets, the moment it may have room again.
  const limitReset = owedOnce(earliest(...record.limits.map((limit) => limit.reset_at)));
  // An ok org has no other periodic read, and a refused signal sends no usage reports: without this a limit
  // lifted by an upgrade whose webhook was lost would hold until its reset, or forever.
  // A customer Autumn does not know (404) is re-read on the resync schedule only, limits or not: every limited org
  // of a deployment with a wrong AUTUMN_API_URL or key would otherwise be read every LIMIT_RESYNC_INTERVAL forever.
  const limitResync = record.limits.length === 0 || record.last_sync?.customer_unknown ? null : (record.last_sync?.at ?? now) + config.limitResyncIntervalMs;
  return earliest(record.retry_at, owedOnce(followUpAt(record.follow_up)), deadline, overrideEnd, resync, limitReset, limitResync);
}

export function mirrorPending(record: OrgRecord): boolean {
  return record.mirror.version < record.projection_version;
}

/**
 * The single alarm of the object: the earliest of everything it owes, including what its
 * outbox owes (the next delivery or the suspension warning; passed in, as it lives outside
 * the record and depends on optional configuration).
 */
export function nextAlarmAt(record: OrgRecord, now: number, config: ScheduleConfig, outboxAt: number | null = null): number | null {
  const mirror = mirrorPending(record) ? (record.mirror.retry_at ?? now) : null;
  return earliest(nextSyncAt(record, now, config), mirror, outboxAt);
}
