import { errorResponse, type BodyFormat } from "../../shared/http-error.ts";
import { log, logError, logWarn } from "../../shared/log.ts";
import type { IngestSettings } from "../config.ts";
import { writeAnalyticsPoint } from "./analytics.ts";
import type { ForwardResult } from "./forward.ts";
import { DECISION_LOG_WINDOW_MS, logThrottle } from "../log-throttle.ts";

/** `billingOrgId`: set on a 402 or 429 refusal (suspended, plan limit), the org whose activity counts it `refused` (usage/activity.ts). */
export type Refused = { ok: false; response: Response; billingOrgId?: string };

/**
 * A refusal: one exact counter, and a log line for the first refusal of this org and code in
 * the window (then one with `refused: N`, the refusals since the last line); never the key.
 * `response`: a refusal built elsewhere (the 402 with its pay link), accounted for here all the same.
 */
export function refuse(
  env: IngestEnv,
  route: string,
  format: BodyFormat,
  status: number,
  code: string,
  message: string,
  context: { orgId?: string; keyId?: string; extra?: Record<string, string>; headers?: Record<string, string>; bytes?: number; response?: Response } = {},
): Refused {
  const refused = logThrottle.hit(`${context.orgId ?? "-"} ${code}`, Date.now());
  if (refused !== null) {
    logWarn({ event: "ingest_refused", org_id: context.orgId ?? null, key_id: context.keyId ?? null, route, status, code, reason: message, refused, window_s: DECISION_LOG_WINDOW_MS / 1000 });
  }
  if (context.orgId) writeAnalyticsPoint(env, { orgId: context.orgId, route, outcome: "refused", code, bytes: context.bytes ?? 0 });
  const response = context.response ?? errorResponse(status, code, message, context.extra, context.headers, format);
  return context.orgId !== undefined && (status === 402 || status === 429) ? { ok: false, response, billingOrgId: context.orgId } : { ok: false, response };
}

/**
 * A refusal not carried out (observe mode, issue 21): the same exact counter under outcome
 * `would_refuse`, and `ingest_would_refuse` for the first of this org and code in the window (then
 * one with `would_refuse: N`); the request goes on and is accounted for as usual.
 */
export function wouldRefuse(env: IngestEnv, route: string, status: number, code: string, message: string, context: { orgId: string; keyId: string }): void {
  const count = logThrottle.hit(`${context.orgId} would_${code}`, Date.now());
  if (count !== null) {
    log({ event: "ingest_would_refuse", org_id: context.orgId, key_id: context.keyId, route, status, code, reason: message, enforcement: "observe", would_refuse: count, window_s: DECISION_LOG_WINDOW_MS / 1000 });
  }
  writeAnalyticsPoint(env, { orgId: context.orgId, route, outcome: "would_refuse", code, bytes: 0 });
}

/**
 * Accounts for a forwarded request. Upstream trouble is logged, throttled like refusals:
 * `ingest_upstream_failed` at error level when the client got a retryable answer
 * (misconfigured, unavailable, unreachable) and at warn level for 429;
 * `ingest_upstream_refused` when the backend refused the data itself (400, 413), so the
 * operator can match MAX_BODY_BYTES to the backend. Accepted data is counted and, when
 * LOG_SAMPLE_RATE allows, logged.
 */
export function settleForward(
  env: IngestEnv,
  settings: IngestSettings,
  context: { orgId: string; keyId: string; route: string; bytes: number },
  result: ForwardResult,
): Response {
  const { orgId, keyId, route, bytes } = context;
  if (result.outcome !== "accepted") {
    const code = result.code ?? "upstream_unavailable";
    writeAnalyticsPoint(env, { orgId, route, outcome: "refused", code, bytes });
    logUpstreamTrouble(context, result);
    return result.response;
  }
  writeAnalyticsPoint(env, { orgId, route, outcome: "accepted", code: result.parked ? "parked" : String(result.upstreamStatus), bytes });
  if (settings.logSampleRate > 0 && Math.random() < settings.logSampleRate) {
    log({ event: "ingest_accepted", org_id: orgId, key_id: keyId, route, bytes, upstream_status: result.upstreamStatus });
  }
  return result.response;
}

/**
 * The throttled line for an upstream that did not take a batch. Also used when the batch was
 * parked instead (the client got its 2xx, but the operator must still hear the upstream is down).
 */
export function logUpstreamTrouble(context: { orgId: string; keyId: string; route: string; bytes: number }, result: ForwardResult, parked = false): void {
  const { orgId, keyId, route, bytes } = context;
  const count = logThrottle.hit(`${orgId} upstream_${result.upstreamStatus ?? "none"}`, Date.now());
  if (count === null) return;
  const line = {
    event: result.outcome === "data_refused" ? "ingest_upstream_refused" : "ingest_upstream_failed",
    org_id: orgId,
    key_id: keyId,
    route,
    status: parked ? 200 : result.response.status,
    upstream_status: result.upstreamStatus,
    code: result.code ?? "upstream_unavailable",
    reason: result.failure,
    upstream_body: result.upstreamBody,
    bytes,
    parked,
    count,
    window_s: DECISION_LOG_WINDOW_MS / 1000,
  };
  if (result.outcome === "data_refused" || result.outcome === "rate_limited") logWarn(line);
  else logError(line);
}
