import { declaredLengthExceeds } from "../../shared/bounded-read.ts";
import type { IngestSettings } from "../config.ts";
import { parkingOf, type WaitUntil } from "../parking/batch.ts";
import { refuse } from "../request/account.ts";
import { admit } from "../request/admit.ts";
import { outgoingBody } from "../request/body.ts";
import { forward, isOutage, PARKING_UNAVAILABLE_RETRY_AFTER, UNAVAILABLE_RETRY_AFTER } from "../request/forward.ts";
import { refusedAnswer } from "../usage/activity.ts";
import { counterFor, type OtlpSignal } from "../usage/meter.ts";
import { signalOfRoute } from "../usage/route-signal.ts";
import { answerForwarded, answerParked, bodyRefusal, type Batch } from "./answer.ts";
import { otlpContent, upstreamContent, type Refusal } from "./format.ts";
import { keepSuspended, parkOnOutage } from "./park.ts";

/**
 * `POST /v1/{traces,metrics,logs}`, top to bottom; this function only sequences. The key and the
 * gate (`admit`), the body's headers (format.ts), the body sent upstream byte for byte once it is
 * checked (size, gzip integrity and decompressed size; see `outgoingBody`: a gzip body with a
 * declared length is read whole, at most MAX_BODY_BYTES, and inflated once before it goes; one
 * without a length is checked chunk by chunk as it streams), then the upstream's answer accounted
 * for (answer.ts). Nothing is re-encoded. With parking on (`PARKING` bound) a copy of the body (at
 * most MAX_BODY_BYTES) is kept so that an upstream outage parks the batch instead of failing it (park.ts).
 *
 * Customer-facing extras (docs/customers.md): a suspended org's 402 names where to
 * pay, and with parking on its batch is kept and delivered once paid; an accepted answer for an
 * org that is overdue with a deadline carries the overdue warning in its partial_success.
 */
export async function handleOtlp(request: Request, env: IngestEnv, settings: IngestSettings, path: string, ctx: WaitUntil): Promise<Response> {
  const content = otlpContent(request.headers);
  const answerFormat = content.format ?? "json";
  const admitted = await admit(request, env, settings, path, answerFormat);
  if (!admitted.ok) return "suspended" in admitted ? keepSuspended(request, env, settings, ctx, path, content, admitted) : refusedAnswer(env, ctx, admitted);
  const who = { orgId: admitted.orgId, keyId: admitted.keyId };
  const refused = (refusal: Refusal, bytes = 0) => refuse(env, path, answerFormat, refusal.status, refusal.code, refusal.message, { ...who, bytes }).response;

  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return refused(bodyRefusal({ problem: "too_large", limit: settings.maxBodyBytes }));
  if (!content.ok) return refused(content.refusal);
  const { format, encoding } = content;

  const parking = parkingOf(env);
  // Usage metering (off: no counter, nothing counted): the route's items, counted as the body streams.
  const signal = signalOfRoute(path) as OtlpSignal;
  const body = await outgoingBody(request, encoding === "gzip", settings, parking !== null, settings.metering ? counterFor(settings, signal, format) : null);
  if ("ok" in body) return refused(bodyRefusal(body));

  const target = { route: path, ...upstreamContent(format, encoding) };
  const result = await forward({
    url: `${settings.upstreamUrl}${path}`,
    body: body.body,
    ...target,
    tenantHeader: settings.tenantHeader,
    orgId: admitted.orgId,
    timeoutMs: settings.upstreamTimeoutMs,
    format,
    signal: body.signal,
    onBodyProgress: body.onProgress,
    unavailableRetryAfter: parking ? PARKING_UNAVAILABLE_RETRY_AFTER : UNAVAILABLE_RETRY_AFTER,
  });
  // A body refused mid-stream failed the upload itself: the client hears why, not "unreachable".
  const checked = body.settled();
  if (!checked.ok) {
    await result.response.body?.cancel();
    return refused(bodyRefusal(checked));
  }

  const batch: Batch = { env, settings, ctx, admitted, format, signal, context: { ...who, route: path, bytes: checked.bytes } };
  const parked = parking && isOutage(result) ? await parkOnOutage(env, ctx, settings, parking, admitted.orgId, target, body, encoding === "gzip") : null;
  if (parked) {
    await result.response.body?.cancel();
    return answerParked(batch, result, parked);
  }
  return answerForwarded(batch, result, () => (body.items ? body.items() : null));
}
