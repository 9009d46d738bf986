import { activeOverride } from "./policy.ts";
import type { OrgRecord } from "./org-record.ts";

export type ScheduleConfig = { resyncIntervalMs: number };

const BACKOFF_BASE_MS = 5_000;
const BACKOFF_CAP_MS = 15 * 60_000;

/** Exponential backoff after `failures` consecutive failures, never sooner than the server asked. */
export function retryDelay(failures: number, retryAfterMs?: number): number {
  const exponential = Math.min(BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1), BACKOFF_CAP_MS);
  return Math.max(exponential, retryAfterMs ?? 0);
}

function earliest(...times: (number | null | undefined)[]): number | null {
  let min: number | null = null;
  for (const t of times) if (t != null && (min === null || t < min)) min = t;
  return min;
}

/**
 * When the object next owes a fresh Autumn read: a pending webhook or retry, the
 * suspension deadline, the end of an override, or the periodic resync while not `ok`
 * (so a missed webhook cannot leave an org blocked or unblocked for long).
 */
export function nextSyncAt(record: OrgRecord, now: number, config: ScheduleConfig): number | null {
  // The deadline and the end of an override are each owed one read at or after them;
  // a failed read sets retry_at instead, so neither can spin.
  const owedOnce = (at: number | null | undefined) => (at != null && (record.last_sync?.at ?? -Infinity) < at ? at : null);
  const exempt = activeOverride(record.override, now)?.action === "exempt";
  const deadline = record.state === "overdue" && !exempt ? owedOnce(record.suspend_at) : null;
  const overrideEnd = owedOnce(record.override?.until);
  const resync = record.state === "ok" ? null : (record.last_sync?.at ?? now) + config.resyncIntervalMs;
  return earliest(record.retry_at, deadline, overrideEnd, resync);
}

export function mirrorPending(record: OrgRecord): boolean {
  return record.mirror.version < record.projection_version;
}

/**
 * The single alarm of the object: the earliest of everything it owes, including the next
 * queued event's delivery and the suspension warning (both passed in, as they live outside
 * the record or depend on optional configuration).
 */
export function nextAlarmAt(record: OrgRecord, now: number, config: ScheduleConfig, also: { outboxAt: number | null; warningAt: number | null } = { outboxAt: null, warningAt: null }): number | null {
  const mirror = mirrorPending(record) ? (record.mirror.retry_at ?? now) : null;
  return earliest(nextSyncAt(record, now, config), mirror, also.outboxAt, also.warningAt);
}
