import { log, logWarn } from "../../shared/log.ts";
import { DECISION_LOG_WINDOW_MS, logThrottle } from "../log-throttle.ts";
import { afterPark, askParked } from "./after-park.ts";
import { park, parkedBytes, parkingSettings, type Counted, type ParkedUsage, type ParkingEnv, type ParkingSettings, type ParkReason } from "./store.ts";

/**
 * The request path's side of parking (docs/customers.md, "Parking"): one batch into R2, answered only once
 * R2 has acknowledged the write, then the throttled report and, after an outage, a delivery
 * queued (`afterPark`, off the response path). No Durable Object is called per request.
 */

export type WaitUntil = { waitUntil(promise: Promise<unknown>): void };

const cached = new WeakMap<object, { parking: ParkingSettings | null }>();

/** Parking's settings for this env, parsed once per env object; null when `PARKING` is not bound. */
export function parkingOf(env: IngestEnv): ParkingSettings | null {
  let entry = cached.get(env);
  if (!entry) {
    entry = { parking: parkingSettings(env as IngestEnv & ParkingEnv) };
    cached.set(env, entry);
  }
  return entry.parking;
}

/**
 * `usage`: what a suspended org's Logpush piece stands for, metered at delivery; `counted`: what
 * metering already counted; `keyId`: the key a refused batch came with (store.ts, ParkedBatch).
 */
export type BatchTarget = { route: string; contentType: string; contentEncoding: string | null; usage?: ParkedUsage; counted?: Counted; keyId?: string };

/**
 * Keeps one batch (the bytes exactly as they go upstream). True once R2 has it; false at the
 * org's cap or when the write failed (logged, throttled per org and cause; the caller answers
 * as it would have without parking).
 */
export async function parkBatch(env: IngestEnv, ctx: WaitUntil, parking: ParkingSettings, orgId: string, target: BatchTarget, body: Uint8Array, why: ParkReason): Promise<boolean> {
  return (await parkBatchAt(env, ctx, parking, orgId, target, body, why)) !== null;
}

/** parkBatch, resolving to the parked object (its key and size), or null: what a digest marker names (kept-once.ts). */
export async function parkBatchAt(env: IngestEnv, ctx: WaitUntil, parking: ParkingSettings, orgId: string, target: BatchTarget, body: Uint8Array, why: ParkReason): Promise<{ key: string; bytes: number } | null> {
  const now = Date.now();
  const outcome = await park(parking, { orgId, ...target, receivedAt: now, why }, body, now);
  if (!outcome.parked) {
    // At the cap: ask the org's object again (at most every 10 s), so room freed by delivery is seen.
    if (outcome.why === "over_cap" && parkedBytes.shouldAsk(orgId, now)) ctx.waitUntil(askParked(env as IngestEnv & ParkingEnv, orgId));
    const count = logThrottle.hit(`${orgId} park_${outcome.why}`, now);
    if (count !== null) {
      logWarn({ event: "ingest_park_failed", org_id: orgId, route: target.route, why, cause: outcome.why, error: outcome.error, bytes: body.byteLength, max_bytes: parking.maxBytes, count, window_s: DECISION_LOG_WINDOW_MS / 1000 });
    }
    return null;
  }
  const count = logThrottle.hit(`${orgId} parked_${why}`, now);
  if (count !== null) log({ event: "ingest_parked", org_id: orgId, route: target.route, why, bytes: body.byteLength, count, window_s: DECISION_LOG_WINDOW_MS / 1000 });
  afterPark(env as IngestEnv & ParkingEnv, ctx, parking, orgId, body.byteLength, why, now);
  return { key: outcome.key, bytes: outcome.bytes };
}
