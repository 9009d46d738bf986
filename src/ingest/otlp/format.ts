import type { BodyFormat } from "../../shared/http-error.ts";

/**
 * What an OTLP request says of its body in its headers, and the one place that decides whether
 * the route can take it: the encoding (protobuf or JSON) and the compression (none or gzip).
 * Pure, read once per request; the route refuses what it cannot take (after the key, before
 * reading a byte of the body).
 */

export type Compression = "identity" | "gzip";

/**
 * The body's content as the client declared it: one the route takes, or the 415 it gets (the type
 * first). `format` is also the format of any answer, refusals included: the declared one when
 * the type is supported, JSON when it is not.
 */
export type OtlpContent = { ok: true; format: BodyFormat; encoding: Compression } | { ok: false; format: BodyFormat | null; refusal: Refusal };

/** A client mistake, as the route answers it: a stable code and a human message. */
export type Refusal = { status: number; code: string; message: string };

export function otlpContent(headers: Headers): OtlpContent {
  const format = otlpFormat(headers.get("content-type"));
  if (format === null) return { ok: false, format, refusal: { status: 415, code: "unsupported_media_type", message: "send OTLP as application/x-protobuf or application/json" } };
  const encoding = otlpEncoding(headers.get("content-encoding"));
  if (encoding === null) return { ok: false, format, refusal: { status: 415, code: "unsupported_encoding", message: "Content-Encoding must be gzip or absent" } };
  return { ok: true, format, encoding };
}

/** Missing → protobuf; contains "json" → JSON; protobuf or octet-stream → protobuf; anything else is unsupported. */
function otlpFormat(contentType: string | null): BodyFormat | null {
  if (contentType === null || contentType.trim() === "") return "protobuf";
  const type = contentType.toLowerCase();
  if (type.includes("json")) return "json";
  if (type.includes("protobuf") || type.startsWith("application/octet-stream")) return "protobuf";
  return null;
}

/** `none`/`identity` or `gzip`; null for anything else. */
function otlpEncoding(header: string | null): Compression | null {
  const value = (header ?? "").trim().toLowerCase();
  if (value === "" || value === "identity") return "identity";
  return value === "gzip" ? "gzip" : null;
}

/**
 * The upstream request's content headers. The canonical type, not the client's header: whatever
 * parameters or padding a client sent are not the backend's problem (a 20 KiB content type drew
 * a 431 from it).
 */
export function upstreamContent(format: BodyFormat, encoding: Compression): { contentType: string; contentEncoding: string | null } {
  return { contentType: format === "json" ? "application/json" : "application/x-protobuf", contentEncoding: encoding === "gzip" ? "gzip" : null };
}
