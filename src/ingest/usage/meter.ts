import type { BodyFormat } from "../../shared/http-error.ts";
import { logWarn } from "../../shared/log.ts";
import type { ForwardedKind, UsageCounts } from "../../shared/usage.ts";
import type { IngestSettings } from "../config.ts";
import { DECISION_LOG_WINDOW_MS, logThrottle } from "../log-throttle.ts";
import { batcherFor, type UsageQueue } from "./batcher.ts";
import { itemCounter, type ItemCounter } from "./count-items.ts";
import type { RouteSignal } from "./route-signal.ts";

/**
 * Usage metering on the request path (docs/metering.md): what was accepted (the upstream
 * answered 2xx, or the batch was parked during an outage and the client got its 2xx) is counted
 * per org, items of the route's signal and bytes received as sent, only for the signals
 * USAGE_FEATURES maps, and handed to the isolate's batcher without delaying the response.
 * With USAGE_FEATURES empty, routes never get here and create no counter.
 */

export type WaitUntil = { waitUntil(promise: Promise<unknown>): void };
export type OtlpSignal = Exclude<RouteSignal, "logpush">;

/** A counter for an OTLP body's items, when metering counts the route's signal; null otherwise (no counting work at all). */
export function counterFor(settings: IngestSettings, signal: OtlpSignal, format: BodyFormat): ItemCounter | null {
  if (!settings.metering || settings.usageFeatures[signal] === undefined) return null;
  return guarded(itemCounter(signal, format));
}

/**
 * The counter sits in the body's stream: a throw there would fail the upload. Metering never
 * fails a request, so a counter that throws just makes the body's items uncountable (null).
 */
function guarded(counter: ItemCounter): ItemCounter {
  let broken = false;
  return {
    push(chunk) {
      if (broken) return;
      try {
        counter.push(chunk);
      } catch {
        broken = true;
      }
    },
    finish() {
      if (broken) return null;
      try {
        return counter.finish();
      } catch {
        return null;
      }
    },
  };
}

/**
 * Counts one accepted request for its org, off the response path: `items` may still be on its way
 * (a small gzip body decompressed for counting, a kept copy still arriving). `items` null: the
 * body's items could not be counted (its bytes still are); logged once per org per window.
 * `forwarded`: the request went upstream as this activity kind (usage/activity.ts countForwarded), so
 * its items are counted in the activity's hour as well, for the console's chart.
 */
export function meterAccepted(
  env: IngestEnv,
  settings: IngestSettings,
  ctx: WaitUntil,
  orgId: string,
  signal: RouteSignal,
  usage: { items: number | null | Promise<number | null>; bytes: number; forwarded?: ForwardedKind },
  now = Date.now(),
): void {
  if (!settings.metering) return;
  if (usage.items instanceof Promise) {
    ctx.waitUntil(usage.items.catch(() => null).then((items) => record(env, settings, orgId, signal, { items, bytes: usage.bytes, forwarded: usage.forwarded }, now)));
    return;
  }
  const flushed = record(env, settings, orgId, signal, { items: usage.items, bytes: usage.bytes, forwarded: usage.forwarded }, now);
  if (flushed) ctx.waitUntil(flushed);
}

/**
 * The counts handed to the batcher: the promise of the flush that carries them when this request
 * must hold the isolate for it (it opened the batcher's window), else null (nothing to count, or
 * the window's opener holds it).
 */
function record(env: IngestEnv, settings: IngestSettings, orgId: string, signal: RouteSignal, usage: { items: number | null; bytes: number; forwarded?: ForwardedKind | undefined }, now: number): Promise<void> | null {
  const counts = usageCounts(settings, orgId, signal, usage, now);
  // The chart's items: only for a signal metering counts (an uncountable body adds 0 items, as it adds none to the ledger).
  const forwarded = usage.forwarded !== undefined && settings.usageFeatures[signal] !== undefined ? { kind: usage.forwarded, items: usage.items ?? 0 } : undefined;
  if (counts === null && forwarded === undefined) return null;
  const sent = sendUsage(env, orgId, counts ?? {}, now, forwarded);
  return sent.opened ? sent.done : null;
}

/** One batch's counts, only for mapped signals (zeros left out); null when there is nothing to count. */
export function usageCounts(settings: IngestSettings, orgId: string, signal: RouteSignal, usage: { items: number | null; bytes: number }, now: number): UsageCounts | null {
  const features = settings.usageFeatures;
  const counts: UsageCounts = {};
  if (features[signal] !== undefined) {
    if (usage.items === null) logUncounted(orgId, signal, usage.bytes, now);
    else if (usage.items > 0) counts[signal] = usage.items;
  }
  if (features.bytes !== undefined && usage.bytes > 0) counts.bytes = usage.bytes;
  return Object.keys(counts).length === 0 ? null : counts;
}

/** Counts to the isolate's batcher (see UsageBatcher.add): `done` once they are on the queue (or logged lost). */
function sendUsage(env: IngestEnv, orgId: string, counts: UsageCounts, now: number, forwarded?: { kind: ForwardedKind; items: number }, sendNow = false): { done: Promise<void>; opened: boolean } {
  return batcherFor((env as { USAGE: UsageQueue }).USAGE).add(orgId, counts, now, forwarded, sendNow);
}

/** For a caller that waits for its counts before going on (the delivery consumer): sent at once, in its own flush (see UsageBatcher.ride). */
export function sendUsageNow(env: IngestEnv, orgId: string, counts: UsageCounts, now: number): Promise<void> {
  return sendUsage(env, orgId, counts, now, undefined, true).done;
}

/** Adds `more` into `total`. */
export function addCounts(total: UsageCounts, more: UsageCounts): void {
  for (const [signal, value] of Object.entries(more) as [keyof UsageCounts, number][]) total[signal] = (total[signal] ?? 0) + value;
}

function logUncounted(orgId: string, signal: RouteSignal, bytes: number, now: number): void {
  const count = logThrottle.hit(`${orgId} usage_uncounted`, now);
  if (count !== null) logWarn({ event: "usage_items_uncounted", org_id: orgId, signal, bytes, count, window_s: DECISION_LOG_WINDOW_MS / 1000 });
}
