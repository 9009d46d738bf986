import { declaredLengthExceeds, readBounded } from "../../shared/bounded-read.ts";
import type { BodyFormat } from "../../shared/http-error.ts";
import type { IngestSettings } from "../config.ts";
import { batchDigest, keepOnce } from "../parking/kept-once.ts";
import { parkBatch, parkBatchAt, parkingOf, type WaitUntil } from "../parking/batch.ts";
import type { Counted, ParkingSettings } from "../parking/store.ts";
import { suspendedResponse } from "../customer/pay-link.ts";
import { withOverdueWarning } from "../customer/warn.ts";
import { logUpstreamTrouble, refuse, settleForward } from "../request/account.ts";
import { admit, type Suspended } from "../request/admit.ts";
import { gunzipBounded } from "../gzip.ts";
import { outgoingBody, type BodyProblem } from "../request/body.ts";
import { forward, isOutage, PARKING_UNAVAILABLE_RETRY_AFTER, UNAVAILABLE_RETRY_AFTER } from "../request/forward.ts";
import { counterFor, meterAccepted, type OtlpSignal } from "../usage/meter.ts";
import { signalOfRoute } from "../usage/route-signal.ts";

/** Missing → protobuf; contains "json" → JSON; protobuf or octet-stream → protobuf; anything else is unsupported. */
export function otlpFormat(contentType: string | null): BodyFormat | null {
  if (contentType === null || contentType.trim() === "") return "protobuf";
  const type = contentType.toLowerCase();
  if (type.includes("json")) return "json";
  if (type.includes("protobuf") || type.startsWith("application/octet-stream")) return "protobuf";
  return null;
}

/** `none`/`identity` or `gzip`; null for anything else. */
export function otlpEncoding(header: string | null): "identity" | "gzip" | null {
  const value = (header ?? "").trim().toLowerCase();
  if (value === "" || value === "identity") return "identity";
  return value === "gzip" ? "gzip" : null;
}

/**
 * `POST /v1/{traces,metrics,logs}`, top to bottom: key and gate (`admit`), the body's headers,
 * the body streamed upstream byte for byte while it is checked (size, gzip integrity and
 * decompressed size; see `outgoingBody`), then the upstream's answer accounted for. Nothing is
 * decoded, re-encoded or held whole, except with parking on (`PARKING` bound), where a copy of
 * the body (at most MAX_BODY_BYTES) is kept beside the upload so that an upstream outage parks
 * the batch instead of failing it.
 *
 * Customer-facing extras (README, "The customer's side"): a suspended org's 402 names where to
 * pay, and with parking on its batch is kept and delivered once paid; an accepted answer for an
 * org that is overdue with a deadline carries the overdue warning in its partial_success.
 */
export async function handleOtlp(request: Request, env: IngestEnv, settings: IngestSettings, path: string, ctx: WaitUntil): Promise<Response> {
  const format = otlpFormat(request.headers.get("content-type"));
  const errorFormat = format ?? "json";
  const admitted = await admit(request, env, settings, path, errorFormat);
  if (!admitted.ok) {
    const parking = "suspended" in admitted && format !== null ? parkingOf(env) : null;
    return parking && "suspended" in admitted ? parkRefused(request, env, settings, ctx, parking, path, format!, admitted) : admitted.response;
  }
  const who = { orgId: admitted.orgId, keyId: admitted.keyId };
  const refuseBody = (problem: BodyProblem, bytes = 0) => {
    if (problem.problem === "invalid_gzip") return refuse(env, path, errorFormat, 400, "invalid_gzip", "the body is declared gzip but does not decompress", { ...who, bytes }).response;
    const what = problem.problem === "too_large" ? "body" : "decompressed body";
    return refuse(env, path, errorFormat, 413, "payload_too_large", `the ${what} exceeds ${problem.limit} bytes; send smaller batches`, { ...who, bytes }).response;
  };

  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return refuseBody({ problem: "too_large", limit: settings.maxBodyBytes });
  if (format === null) {
    return refuse(env, path, "json", 415, "unsupported_media_type", "send OTLP as application/x-protobuf or application/json", who).response;
  }
  const encoding = otlpEncoding(request.headers.get("content-encoding"));
  if (encoding === null) return refuse(env, path, format, 415, "unsupported_encoding", "Content-Encoding must be gzip or absent", who).response;

  const parking = parkingOf(env);
  // Usage metering (off: no counter, nothing counted): the route's items, counted as the body streams.
  const signal = signalOfRoute(path) as OtlpSignal;
  const body = await outgoingBody(request, encoding === "gzip", settings, parking !== null, settings.metering ? counterFor(settings, signal, format) : null);
  if ("ok" in body) return refuseBody(body);

  const target = {
    route: path,
    // The canonical type, not the client's header: whatever parameters or padding a client
    // sent are not the backend's problem (a 20 KiB content type drew a 431 from it).
    contentType: format === "json" ? "application/json" : "application/x-protobuf",
    contentEncoding: encoding === "gzip" ? "gzip" : null,
  };
  const result = await forward({
    url: `${settings.upstreamUrl}${path}`,
    body: body.body,
    ...target,
    tenantHeader: settings.tenantHeader,
    orgId: admitted.orgId,
    timeoutMs: settings.upstreamTimeoutMs,
    format,
    signal: body.signal,
    unavailableRetryAfter: parking ? PARKING_UNAVAILABLE_RETRY_AFTER : UNAVAILABLE_RETRY_AFTER,
  });
  // A body refused mid-stream failed the upload itself: the client hears why, not "unreachable".
  const checked = body.settled();
  if (!checked.ok) {
    await result.response.body?.cancel();
    return refuseBody(checked);
  }
  const context = { ...who, route: path, bytes: checked.bytes };
  // Usage metering: counted only once the data is accepted (upstream 2xx, or parked during an outage).
  const meter = () => meterAccepted(env, settings, ctx, admitted.orgId, signal, { items: body.items ? body.items() : null, bytes: checked.bytes });
  if (parking && body.copy && isOutage(result)) {
    // The upstream is down: the batch is parked and the client gets the 2xx it would have got,
    // only once R2 holds it. Otherwise (over the cap, R2 failing) the retryable 503 stands.
    const copy = await body.copy;
    // Items the counter could not see (the upstream refused before reading the body) are counted
    // from the parked body at delivery, and only they: the parked object says so (issue 18, 6).
    const items = settings.metering && body.items ? body.items() : null;
    const counted: Counted = settings.metering && body.items && items === null ? "bytes" : "all";
    if (copy !== null && (await complete(copy, encoding === "gzip", settings)) && (await parkBatch(env, ctx, parking, admitted.orgId, { ...target, counted }, copy, "upstream_unavailable"))) {
      await result.response.body?.cancel();
      logUpstreamTrouble(context, result, true);
      const accepted = settleForward(env, settings, { ...context, bytes: copy.byteLength }, { ...result, response: emptyExportResponse(format), outcome: "accepted", code: null, failure: null, parked: true });
      // Every byte as received (the upload may have stopped part way); items now, or at delivery (0 here: not "uncounted").
      if (settings.metering) meterAccepted(env, settings, ctx, admitted.orgId, signal, { items: counted === "bytes" ? 0 : items, bytes: copy.byteLength });
      return withOverdueWarning(accepted, admitted.verdict, format, admitted.orgId);
    }
  }
  if (settings.metering && result.outcome === "accepted") meter();
  return withOverdueWarning(settleForward(env, settings, context, result), admitted.verdict, format, admitted.orgId);
}

/** An Export*ServiceResponse with nothing in it: what a backend answers for a batch it took whole. */
function emptyExportResponse(format: BodyFormat): Response {
  return format === "json"
    ? new Response("{}", { status: 200, headers: { "content-type": "application/json" } })
    : new Response(new Uint8Array(0), { status: 200, headers: { "content-type": "application/x-protobuf" } });
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

/**
 * A suspended org's batch with parking on: kept as received (checked as an accepted one would
 * be) and answered with the 402 saying so; the plain 402 when it cannot be (over a cap, not a
 * readable OTLP request, the org's parked bytes at PARK_MAX_BYTES, R2 failing).
 */
async function parkRefused(request: Request, env: IngestEnv, settings: IngestSettings, ctx: WaitUntil, parking: ParkingSettings, path: string, format: BodyFormat, refused: Suspended): Promise<Response> {
  const { orgId, keyId, verdict } = refused.suspended;
  const encoding = otlpEncoding(request.headers.get("content-encoding"));
  if (encoding === null || declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return refused.response;
  let bytes: Uint8Array;
  try {
    bytes = await readBounded(request.body, settings.maxBodyBytes);
  } catch {
    return refused.response;
  }
  if (!(await complete(bytes, encoding === "gzip", settings))) return refused.response;
  const target = { route: path, contentType: format === "json" ? "application/json" : "application/x-protobuf", contentEncoding: encoding === "gzip" ? "gzip" : null, keyId };
  // A resend of a batch already kept with this key is answered as kept, not parked again (kept-once.ts).
  const now = Date.now();
  const digest = await batchDigest([path, target.contentType, target.contentEncoding ?? ""], bytes);
  const kept = await keepOnce(env, parking, { orgId, keyId }, digest, now, async (pieces) => {
    const parked = await parkBatchAt(env, ctx, parking, orgId, target, bytes, "suspended");
    if (parked) pieces.push(parked);
    return { whole: parked !== null, records: null };
  });
  if (!kept) return refused.response;
  return suspendedResponse({ format, orgId, suspendedAt: verdict.suspended_at, payUrl: verdict.pay_url, parked: { retentionMs: parking.retentionMs }, logpush: false });
}
