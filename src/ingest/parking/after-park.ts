import { report, type DeliveryEnv } from "./deliveries.ts";
import { parkedBytes, type ParkedBytes, type ParkingSettings, type ParkReason } from "./store.ts";
import { WarningLimiter } from "../customer/warning-limiter.ts";

/** How often an isolate tells an org's object about batches it parked (never per request). */
export const PARKED_REPORT_INTERVAL_MS = 10_000;
/** How often an isolate queues a delivery for an org it parked for during an upstream outage. */
export const OUTAGE_NUDGE_INTERVAL_MS = 10_000;
/** The first delivery attempt after an outage park waits this long: the upstream was just down. */
export const OUTAGE_FIRST_DELIVERY_DELAY_S = 5;

/** `until`: when the newest of the held batches was parked (the report's `parked_until`). */
type Pending = { batches: number; bytes: number; flushedAt: number; until: number };
export type ParkedDelta = { parked_batches: number; parked_bytes: number; parked_until: number };

/**
 * Batches parked, counted per org in this isolate and reported to the org's object at most once
 * per interval: the first park after a quiet interval is reported at once, later ones ride along
 * with the next report. Counts not yet reported when an isolate goes away are lost (the admin
 * view's `parked` is then low; delivered and expired, counted by the consumer, stay exact).
 */
export class ParkedReports {
  private readonly pending = new Map<string, Pending>();
  /** Orgs with a trailing report scheduled (bounded by the orgs that parked within one interval). */
  private readonly trailing = new Set<string>();
  readonly intervalMs: number;
  private readonly capacity: number;

  constructor(options: { intervalMs?: number; capacity?: number } = {}) {
    this.intervalMs = options.intervalMs ?? PARKED_REPORT_INTERVAL_MS;
    this.capacity = options.capacity ?? 10_000;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Counts one batch; returns what to report now, or null to wait. */
  add(orgId: string, bytes: number, now: number): ParkedDelta | null {
    const entry = this.pending.get(orgId) ?? { batches: 0, bytes: 0, flushedAt: -Infinity, until: 0 };
    entry.batches += 1;
    entry.bytes += bytes;
    entry.until = Math.max(entry.until, now);
    this.pending.delete(orgId);
    if (now - entry.flushedAt >= this.intervalMs) {
      const delta = { parked_batches: entry.batches, parked_bytes: entry.bytes, parked_until: entry.until };
      this.remember(orgId, { batches: 0, bytes: 0, flushedAt: now, until: 0 });
      return delta;
    }
    this.remember(orgId, entry);
    return null;
  }

  /**
   * When batches were held back, how long until they may be reported (once per org: the caller
   * schedules one trailing report); null when nothing waits or a trailing report is already due.
   */
  trailingIn(orgId: string, now: number): number | null {
    const entry = this.pending.get(orgId);
    if (!entry || entry.batches === 0 || this.trailing.has(orgId)) return null;
    this.trailing.add(orgId);
    return Math.max(0, entry.flushedAt + this.intervalMs - now);
  }

  /** The trailing report: what was held back, counted as reported now. */
  flush(orgId: string, now: number): ParkedDelta | null {
    this.trailing.delete(orgId);
    const entry = this.pending.get(orgId);
    if (!entry || entry.batches === 0) return null;
    this.remember(orgId, { batches: 0, bytes: 0, flushedAt: now, until: 0 });
    return { parked_batches: entry.batches, parked_bytes: entry.bytes, parked_until: entry.until };
  }

  private remember(orgId: string, entry: Pending): void {
    if (this.pending.size >= this.capacity) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
    }
    this.pending.set(orgId, entry);
  }
}

export const parkedReports = new ParkedReports();
export const outageNudges = new WarningLimiter({ intervalMs: OUTAGE_NUDGE_INTERVAL_MS });

/**
 * What follows a park, off the response path (`waitUntil`): the throttled report to the org's
 * object (batches held back by the throttle go in one trailing report at the end of the
 * interval, so the admin view does not wait for the next park), and for an upstream outage a delivery queued (at most every 10 s per org per isolate;
 * the consumer retries with backoff until the upstream answers). A suspended org's batches wait
 * for its payment, whose transition queues the delivery.
 */
export function afterPark(
  env: DeliveryEnv,
  ctx: { waitUntil(promise: Promise<unknown>): void },
  parking: ParkingSettings,
  orgId: string,
  bytes: number,
  why: ParkReason,
  now: number,
  reports: ParkedReports = parkedReports,
  ledger: ParkedBytes = parkedBytes,
): void {
  // Each answer says what the org has parked in all: the per-org cap's estimate (store.ts, ParkedBytes).
  // Stamped with the newest park time: the org's object ignores bytes a later listing already saw (billing/org/parking.ts).
  const send = (delta: ParkedDelta) =>
    report(env, orgId, delta).then((waiting) => {
      if (waiting !== null) ledger.heard(orgId, waiting, delta.parked_bytes);
    });
  const delta = reports.add(orgId, bytes, now);
  if (delta) ctx.waitUntil(send(delta));
  else {
    const waitMs = reports.trailingIn(orgId, now);
    if (waitMs !== null) {
      ctx.waitUntil(
        new Promise((resolve) => setTimeout(resolve, waitMs)).then(() => {
          const held = reports.flush(orgId, Date.now());
          return held ? send(held) : undefined;
        }),
      );
    }
  }
  if (why === "upstream_unavailable" && parking.queue && outageNudges.take(orgId, now)) {
    ctx.waitUntil(parking.queue.send({ org_id: orgId }, { delaySeconds: OUTAGE_FIRST_DELIVERY_DELAY_S }).catch(() => {}));
  }
}

/** Asks the org's object what it has parked (an empty report), for an isolate at the org's cap. */
export async function askParked(env: DeliveryEnv, orgId: string, ledger: ParkedBytes = parkedBytes): Promise<void> {
  const waiting = await report(env, orgId, {}, true);
  if (waiting !== null) ledger.heard(orgId, waiting, 0);
}
