import type { ActivityKind, WouldRefuseCode } from "../../shared/usage.ts";
import type { IngestSettings } from "../config.ts";
import { batcherFor, type UsageQueue } from "./batcher.ts";
import { meterAccepted, type WaitUntil } from "./meter.ts";
import type { RouteSignal } from "./route-signal.ts";

/**
 * What became of a request, for the console's chart (issue 21; docs/metering.md, "Activity"): one
 * count in the isolate's batcher, which sends it in the window's activity message (one for up to 100 orgs, parts by
 * index shard; sent whether metering is on or off, the USAGE queue being always bound). No I/O of its own: the request
 * that opens the window holds the isolate until the flush, as metering's does.
 */
export function countActivity(env: IngestEnv, ctx: WaitUntil, orgId: string, kind: ActivityKind, code?: WouldRefuseCode, now = Date.now()): void {
  // Bound in every deployment (src/ingest/wrangler.jsonc); a test env or the bench's pass-through may lack it.
  const queue = (env as { USAGE?: UsageQueue }).USAGE;
  if (queue === undefined) return;
  const sent = batcherFor(queue).addActivity(orgId, kind, now, code);
  if (sent.opened) ctx.waitUntil(sent.done);
}

/**
 * A request the upstream took: counted `accepted`, or `would_refuse` under the code observe mode did
 * not answer (`observed`), and, with metering on, metered; its metered items are counted in the
 * activity's hour too (the chart's items). `items` is called only with metering on: it may start work.
 */
export function countForwarded(
  env: IngestEnv,
  settings: IngestSettings,
  ctx: WaitUntil,
  admitted: { orgId: string; observed: WouldRefuseCode | null },
  signal: RouteSignal,
  usage: { items: () => number | null | Promise<number | null>; bytes: number },
): void {
  const kind = admitted.observed === null ? "accepted" : "would_refuse";
  countActivity(env, ctx, admitted.orgId, kind, admitted.observed ?? undefined);
  if (settings.metering) meterAccepted(env, settings, ctx, admitted.orgId, signal, { items: usage.items(), bytes: usage.bytes, forwarded: kind });
}

/**
 * A request parked instead of going upstream (an outage's batch, answered 2xx): counted `parked`, with the code
 * observe mode did not answer if any (a would-be refusal whatever became of it), and metered (its client got a 2xx).
 */
export function countParked(
  env: IngestEnv,
  settings: IngestSettings,
  ctx: WaitUntil,
  admitted: { orgId: string; observed: WouldRefuseCode | null },
  signal: RouteSignal,
  usage: { items: number | null | Promise<number | null>; bytes: number },
): void {
  meterAccepted(env, settings, ctx, admitted.orgId, signal, usage);
  countActivity(env, ctx, admitted.orgId, "parked", admitted.observed ?? undefined);
}

/** A 402 or 429 refusal's org (account.ts `refuse` marks them), counted `refused`; the refusal's response, unchanged. */
export function refusedAnswer(env: IngestEnv, ctx: WaitUntil, refused: { response: Response; billingOrgId?: string }): Response {
  if (refused.billingOrgId !== undefined) countActivity(env, ctx, refused.billingOrgId, "refused");
  return refused.response;
}
