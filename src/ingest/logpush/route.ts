import { declaredLengthExceeds, readRequestBody, TooLargeError } from "../../shared/bounded-read.ts";
import type { IngestSettings } from "../config.ts";
import { refuse, settleForward } from "../request/account.ts";
import { admit } from "../request/admit.ts";
import { gunzipBounded, InvalidGzipError, isGzip } from "../request/body.ts";
import { forward } from "../request/forward.ts";
import { isValidationBody, parseLogpushBody, readLogpushOptions, toOtlpLogs } from "./index.ts";

const DATASET = /^[a-z0-9_]{1,64}$/;

/**
 * `POST /v1/logpush/{dataset}`: a Cloudflare Logpush HTTP destination. Every output shape a job
 * can send (NDJSON with any record_delimiter, a JSON array, one object, a wrapped batch, CSV;
 * `format=`, `fields=` and `time_field=` on the URL say what the body cannot) becomes OTLP JSON
 * logs sent to the upstream's /v1/logs, one log record per Logpush record. A body that cannot be
 * read as records is refused with a final 400 naming what to fix, and nothing is forwarded.
 * The job's validation request is answered 200 once the key and billing state pass.
 */
export async function handleLogpush(request: Request, env: IngestEnv, settings: IngestSettings, dataset: string): Promise<Response> {
  const route = "/v1/logpush";
  const admitted = await admit(request, env, settings, route, "json");
  if (!admitted.ok) return admitted.response;
  const ctx = { orgId: admitted.orgId, keyId: admitted.keyId };
  const tooLarge = (what: string, limit: number) => refuse(env, route, "json", 413, "payload_too_large", `the ${what} exceeds ${limit} bytes; lower max_upload_bytes on the Logpush job`, ctx).response;
  const invalid = (code: string, message: string) => refuse(env, route, "json", 400, code, message, ctx).response;

  if (!DATASET.test(dataset)) return invalid("invalid_dataset", "the dataset in the path must be a Logpush dataset name such as http_requests");
  const read = readLogpushOptions(new URL(request.url).searchParams);
  if (!read.ok) return invalid(read.code, read.message);
  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return tooLarge("body", settings.maxBodyBytes);
  const encoding = (request.headers.get("content-encoding") ?? "").trim().toLowerCase();
  if (encoding !== "" && encoding !== "identity" && encoding !== "gzip") {
    return refuse(env, route, "json", 415, "unsupported_encoding", "Content-Encoding must be gzip or absent", ctx).response;
  }

  let bytes: Uint8Array | null;
  try {
    bytes = await readRequestBody(request, settings.maxBodyBytes);
    // Logpush always gzips; some senders omit the header, so the magic bytes decide too.
    if (encoding === "gzip" || isGzip(bytes)) bytes = await gunzipBounded(bytes, settings.maxDecompressedBytes, true);
    else if (bytes.byteLength > settings.maxDecompressedBytes) throw new TooLargeError(settings.maxDecompressedBytes);
  } catch (error) {
    if (error instanceof TooLargeError) return tooLarge(error.limit === settings.maxBodyBytes ? "body" : "decompressed body", error.limit);
    if (error instanceof InvalidGzipError) return invalid("invalid_gzip", "the body is declared gzip but does not decompress");
    throw error;
  }

  const byteLength = bytes.byteLength;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return invalid("invalid_payload", "the body is not UTF-8");
  }
  bytes = null; // the text replaces the bytes: do not hold both while records and OTLP are built
  if (isValidationBody(text)) return Response.json({ status: "ok", validation: true });
  const parsed = parseLogpushBody(text, read.options);
  if (!parsed.ok) return invalid(parsed.code, parsed.message);

  const observedAtNs = BigInt(Date.now()) * 1_000_000n;
  const otlp = JSON.stringify(toOtlpLogs(parsed.records, { dataset, orgId: admitted.orgId, observedAtNs, timeField: read.options.timeField }));
  const result = await forward({
    url: `${settings.upstreamUrl}/v1/logs`,
    body: otlp,
    contentType: "application/json",
    contentEncoding: null,
    tenantHeader: settings.tenantHeader,
    orgId: admitted.orgId,
    timeoutMs: settings.upstreamTimeoutMs,
    format: "json",
  });
  const response = settleForward(env, settings, { ...ctx, route, bytes: byteLength }, result);
  if (!result.failure && response.ok) {
    await response.body?.cancel();
    return Response.json({ status: "accepted", records: parsed.records.length });
  }
  return response;
}
