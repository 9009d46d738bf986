import { declaredLengthExceeds, readRequestBody, TooLargeError } from "../../shared/bounded-read.ts";
import type { BodyFormat } from "../../shared/http-error.ts";
import type { IngestSettings } from "../config.ts";
import { refuse, settleForward } from "../request/account.ts";
import { admit } from "../request/admit.ts";
import { gunzipBounded, InvalidGzipError } from "../request/body.ts";
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
 * `POST /v1/{traces,metrics,logs}`. The body is checked (size, type, gzip integrity and
 * decompressed size) but forwarded exactly as it came: no decode and re-encode.
 */
export async function handleOtlp(request: Request, env: IngestEnv, settings: IngestSettings, path: string): Promise<Response> {
  const format = otlpFormat(request.headers.get("content-type"));
  const errorFormat = format ?? "json";
  const admitted = await admit(request, env, settings, path, errorFormat);
  if (!admitted.ok) return admitted.response;
  const ctx = { orgId: admitted.orgId, keyId: admitted.keyId };

  const tooLarge = (what: string, limit: number) => refuse(env, path, errorFormat, 413, "payload_too_large", `the ${what} exceeds ${limit} bytes; send smaller batches`, ctx).response;
  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return tooLarge("body", settings.maxBodyBytes);
  if (format === null) {
    return refuse(env, path, "json", 415, "unsupported_media_type", "send OTLP as application/x-protobuf or application/json", ctx).response;
  }
  const encoding = otlpEncoding(request.headers.get("content-encoding"));
  if (encoding === null) return refuse(env, path, format, 415, "unsupported_encoding", "Content-Encoding must be gzip or absent", ctx).response;

  let body: Uint8Array;
  try {
    body = await readRequestBody(request, settings.maxBodyBytes);
  } catch (error) {
    if (error instanceof TooLargeError) return tooLarge("body", settings.maxBodyBytes);
    throw error;
  }
  if (encoding === "gzip") {
    try {
      await gunzipBounded(body, settings.maxDecompressedBytes, false);
    } catch (error) {
      if (error instanceof TooLargeError) return tooLarge("decompressed body", settings.maxDecompressedBytes);
      if (error instanceof InvalidGzipError) return refuse(env, path, format, 400, "invalid_gzip", "the body is declared gzip but does not decompress", ctx).response;
      throw error;
    }
  }

  const result = await forward({
    url: `${settings.upstreamUrl}${path}`,
    body,
    // The canonical type, not the client's header: whatever parameters or padding a client
    // sent are not the backend's problem (a 20 KiB content type drew a 431 from it).
    contentType: format === "json" ? "application/json" : "application/x-protobuf",
    contentEncoding: encoding === "gzip" ? "gzip" : null,
    tenantHeader: settings.tenantHeader,
    orgId: admitted.orgId,
    timeoutMs: settings.upstreamTimeoutMs,
    format,
  });
  return settleForward(env, settings, { ...ctx, route: path, bytes: body.byteLength }, result);
}
