import { errorResponse, type BodyFormat } from "../../shared/http-error.ts";

/**
 * Retry-After for transient upstream trouble (5xx, timeouts, connection errors, 408) when parking
 * is off: short enough that an exporter with default settings (a 10 s export timeout) retries a
 * few times within one export instead of dropping the batch. Longer outages need a Collector with
 * a sending queue in front, or parking.
 */
export const UNAVAILABLE_RETRY_AFTER = "2";
/** The same when parking is on: a 503 then means the batch could not be parked either (over the cap, R2 failing). */
export const PARKING_UNAVAILABLE_RETRY_AFTER = "5";
/** A 429 from the upstream without a usable Retry-After of its own. */
export const RATE_LIMITED_RETRY_AFTER = "5";
/** Retry-After while the operator fixes the configuration: slower, but the client keeps its data. */
export const MISCONFIGURED_RETRY_AFTER = "30";
/** How much of a refusing upstream's body goes into the log line. */
const UPSTREAM_BODY_SNIPPET_BYTES = 300;

export type Forward = {
  url: string;
  body: BodyInit;
  contentType: string;
  contentEncoding: string | null;
  tenantHeader: string;
  orgId: string;
  timeoutMs: number;
  format: BodyFormat;
  /** Aborts the request from our side (a streamed body that failed its checks). */
  signal?: AbortSignal;
  /** A streamed body's progress (see OutgoingBody.onProgress): the timeout then counts from its latest chunk. */
  onBodyProgress?: (listener: () => void) => void;
  /** Retry-After of a 503 upstream_unavailable; UNAVAILABLE_RETRY_AFTER unless given. */
  unavailableRetryAfter?: string;
};

/** Whether a failure is the upstream's transient trouble (5xx, 408, timeout, connection error): what parking covers. */
export function isOutage(result: Pick<ForwardResult, "outcome">): boolean {
  return result.outcome === "unavailable" || result.outcome === "unreachable";
}

/**
 * What an upstream answer means for the client:
 * - `accepted`: 2xx, passed through.
 * - `data_refused`: 400 or 413, the backend refused this batch itself; final for the client.
 * - `rate_limited`: 429, stays 429.
 * - `unavailable`: 5xx, 408, timeout, connection error; transient, retryable 503.
 * - `misconfigured`: any 3xx (never followed) and every other 4xx (401, 403, 404, 405, ...):
 *   the backend says our URL, credentials or tenant setup is wrong, not the data. A retryable
 *   503, so exporters keep the batch while the operator fixes the configuration. An unknown
 *   4xx lands here on purpose: retrying a bad batch a few times costs little, dropping a good
 *   one because of our configuration loses data.
 */
export type UpstreamOutcome = "accepted" | "data_refused" | "rate_limited" | "unavailable" | "misconfigured";

export function classifyUpstreamStatus(status: number): UpstreamOutcome {
  if (status >= 200 && status < 300) return "accepted";
  if (status === 400 || status === 413) return "data_refused";
  if (status === 429) return "rate_limited";
  if (status === 408 || status >= 500) return "unavailable";
  return "misconfigured";
}

export type ForwardResult = {
  response: Response;
  /** The upstream's status; null when it never answered (timeout, connection error). */
  upstreamStatus: number | null;
  outcome: UpstreamOutcome | "unreachable";
  /** A stable code for counters and logs (null when accepted): the client's error code, or `upstream_payload_too_large`. */
  code: string | null;
  /** null when accepted; otherwise what happened, for the log. */
  failure: string | null;
  /** The start of a refusing upstream's body, for the operator (never the client's data as sent). */
  upstreamBody?: string;
  /** The upstream failed and the batch was parked instead (accepted: it is delivered later). */
  parked?: boolean;
};

/**
 * Sends accepted data upstream with a fresh header set (so the client's credentials and
 * any tenant header it sent never travel) and maps the answer (see `classifyUpstreamStatus`).
 * Redirects are never followed: a followed 302 turns the POST into a bodiless GET whose 200
 * would tell the client its data arrived.
 */
export async function forward(request: Forward): Promise<ForwardResult> {
  const headers: Record<string, string> = { "content-type": request.contentType, [request.tenantHeader]: request.orgId };
  if (request.contentEncoding) headers["content-encoding"] = request.contentEncoding;
  let upstream: Response;
  try {
    const signal = request.onBodyProgress || request.signal ? silenceSignal(request.timeoutMs, request.onBodyProgress, request.signal) : AbortSignal.timeout(request.timeoutMs);
    upstream = await fetch(request.url, { method: "POST", headers, body: request.body, redirect: "manual", signal });
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
    const failure = timedOut ? `no answer within ${request.timeoutMs} ms` : `unreachable: ${error instanceof Error ? error.message : String(error)}`;
    return { response: unavailable(request, failure), upstreamStatus: null, outcome: "unreachable", code: "upstream_unavailable", failure };
  }

  const status = upstream.status;
  const outcome = classifyUpstreamStatus(status);
  if (outcome === "accepted") {
    const passHeaders: Record<string, string> = {};
    const type = upstream.headers.get("content-type");
    if (type) passHeaders["content-type"] = type;
    return { response: new Response(upstream.body, { status, headers: passHeaders }), upstreamStatus: status, outcome, code: null, failure: null };
  }

  const upstreamBody = await snippet(upstream);
  const failure = `upstream answered ${status}`;
  const result = (response: Response, code: string): ForwardResult => ({ response, upstreamStatus: status, outcome, code, failure, upstreamBody });
  switch (outcome) {
    case "rate_limited":
      return result(
        errorResponse(429, "upstream_rate_limited", "the telemetry backend is rate limiting; retry later", {}, {
          "retry-after": retryAfter(upstream.headers.get("retry-after")),
        }, request.format),
        "upstream_rate_limited",
      );
    case "data_refused":
      return result(
        status === 413
          ? errorResponse(413, "payload_too_large", "the telemetry backend refused this batch as too large (upstream answered 413); send smaller batches", {}, {}, request.format)
          : errorResponse(400, "upstream_rejected_payload", "the telemetry backend refused this batch as invalid (upstream answered 400); do not resend it unchanged", {}, {}, request.format),
        status === 413 ? "upstream_payload_too_large" : "upstream_rejected_payload",
      );
    case "misconfigured":
      return result(
        errorResponse(503, "upstream_misconfigured", `the telemetry backend refused Tollgate's request (upstream answered ${status}); the operator has been alerted, retry later`, {}, { "retry-after": MISCONFIGURED_RETRY_AFTER }, request.format),
        "upstream_misconfigured",
      );
    default:
      return result(unavailable(request, failure), "upstream_unavailable");
  }
}

/**
 * UPSTREAM_TIMEOUT times the upstream, not the client: with a streamed body it counts from the
 * body's latest chunk, so a slow upload that keeps moving is not cut off (issue 22: chunked
 * uploads on a loaded machine took longer than the timeout as a whole), while an upstream that
 * stops reading, or is slow to answer once it has everything, still times out.
 */
function silenceSignal(ms: number, onBodyProgress?: (listener: () => void) => void, bodyFailed?: AbortSignal): AbortSignal {
  // One controller, strongly held by its timer and listeners, rather than AbortSignal.any over a
  // timeout signal; and a timer re-armed per chunk rather than clock readings compared (issue 22:
  // twice in CI, and once here in a full test run, the earlier code never timed out an upstream
  // slow to answer a streamed body; this code passed the same run).
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    if (!controller.signal.aborted) timer = setTimeout(() => controller.abort(new DOMException(`no progress within ${ms} ms`, "TimeoutError")), ms);
  };
  arm();
  onBodyProgress?.(arm);
  bodyFailed?.addEventListener("abort", () => {
    clearTimeout(timer);
    controller.abort(bodyFailed.reason);
  }, { once: true });
  return controller.signal;
}

function unavailable(request: Pick<Forward, "format" | "unavailableRetryAfter">, failure: string): Response {
  return errorResponse(503, "upstream_unavailable", `the telemetry backend is unavailable (${failure}); retry later`, {}, { "retry-after": request.unavailableRetryAfter ?? UNAVAILABLE_RETRY_AFTER }, request.format);
}

/** The upstream's Retry-After when it is delta-seconds or an HTTP date; ours otherwise. */
function retryAfter(value: string | null): string {
  const trimmed = value?.trim() ?? "";
  if (/^\d{1,7}$/.test(trimmed)) return trimmed;
  if (trimmed.length <= 64 && /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return trimmed;
  return RATE_LIMITED_RETRY_AFTER;
}

/** The first few hundred bytes of a refusing upstream's body, as text; the rest is discarded unread. */
async function snippet(response: Response): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < UPSTREAM_BODY_SNIPPET_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // A body that breaks off is still an answer; the status is what matters.
  } finally {
    await reader.cancel().catch(() => {});
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes.subarray(0, UPSTREAM_BODY_SNIPPET_BYTES));
}
