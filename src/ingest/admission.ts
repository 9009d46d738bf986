import type { OrgBilling } from "../billing/org-billing.ts";
import { MirrorEntry } from "../shared/billing-state.ts";
import { hashIngestKey, IngestKeyRecord, isWellFormedIngestKey, presentedIngestKey } from "../shared/ingest-key.ts";
import { log, logError, logWarn } from "../shared/log.ts";
import { billingStateKey, ingestKeyHashKey } from "../shared/storage-keys.ts";
import { recordUsage } from "./analytics.ts";
import type { IngestSettings } from "./config.ts";
import { IngestGate, type GateSources } from "./gate.ts";
import { LogThrottle } from "./log-throttle.ts";
import { ingestError, type BodyFormat } from "./responses.ts";
import type { ForwardResult } from "./upstream.ts";

/** KV edge-cache time for mirror and key reads (Cloudflare's minimum). */
export const KV_CACHE_TTL_SECONDS = 30;

/** One gate per isolate: its caches are what make the hot path free. */
export const gate = new IngestGate({
  onDependencyFailure: (event) => logWarn({ event: event.decision === "accept" ? "ingest_fail_open" : "ingest_refusal_unconfirmed", ...event }),
});

/** How often one kind of refusal or upstream trouble of one org is logged per isolate. */
export const DECISION_LOG_WINDOW_MS = 10_000;

/**
 * Per-isolate throttle of refusal and upstream lines: the first per org and code in a
 * 10 s window, then one line with the count. 10,000 keys at most (a few hundred KiB).
 */
export const logThrottle = new LogThrottle({ windowMs: DECISION_LOG_WINDOW_MS, capacity: 10_000 });

const sourcesByEnv = new WeakMap<object, GateSources>();

/** The gate's real sources: INGEST_KEYS and BILLING_STATE in KV (edge-cached), and the org's object. */
export function gateSources(env: IngestEnv, settings: Pick<IngestSettings, "pepper">): GateSources {
  let sources = sourcesByEnv.get(env);
  if (!sources) {
    const objects = env.ORG_BILLING as unknown as DurableObjectNamespace<OrgBilling>;
    sources = {
      hashKey: (key) => hashIngestKey(settings.pepper, key),
      lookupKey: async (hash) => {
        const raw = await env.INGEST_KEYS.get(ingestKeyHashKey(hash), { type: "json", cacheTtl: KV_CACHE_TTL_SECONDS });
        return raw === null ? null : IngestKeyRecord.parse(raw);
      },
      readMirror: async (orgId) => {
        const raw = await env.BILLING_STATE.get(billingStateKey(orgId), { type: "json", cacheTtl: KV_CACHE_TTL_SECONDS });
        return raw === null ? null : MirrorEntry.parse(raw);
      },
      askObject: (orgId) => objects.getByName(orgId).verdict(orgId),
    };
    sourcesByEnv.set(env, sources);
  }
  return sources;
}

export type Admitted = { ok: true; orgId: string; keyId: string };
export type Refused = { ok: false; response: Response };

/**
 * A refusal: one exact counter, and a log line for the first refusal of this org and code in
 * the window (then one with `refused: N`, the refusals since the last line); never the key.
 */
export function refuse(
  env: IngestEnv,
  route: string,
  format: BodyFormat,
  status: number,
  code: string,
  message: string,
  context: { orgId?: string; keyId?: string; extra?: Record<string, string>; headers?: Record<string, string>; bytes?: number } = {},
): Refused {
  const refused = logThrottle.hit(`${context.orgId ?? "-"} ${code}`, Date.now());
  if (refused !== null) {
    logWarn({ event: "ingest_refused", org_id: context.orgId ?? null, key_id: context.keyId ?? null, route, status, code, reason: message, refused, window_s: DECISION_LOG_WINDOW_MS / 1000 });
  }
  if (context.orgId) recordUsage(env, { orgId: context.orgId, route, outcome: "refused", code, bytes: context.bytes ?? 0 });
  return { ok: false, response: ingestError(format, status, code, message, context.extra, context.headers) };
}

export const SUSPENDED_MESSAGE =
  "Ingestion is suspended because an invoice is overdue past its grace period and no payment has been received. Pay the overdue invoice (or contact support); ingestion resumes immediately after payment.";

/**
 * Who is sending, and may they? In order: missing or malformed key 401, unknown or
 * revoked key 401, suspended org 402. Nothing here reads the body.
 */
export async function admit(request: Request, env: IngestEnv, settings: IngestSettings, route: string, format: BodyFormat): Promise<Admitted | Refused> {
  const key = presentedIngestKey(request.headers);
  if (key === null) return refuse(env, route, format, 401, "missing_ingest_key", "send the ingest key as Authorization: Bearer <key> or x-ingest-key: <key>");
  if (!isWellFormedIngestKey(key)) return refuse(env, route, format, 401, "malformed_ingest_key", "the ingest key is not a Tollgate key (tg_ik_...); check for truncation or extra characters");

  const now = Date.now();
  let admission = gate.cached(key, now);
  if (!admission) {
    const sources = gateSources(env, settings);
    const check = await gate.checkKey(key, sources, now);
    if (!check.ok) {
      return check.code === "unknown_ingest_key"
        ? refuse(env, route, format, 401, "unknown_ingest_key", "the ingest key is unknown or has been revoked; mint a new one")
        : refuse(env, route, format, 503, "auth_unavailable", "the key store is unreachable; retry later", { headers: { "retry-after": "5" } });
    }
    admission = { org_id: check.org_id, key_id: check.key_id, verdict: await gate.verdict(check.org_id, sources, now) };
  }
  const { org_id: orgId, key_id: keyId, verdict } = admission;
  if (verdict.suspended) {
    const suspendedAt = verdict.suspended_at === null ? "" : new Date(verdict.suspended_at).toISOString();
    return refuse(env, route, format, 402, "billing_suspended", SUSPENDED_MESSAGE, { orgId, keyId, extra: { org_id: orgId, suspended_at: suspendedAt } });
  }
  return { ok: true, orgId, keyId };
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
    recordUsage(env, { orgId, route, outcome: "refused", code, bytes });
    const count = logThrottle.hit(`${orgId} upstream_${result.upstreamStatus ?? "none"}`, Date.now());
    if (count !== null) {
      const line = {
        event: result.outcome === "data_refused" ? "ingest_upstream_refused" : "ingest_upstream_failed",
        org_id: orgId,
        key_id: keyId,
        route,
        status: result.response.status,
        upstream_status: result.upstreamStatus,
        code,
        reason: result.failure,
        upstream_body: result.upstreamBody,
        bytes,
        count,
        window_s: DECISION_LOG_WINDOW_MS / 1000,
      };
      if (result.outcome === "data_refused" || result.outcome === "rate_limited") logWarn(line);
      else logError(line);
    }
    return result.response;
  }
  recordUsage(env, { orgId, route, outcome: "accepted", code: String(result.upstreamStatus), bytes });
  if (settings.logSampleRate > 0 && Math.random() < settings.logSampleRate) {
    log({ event: "ingest_accepted", org_id: orgId, key_id: keyId, route, bytes, upstream_status: result.upstreamStatus });
  }
  return result.response;
}
