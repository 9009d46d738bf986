import { declaredLengthExceeds, readBounded, TooLargeError } from "../../shared/bounded-read.ts";
import { errorResponse } from "../../shared/http-error.ts";
import type { IngestSettings } from "../config.ts";
import { logUpstreamTrouble, refuse, settleForward } from "../request/account.ts";
import { admit, type Suspended } from "../request/admit.ts";
import { decompressedCap, inflater, isGzip } from "../gzip.ts";
import { forward, isOutage, PARKING_UNAVAILABLE_RETRY_AFTER, UNAVAILABLE_RETRY_AFTER, type ForwardResult } from "../request/forward.ts";
import { batchDigest, keepOnce, readMarker } from "../parking/kept-once.ts";
import { parkBatch, parkBatchAt, parkingOf, type WaitUntil } from "../parking/batch.ts";
import type { ParkingSettings } from "../parking/store.ts";
import { log } from "../../shared/log.ts";
import { DECISION_LOG_WINDOW_MS, logThrottle } from "../log-throttle.ts";
import { suspendedResponse } from "../customer/pay-link.ts";
import type { WouldRefuseCode } from "../../shared/usage.ts";
import { countActivity, countForwarded, countParked, refusedAnswer } from "../usage/activity.ts";
import { isValidationBody, parseLogpushBody, readLogpushOptions, toOtlpLogs, type LogpushContext } from "./index.ts";
import { FlatRecords } from "./flat-records.ts";
import { countLines, Segmenter, shiftLine } from "./segments.ts";
import { Utf8Builder } from "./utf8-builder.ts";

const DATASET = /^[a-z0-9_]{1,64}$/;

/**
 * Decompressed text parsed and converted at a time (about 64 KiB): what bounds the parsed records
 * held. Under V8's large-object size (128 KiB), so a segment is young garbage, collected by the
 * next scavenge; a 1 MiB one lived in large-object space until a full collection (issue 20).
 */
export const SEGMENT_CHARS = 64 * 1024;
/** Decompressed bytes decoded to text at a time: the decoded strings too stay young (see SEGMENT_CHARS). */
const DECODE_BYTES = 32 * 1024;
/** OTLP JSON bytes sent upstream per request: the batch is forwarded in pieces of about this size. */
export const UPSTREAM_BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Compressed bytes inflated at a time: deflate expands at most about 1,032 to 1, so one slice's
 * output, held until it is decoded, stays under about 16 MiB even for a bomb (typically ~200 KiB).
 */
const INFLATE_SLICE_BYTES = 16 * 1024;

type Stop = { stop: Response };

/**
 * `POST /v1/logpush/{dataset}`: a Cloudflare Logpush HTTP destination. Every output shape a job
 * can send (NDJSON with any record_delimiter, a JSON array, one object, a wrapped batch, CSV;
 * `format=`, `fields=` and `time_field=` on the URL say what the body cannot) becomes OTLP JSON
 * logs sent to the upstream's /v1/logs, one log record per Logpush record. The job's validation
 * request is answered 200 once the key and billing state pass.
 *
 * In bounded memory (issue 11): the body streams through decompression and UTF-8 decoding, is cut
 * into segments of whole records (about 64 KiB), each converted on its own (flat NDJSON records
 * straight to OTLP JSON, flat-records.ts; anything else parsed first), and the OTLP JSON, written
 * as UTF-8 bytes, goes upstream in requests of about 4 MiB. Nothing is sent before the first 4 MiB of
 * OTLP JSON is built, so a small unreadable body is never forwarded. A failure after a piece went
 * upstream: an upstream failure is a retryable 503 (the job resends the whole batch, so the
 * upstream may see its first part twice); an unreadable record or the decompressed cap is still
 * the final 400 or 413 it always was, and the pieces before it stay delivered.
 */
export async function handleLogpush(request: Request, env: IngestEnv, settings: IngestSettings, dataset: string, waitUntil: WaitUntil): Promise<Response> {
  const route = "/v1/logpush";
  const admitted = await admit(request, env, settings, route, "json");
  const parking = parkingOf(env);
  if (!admitted.ok) {
    if (!("suspended" in admitted) || parking === null) return refusedAnswer(env, waitUntil, admitted);
    const answer = await parkRefused(request, env, settings, dataset, waitUntil, parking, admitted);
    // parkRefused answers the plain 402 itself when nothing was kept: a refusal, else parked data.
    countActivity(env, waitUntil, admitted.suspended.orgId, answer === admitted.response ? "refused" : "parked");
    return answer;
  }
  if (parking && admitted.verdict.since !== undefined && Date.now() - admitted.verdict.since < parking.retentionMs) {
    // The org's state changed within the retention: maybe it just paid, and this is Logpush retrying
    // a batch it was told is kept. The parked copy is delivered; this one must not go too (kept-once.ts).
    const held = await keptCopy(request, env, settings, dataset, parking, admitted.orgId, admitted.keyId);
    if (held.response) return held.response;
    request = held.request;
  }
  return convert(request, env, settings, dataset, { orgId: admitted.orgId, keyId: admitted.keyId, observed: admitted.observed }, piecesUpstream(env, settings, waitUntil, parking, admitted.orgId, admitted.keyId), waitUntil);
}

/**
 * Where the OTLP JSON pieces of a batch go, and whether the batch's outcome is accounted for as a
 * forward. `share`: the piece's records and the batch's bytes received since the previous piece.
 * `body` is a view of a buffer written again once `send` has settled: used by then, never kept.
 */
type Pieces = { send(body: Uint8Array, share: { records: number; bytes: number }): Promise<ForwardResult>; account: boolean };

/** The upstream; with parking on, an outage parks the failed piece and every later one of the batch (the job hears 200). */
function piecesUpstream(env: IngestEnv, settings: IngestSettings, waitUntil: WaitUntil, parking: ParkingSettings | null, orgId: string, keyId: string): Pieces {
  let parkingRest = false;
  const target = { route: "/v1/logs", contentType: "application/json", contentEncoding: null };
  const parked = (): ForwardResult => ({ response: new Response(null), upstreamStatus: null, outcome: "accepted", code: null, failure: null, parked: true });
  return {
    account: true,
    async send(body) {
      if (parkingRest && parking && (await parkBatch(env, waitUntil, parking, orgId, target, body, "upstream_unavailable"))) return parked();
      const result = await forward({
        url: `${settings.upstreamUrl}/v1/logs`,
        body,
        ...target,
        tenantHeader: settings.tenantHeader,
        orgId,
        timeoutMs: settings.upstreamTimeoutMs,
        format: "json",
        unavailableRetryAfter: parking ? PARKING_UNAVAILABLE_RETRY_AFTER : UNAVAILABLE_RETRY_AFTER,
      });
      if (parking && isOutage(result) && (await parkBatch(env, waitUntil, parking, orgId, target, body, "upstream_unavailable"))) {
        logUpstreamTrouble({ orgId, keyId, route: "/v1/logpush", bytes: body.byteLength }, result, true);
        parkingRest = true;
        return parked();
      }
      return result;
    },
  };
}

class ParkStopped extends Error {}

/** The digest a Logpush batch is known by (the same while suspended and after): dataset, URL options, encoding, bytes as received. */
const logpushDigest = (request: Request, dataset: string, received: Uint8Array) =>
  batchDigest(["/v1/logpush", dataset, new URL(request.url).search, request.headers.get("content-encoding") ?? ""], received);

/**
 * For an org whose state changed within the retention: the batch read (at most MAX_BODY_BYTES, as a
 * park holds), and a 200 without forwarding when a copy of it is kept with this key (delivered once
 * paid, metered then). Otherwise the request to convert, rebuilt from the bytes read. Costs one R2
 * read per batch, only for such orgs; a failing store forwards (at least once, never lost).
 */
async function keptCopy(request: Request, env: IngestEnv, settings: IngestSettings, dataset: string, parking: ParkingSettings, orgId: string, keyId: string): Promise<{ response: Response; request?: undefined } | { response?: undefined; request: Request }> {
  // Over the limit: convert refuses it as it always does (nothing of it can be kept).
  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return { request };
  const batch = await readWhole(request, settings.maxBodyBytes);
  if (batch === null) {
    return { response: refuse(env, "/v1/logpush", "json", 413, "payload_too_large", `the body exceeds ${settings.maxBodyBytes} bytes; lower max_upload_bytes on the Logpush job`, { orgId, keyId }).response };
  }
  const now = Date.now();
  const marker = await readMarker(parking, orgId, await logpushDigest(request, dataset, batch.received), now);
  if (marker !== null && marker.keyId === keyId) {
    const count = logThrottle.hit(`${orgId} logpush_kept_copy`, now);
    if (count !== null) log({ event: "ingest_logpush_kept_copy", org_id: orgId, bytes: batch.received.byteLength, count, window_s: DECISION_LOG_WINDOW_MS / 1000 });
    return { response: Response.json({ status: "accepted", records: marker.records ?? 0, kept: true }) };
  }
  return { request: batch.request };
}

/** The batch read whole (at most `maxBytes`, else null), and the request rebuilt from those bytes for conversion. */
async function readWhole(request: Request, maxBytes: number): Promise<{ received: Uint8Array; request: Request } | null> {
  let received: Uint8Array;
  try {
    received = await readBounded(request.body, maxBytes);
  } catch {
    return null;
  }
  return { received, request: new Request(request.url, { method: "POST", headers: request.headers, body: received }) };
}

/**
 * A suspended org's Logpush batch with parking on: converted exactly as for the upstream, each
 * piece parked instead of sent, and the 402 saying it is kept. The plain 402 when any of it
 * cannot be (unreadable, over a cap, the org's parked bytes at PARK_MAX_BYTES); pieces parked
 * before that stay parked and are delivered on payment.
 */
async function parkRefused(request: Request, env: IngestEnv, settings: IngestSettings, dataset: string, waitUntil: WaitUntil, parking: ParkingSettings, refused: Suspended): Promise<Response> {
  const { orgId, keyId, verdict } = refused.suspended;
  const target = { route: "/v1/logs", contentType: "application/json", contentEncoding: null, keyId };
  const kept = () => suspendedResponse({ format: "json", orgId, suspendedAt: verdict.suspended_at, payUrl: verdict.pay_url, parked: { retentionMs: parking.retentionMs }, logpush: true });
  // Logpush resends a refused upload: the batch as received (at most MAX_BODY_BYTES, as an OTLP park
  // holds) is known by its digest, and a resend of one already kept is answered as kept (issue 18, 5).
  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return refused.response;
  const batch = await readWhole(request, settings.maxBodyBytes);
  if (batch === null) return refused.response;
  const now = Date.now();
  const digest = await logpushDigest(request, dataset, batch.received);
  request = batch.request;
  // Parked whole or not at all: a stopped park's pieces are deleted (the job resends all of it), and
  // the marker is written only for a whole batch (kept-once.ts).
  const keptNow = await keepOnce(env, parking, { orgId, keyId }, digest, now, async (parked) => {
    const pieces: Pieces = {
      account: false,
      async send(body, share) {
        // Metered when delivered (after payment): the piece's records and share of the bytes as received.
        const usage = { signal: "logpush" as const, items: share.records, bytes: share.bytes };
        const piece = await parkBatchAt(env, waitUntil, parking, orgId, { ...target, usage }, body, "suspended");
        if (piece === null) throw new ParkStopped();
        parked.push(piece);
        return { response: new Response(null), upstreamStatus: null, outcome: "accepted", code: null, failure: null, parked: true };
      },
    };
    let response: Response;
    try {
      response = await convert(request, env, settings, dataset, { orgId, keyId, observed: null }, pieces, waitUntil);
    } catch (error) {
      if (error instanceof ParkStopped) return { whole: false, records: null };
      throw error;
    }
    if (response.status !== 200 || parked.length === 0) {
      await response.body?.cancel();
      return { whole: false, records: null };
    }
    const answer = (await response.json().catch(() => null)) as { records?: unknown } | null;
    return { whole: true, records: typeof answer?.records === "number" ? answer.records : null };
  });
  return keptNow ? kept() : refused.response;
}

/**
 * The batch read, converted and handed to `pieces` (see handleLogpush). A batch accounted for as
 * a forward (not a suspended org's, which is parked) is metered once every piece was accepted:
 * its records, and its bytes as received.
 */
async function convert(request: Request, env: IngestEnv, settings: IngestSettings, dataset: string, admitted: { orgId: string; keyId: string; observed: WouldRefuseCode | null }, pieces: Pieces, waitUntil: WaitUntil): Promise<Response> {
  const route = "/v1/logpush";
  const ctx = { orgId: admitted.orgId, keyId: admitted.keyId };
  const tooLarge = (what: string, limit: number) => refuse(env, route, "json", 413, "payload_too_large", `the ${what} exceeds ${limit} bytes; lower max_upload_bytes on the Logpush job`, ctx).response;
  const invalid = (code: string, message: string) => refuse(env, route, "json", 400, code, message, ctx).response;

  if (!DATASET.test(dataset)) return invalid("invalid_dataset", "the dataset in the path must be a Logpush dataset name such as http_requests");
  const read = readLogpushOptions(new URL(request.url).searchParams);
  if (!read.ok) return invalid(read.code, read.message);
  const options = read.options;
  if (declaredLengthExceeds(request.headers, settings.maxBodyBytes)) return tooLarge("body", settings.maxBodyBytes);
  const encoding = (request.headers.get("content-encoding") ?? "").trim().toLowerCase();
  if (encoding !== "" && encoding !== "identity" && encoding !== "gzip") {
    return refuse(env, route, "json", 415, "unsupported_encoding", "Content-Encoding must be gzip or absent", ctx).response;
  }

  // Upstream requests: each one ExportLogsServiceRequest, the records' JSON written as UTF-8 into one envelope.
  const context: LogpushContext = { dataset, orgId: admitted.orgId, observedAtNs: BigInt(Date.now()) * 1_000_000n, timeField: options.timeField };
  const [envelopeStart, envelopeEnd] = JSON.stringify(toOtlpLogs([], context)).split('"logRecords":[]');
  const envelopeHead = new TextEncoder().encode(`${envelopeStart}"logRecords":[`);
  const envelopeTail = new TextEncoder().encode(`]${envelopeEnd}`);
  const flat = options.format === "json" ? new FlatRecords(context) : null;
  // Two buffers in turn, each grown to a piece and the segment that takes it past
  // UPSTREAM_BATCH_BYTES, so no buffer is allocated per piece. workerd sends a byte body without
  // copying it: the piece in flight is never written to, as send settles it (answered, or parked)
  // before the next piece is sent and its buffer reused.
  let piece = new Utf8Builder(64 * 1024);
  let spare = new Utf8Builder(64 * 1024);
  piece.raw(envelopeHead);
  let pendingRecords = 0;
  let sharedBytes = 0;
  let records = 0;
  let delivered = 0;
  let last: ForwardResult | null = null;
  /**
   * The piece in flight upstream, if any: the next one is converted while it travels (the
   * upstream's time no longer adds to the conversion's), and sent only once it was accepted, so
   * the upstream sees the same pieces, in the same order, as when each was awaited in turn.
   */
  let inFlight: Promise<Stop | null> | null = null;
  const settle = async (): Promise<Stop | null> => {
    const flight = inFlight;
    inFlight = null;
    return flight ? await flight : null;
  };
  /** A stop found while a piece was in flight: that piece's failure, if it failed, came first. */
  const stopWith = async (stop: Stop): Promise<Response> => ((await settle()) ?? stop).stop;
  const deliver = async (body: Uint8Array, share: { records: number; bytes: number }): Promise<Stop | null> => {
    last = await pieces.send(body, share);
    if (last.outcome === "accepted") {
      delivered++;
      await last.response.body?.cancel();
      return null;
    }
    if (delivered > 0 && last.outcome !== "data_refused") {
      // Part of the batch is upstream: the job must resend all of it (the upstream may see that part twice).
      last = {
        ...last,
        response: errorResponse(503, "upstream_unavailable", `the telemetry backend failed after accepting part of this batch (${last.failure}); retry the whole batch`, {}, { "retry-after": "5" }),
      };
    }
    return { stop: pieces.account ? settleForward(env, settings, { ...ctx, route, bytes: decompressed }, last) : last.response };
  };
  const send = async (): Promise<Stop | null> => {
    const previous = await settle();
    if (previous) return previous;
    if (pendingRecords === 0) return null;
    piece.raw(envelopeTail);
    const body = piece.view();
    [piece, spare] = [spare, piece];
    piece.length = 0;
    piece.raw(envelopeHead);
    const share = { records: pendingRecords, bytes: compressed - sharedBytes };
    sharedBytes = compressed;
    pendingRecords = 0;
    const flight = deliver(body, share);
    // Its failure (a parking error included) surfaces when it is settled; never unhandled meanwhile.
    flight.catch(() => {});
    inFlight = flight;
    return null;
  };

  // Segments of whole records, parsed and converted one at a time.
  let lineOffset = 0;
  let csvHeader: string | null = null;
  let segments = 0;
  const take = async (segment: string, final: boolean): Promise<Stop | null> => {
    const first = segments++ === 0;
    if (first && final && isValidationBody(segment)) return { stop: Response.json({ status: "ok", validation: true }) };
    if (!first && !/\S/.test(segment)) return null;
    let text = segment;
    let offset = lineOffset;
    if (options.format === "csv" && options.fields === null) {
      // Later segments carry the header line again, so each parses on its own.
      if (first) csvHeader = /^[\r\n]*([^\n]*)/.exec(segment)![1]!.replace(/\r$/, "");
      else {
        text = `${csvHeader}\n${segment}`;
        offset -= 1;
      }
    }
    lineOffset += countLines(segment);
    if (pendingRecords > 0) piece.byte(0x2c); // ,
    // Flat NDJSON records straight to OTLP JSON; anything else parsed into records and converted.
    let count = flat === null ? null : flat.write(text, piece);
    if (count === null) {
      const parsed = parseLogpushBody(text, options);
      if (!parsed.ok) return { stop: invalid(parsed.code, shiftLine(parsed.message, offset)) };
      piece.text(JSON.stringify(toOtlpLogs(parsed.records, context).resourceLogs[0]!.scopeLogs[0]!.logRecords).slice(1, -1));
      count = parsed.records.length;
    }
    records += count;
    pendingRecords += count;
    return piece.length >= UPSTREAM_BATCH_BYTES ? send() : null;
  };

  // The body: counted, inflated when gzip (declared, or by its magic bytes), decoded, cut.
  let decompressed = 0;
  let compressed = 0;
  const source = await peekGzip(request.body);
  const reader = source.stream.getReader();
  // Logpush always gzips; some senders omit the header, so the magic bytes decide too.
  const gzipped = encoding === "gzip" || source.gzip;
  /** Inflated output not yet decoded: at most one input slice's worth (see INFLATE_SLICE_BYTES). */
  const inflated: Uint8Array[] = [];
  const inflate = gzipped ? inflater(decompressedCap(settings.maxDecompressedBytes), (chunk) => inflated.push(chunk)) : null;
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
  const segmenter = new Segmenter(options.format === "csv", SEGMENT_CHARS);
  const decode = async (chunk: Uint8Array): Promise<Stop | null> => {
    decompressed += chunk.byteLength;
    if (settings.maxDecompressedBytes > 0 && decompressed > settings.maxDecompressedBytes) throw new BodyError("decompressed");
    for (let at = 0; at < chunk.byteLength; at += DECODE_BYTES) {
      let text: string;
      try {
        text = decoder.decode(chunk.subarray(at, at + DECODE_BYTES), { stream: true });
      } catch {
        throw new BodyError("utf8");
      }
      for (const segment of segmenter.push(text)) {
        const stop = await take(segment, false);
        if (stop) return stop;
      }
    }
    return null;
  };
  const drain = async (): Promise<Stop | null> => {
    while (inflated.length > 0) {
      const stop = await decode(inflated.shift()!);
      if (stop) return stop;
    }
    return null;
  };
  const inflating = async (step: Promise<unknown>): Promise<void> => {
    try {
      await step;
    } catch (error) {
      throw new BodyError(error instanceof TooLargeError ? "decompressed" : "gzip");
    }
  };
  try {
    if (gzipped && !source.gzip) throw new BodyError("gzip");
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch {
        throw new BodyError(gzipped ? "gzip" : "body");
      }
      if (chunk.done) break;
      compressed += chunk.value.byteLength;
      if (compressed > settings.maxBodyBytes) throw new BodyError("body");
      if (!inflate) {
        const stop = await decode(chunk.value);
        if (stop) return stopWith(stop);
        continue;
      }
      for (let at = 0; at < chunk.value.byteLength; at += INFLATE_SLICE_BYTES) {
        await inflating(inflate.write(chunk.value.subarray(at, at + INFLATE_SLICE_BYTES)));
        const stop = await drain();
        if (stop) return stopWith(stop);
      }
    }
    if (inflate) {
      await inflating(inflate.end());
      const stop = await drain();
      if (stop) return stopWith(stop);
    }
    let rest: string;
    try {
      rest = segmenter.end() + decoder.decode();
    } catch {
      throw new BodyError("utf8");
    }
    const stop = (await take(rest, true)) ?? (await send()) ?? (await settle());
    if (stop) return stopWith(stop);
  } catch (error) {
    if (!(error instanceof BodyError)) throw error;
    // Not awaited: cancelling a half-read request body can wait on the client.
    reader.cancel().catch(() => {});
    inflate?.abort();
    const earlier = await settle();
    if (earlier) return earlier.stop;
    if (error.what === "body") return tooLarge("body", settings.maxBodyBytes);
    if (error.what === "decompressed") return tooLarge("decompressed body", settings.maxDecompressedBytes);
    if (error.what === "gzip") return invalid("invalid_gzip", "the body is declared gzip but does not decompress");
    return invalid("invalid_payload", "the body is not UTF-8");
  }

  const result = last as ForwardResult | null;
  if (result === null) return invalid("no_records", "the body holds no records");
  if (pieces.account) {
    settleForward(env, settings, { ...ctx, route, bytes: decompressed }, result);
    if (result.parked) countParked(env, settings, waitUntil, admitted, "logpush", { items: records, bytes: compressed });
    else countForwarded(env, settings, waitUntil, admitted, "logpush", { items: () => records, bytes: compressed });
  }
  return Response.json({ status: "accepted", records });
}

class BodyError extends Error {
  readonly what: "body" | "decompressed" | "gzip" | "utf8";
  constructor(what: BodyError["what"]) {
    super(what);
    this.what = what;
  }
}

/** The body's stream with its first chunk put back, and whether it starts with gzip's magic bytes. */
async function peekGzip(body: ReadableStream<Uint8Array> | null): Promise<{ stream: ReadableStream<Uint8Array>; gzip: boolean }> {
  if (body === null) return { stream: new Blob([]).stream(), gzip: false };
  const reader = body.getReader();
  const first = await reader.read();
  if (first.done) return { stream: new Blob([]).stream(), gzip: false };
  let head: Uint8Array | null = first.value;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (head !== null) {
        controller.enqueue(head);
        head = null;
        return;
      }
      const next = await reader.read();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  // A first chunk of one byte cannot show both magic bytes; real chunks are far larger.
  return { stream, gzip: isGzip(first.value) };
}
