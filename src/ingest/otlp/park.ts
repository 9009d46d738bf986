import { declaredLengthExceeds, readBounded } from "../../shared/bounded-read.ts";
import type { IngestSettings } from "../config.ts";
import { suspendedResponse } from "../customer/pay-link.ts";
import { gunzipBounded } from "../gzip.ts";
import { parkBatch, parkBatchAt, parkingOf, type BatchTarget, type WaitUntil } from "../parking/batch.ts";
import { batchDigest, keepOnce } from "../parking/kept-once.ts";
import type { Counted, ParkingSettings } from "../parking/store.ts";
import type { OutgoingBody } from "../request/body.ts";
import type { Suspended } from "../request/admit.ts";
import { countActivity } from "../usage/activity.ts";
import { upstreamContent, type OtlpContent } from "./format.ts";

/**
 * With parking on (`PARKING` bound), an OTLP batch is kept in R2 instead of failed, in two
 * cases (docs/customers.md, "Parking"): a suspended org's batch, kept until it pays, and a batch the
 * upstream could not take during an outage, delivered once it is back. Either way a batch is
 * kept only when it passes the checks its upload would have passed (`complete`).
 */

/**
 * A suspended org's batch: kept as received (checked as an accepted one would be) and answered
 * with the 402 saying so; the plain 402 when it cannot be (parking off, over a cap, not a readable
 * OTLP request, the org's parked bytes at PARK_MAX_BYTES, R2 failing).
 */
export async function keepSuspended(request: Request, env: IngestEnv, settings: IngestSettings, ctx: WaitUntil, path: string, content: OtlpContent, refused: Suspended): Promise<Response> {
  const kept = await keptResponse(request, env, settings, ctx, path, content, refused);
  // The chart's activity (usage/activity.ts): a kept batch is parked data, a plain 402 a refusal.
  countActivity(env, ctx, refused.suspended.orgId, kept === null ? "refused" : "parked");
  return kept ?? refused.response;
}

/** The 402 saying the batch is kept, once it is; null when it cannot be. */
async function keptResponse(request: Request, env: IngestEnv, settings: IngestSettings, ctx: WaitUntil, path: string, content: OtlpContent, refused: Suspended): Promise<Response | null> {
  const parking = content.format !== null ? parkingOf(env) : null;
  if (parking === null || !content.ok || declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return null;
  const { format, encoding } = content;
  const { orgId, keyId, verdict } = refused.suspended;
  let bytes: Uint8Array;
  try {
    bytes = await readBounded(request.body, settings.maxBodyBytes);
  } catch {
    return null;
  }
  if (!(await complete(bytes, encoding === "gzip", settings))) return null;
  const target = { route: path, ...upstreamContent(format, encoding), keyId };
  // A resend of a batch already kept with this key is answered as kept, not parked again (kept-once.ts).
  const now = Date.now();
  const digest = await batchDigest([path, target.contentType, target.contentEncoding ?? ""], bytes);
  const kept = await keepOnce(env, parking, { orgId, keyId }, digest, now, async (pieces) => {
    const parked = await parkBatchAt(env, ctx, parking, orgId, target, bytes, "suspended");
    if (parked) pieces.push(parked);
    return { whole: parked !== null, records: null };
  });
  if (!kept) return null;
  return suspendedResponse({ format, orgId, suspendedAt: verdict.suspended_at, payUrl: verdict.pay_url, parked: { retentionMs: parking.retentionMs }, logpush: false });
}

/** What a batch parked during an outage stands for: its bytes as received, and the items metering counts now. */
export type ParkedOnOutage = { bytes: number; items: number | null | Promise<number | null> };

/**
 * The upstream is down: the batch's kept copy is parked, so the client gets the 2xx it would have
 * got, only once R2 holds it. Null when it cannot be (no copy, over the cap, R2 failing): the
 * retryable 503 then stands.
 */
export async function parkOnOutage(env: IngestEnv, ctx: WaitUntil, settings: IngestSettings, parking: ParkingSettings, orgId: string, target: BatchTarget, body: OutgoingBody, gzip: boolean): Promise<ParkedOnOutage | null> {
  if (!body.copy) return null;
  const copy = await body.copy;
  // Items the counter could not see (the upstream refused before reading the body) are counted
  // from the parked body at delivery, and only they: the parked object says so (issue 18, 6).
  const items = settings.metering && body.items ? body.items() : null;
  const counted: Counted = settings.metering && body.items && items === null ? "bytes" : "all";
  if (copy === null || !(await complete(copy, gzip, settings))) return null;
  if (!(await parkBatch(env, ctx, parking, orgId, { ...target, counted }, copy, "upstream_unavailable"))) return null;
  // Every byte as received (the upload may have stopped part way); items now, or at delivery (0 here: not "uncounted").
  return { bytes: copy.byteLength, items: counted === "bytes" ? 0 : items };
}

/**
 * Whether a kept body passes the checks the upload would have made (the upstream may have
 * answered before reading it all): gzip must decompress within MAX_DECOMPRESSED_BYTES, or a
 * parked bomb would reach the backend at delivery.
 */
async function complete(bytes: Uint8Array, gzip: boolean, settings: IngestSettings): Promise<boolean> {
  if (bytes.byteLength > settings.maxBodyBytes) return false;
  if (!gzip) return true;
  try {
    await gunzipBounded(bytes, settings.maxDecompressedBytes, false);
    return true;
  } catch {
    return false;
  }
}
