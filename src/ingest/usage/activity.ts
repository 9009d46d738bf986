import type { ActivityKind } from "../../shared/usage.ts";
import { batcherFor, type UsageQueue } from "./batcher.ts";
import type { WaitUntil } from "./meter.ts";

/**
 * What became of a request, for the console's chart (issue 21; docs/metering.md, "Activity"): one
 * count in the isolate's batcher, which sends it with the org's usage message of the window (sent
 * whether metering is on or off, the USAGE queue being always bound). No I/O of its own: the request
 * that opens the window holds the isolate until the flush, as metering's does.
 */
export function countActivity(env: IngestEnv, ctx: WaitUntil, orgId: string, kind: ActivityKind, now = Date.now()): void {
  // Bound in every deployment (src/ingest/wrangler.jsonc); a test env or the bench's pass-through may lack it.
  const queue = (env as { USAGE?: UsageQueue }).USAGE;
  if (queue === undefined) return;
  const sent = batcherFor(queue).addActivity(orgId, kind, now);
  if (sent.opened) ctx.waitUntil(sent.done);
}

/** A 402 or 429 refusal's org (account.ts `refuse` marks them), counted `refused`; the refusal's response, unchanged. */
export function refusedAnswer(env: IngestEnv, ctx: WaitUntil, refused: { response: Response; billingOrgId?: string }): Response {
  if (refused.billingOrgId !== undefined) countActivity(env, ctx, refused.billingOrgId, "refused");
  return refused.response;
}
