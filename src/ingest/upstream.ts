import type { BodyFormat } from "./responses.ts";
import { ingestError } from "./responses.ts";

const DEFAULT_RETRY_AFTER = "5";

export type Forward = {
  url: string;
  body: BodyInit;
  contentType: string;
  contentEncoding: string | null;
  tenantHeader: string;
  orgId: string;
  timeoutMs: number;
  format: BodyFormat;
};

export type ForwardResult = { response: Response; upstreamStatus: number | null; failure: string | null };

/**
 * Sends accepted data upstream with a fresh header set (so the client's credentials and
 * any tenant header it sent never travel), and maps upstream trouble to a retryable
 * answer: 429 stays 429, 5xx, timeouts and connection errors become 503, both with
 * Retry-After, so exporters retry and nothing accepted is silently lost.
 */
export async function forward(request: Forward): Promise<ForwardResult> {
  const headers: Record<string, string> = { "content-type": request.contentType, [request.tenantHeader]: request.orgId };
  if (request.contentEncoding) headers["content-encoding"] = request.contentEncoding;
  let upstream: Response;
  try {
    upstream = await fetch(request.url, { method: "POST", headers, body: request.body, signal: AbortSignal.timeout(request.timeoutMs) });
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
    const failure = timedOut ? `no answer within ${request.timeoutMs} ms` : `unreachable: ${error instanceof Error ? error.message : String(error)}`;
    return { response: unavailable(request.format, failure), upstreamStatus: null, failure };
  }
  if (upstream.status === 429) {
    await upstream.body?.cancel();
    const retryAfter = upstream.headers.get("retry-after") ?? DEFAULT_RETRY_AFTER;
    return {
      response: ingestError(request.format, 429, "upstream_rate_limited", "the telemetry backend is rate limiting; retry later", {}, { "retry-after": retryAfter }),
      upstreamStatus: 429,
      failure: "upstream answered 429",
    };
  }
  if (upstream.status >= 500) {
    await upstream.body?.cancel();
    return { response: unavailable(request.format, `upstream answered ${upstream.status}`), upstreamStatus: upstream.status, failure: `upstream answered ${upstream.status}` };
  }
  const passHeaders: Record<string, string> = {};
  const type = upstream.headers.get("content-type");
  if (type) passHeaders["content-type"] = type;
  return { response: new Response(upstream.body, { status: upstream.status, headers: passHeaders }), upstreamStatus: upstream.status, failure: null };
}

function unavailable(format: BodyFormat, failure: string): Response {
  return ingestError(format, 503, "upstream_unavailable", `the telemetry backend is unavailable (${failure}); retry later`, {}, { "retry-after": DEFAULT_RETRY_AFTER });
}
