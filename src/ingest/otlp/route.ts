import { declaredLengthExceeds } from "../../shared/bounded-read.ts";
import type { BodyFormat } from "../../shared/http-error.ts";
import type { IngestSettings } from "../config.ts";
import { refuse, settleForward } from "../request/account.ts";
import { admit } from "../request/admit.ts";
import { outgoingBody, type BodyProblem } from "../request/body.ts";
import { forward } from "../request/forward.ts";

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
 * decoded, re-encoded or held whole.
 */
export async function handleOtlp(request: Request, env: IngestEnv, settings: IngestSettings, path: string): Promise<Response> {
  const format = otlpFormat(request.headers.get("content-type"));
  const errorFormat = format ?? "json";
  const admitted = await admit(request, env, settings, path, errorFormat);
  if (!admitted.ok) return admitted.response;
  const ctx = { orgId: admitted.orgId, keyId: admitted.keyId };
  const refuseBody = (problem: BodyProblem, bytes = 0) => {
    if (problem.problem === "invalid_gzip") return refuse(env, path, errorFormat, 400, "invalid_gzip", "the body is declared gzip but does not decompress", { ...ctx, bytes }).response;
    const what = problem.problem === "too_large" ? "body" : "decompressed body";
    return refuse(env, path, errorFormat, 413, "payload_too_large", `the ${what} exceeds ${problem.limit} bytes; send smaller batches`, { ...ctx, bytes }).response;
  };

  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return refuseBody({ problem: "too_large", limit: settings.maxBodyBytes });
  if (format === null) {
    return refuse(env, path, "json", 415, "unsupported_media_type", "send OTLP as application/x-protobuf or application/json", ctx).response;
  }
  const encoding = otlpEncoding(request.headers.get("content-encoding"));
  if (encoding === null) return refuse(env, path, format, 415, "unsupported_encoding", "Content-Encoding must be gzip or absent", ctx).response;

  const body = await outgoingBody(request, encoding === "gzip", settings);
  if ("ok" in body) return refuseBody(body);

  const result = await forward({
    url: `${settings.upstreamUrl}${path}`,
    body: body.body,
    // The canonical type, not the client's header: whatever parameters or padding a client
    // sent are not the backend's problem (a 20 KiB content type drew a 431 from it).
    contentType: format === "json" ? "application/json" : "application/x-protobuf",
    contentEncoding: encoding === "gzip" ? "gzip" : null,
    tenantHeader: settings.tenantHeader,
    orgId: admitted.orgId,
    timeoutMs: settings.upstreamTimeoutMs,
    format,
    signal: body.signal,
  });
  // A body refused mid-stream failed the upload itself: the client hears why, not "unreachable".
  const checked = body.settled();
  if (!checked.ok) {
    await result.response.body?.cancel();
    return refuseBody(checked);
  }
  return settleForward(env, settings, { ...ctx, route: path, bytes: checked.bytes }, result);
}
