import { isWellFormedIngestKey, presentedIngestKey } from "../../shared/ingest-key.ts";
import type { BodyFormat } from "../../shared/http-error.ts";
import { limitFor } from "../../shared/usage.ts";
import { upgradeUrlFor, type IngestSettings } from "../config.ts";
import { suspendedMessage, suspendedResponse } from "../customer/pay-link.ts";
import { planLimitMessage, planLimitResponse } from "../customer/plan-limit.ts";
import { signalOfRoute } from "../usage/route-signal.ts";
import { refuse, wouldRefuse, type Refused } from "./account.ts";
import type { Verdict } from "./gate.ts";
import { gate } from "./isolate.ts";
import { gateSources } from "./sources.ts";

/**
 * `verdict`: the gate's answer, with what the overdue warning needs (state, deadline, pay link).
 * `observed`: the refusal this request would have got but for observe mode (issue 21), else null.
 */
export type Admitted = { ok: true; orgId: string; keyId: string; verdict: Verdict; observed: "billing_suspended" | "plan_limit_reached" | null };

/** A suspended org's refusal: the plain 402 (with the pay link), and what a route needs to park the batch instead. */
export type Suspended = Refused & { suspended: { orgId: string; keyId: string; verdict: Verdict } };

/** Who is asking: the key's org and the gate's verdict on it, refused on nothing but the key. `now`: when the gate answered. */
export type Identified = { ok: true; orgId: string; keyId: string; verdict: Verdict; now: number };

/**
 * The key check every authenticated route shares: missing or malformed key 401, unknown or revoked
 * key 401, key store unreachable (and the key never seen) 503; otherwise the org and the gate's
 * verdict (memory, then KV, then only for a suspension the object), whatever that verdict says.
 */
export async function identify(request: Request, env: IngestEnv, settings: IngestSettings, route: string, format: BodyFormat): Promise<Identified | Refused> {
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
    admission = { org_id: check.org_id, key_id: check.key_id, verdict: await gate.verdict(check.org_id, sources, now, check.verdict) };
  }
  return { ok: true, orgId: admission.org_id, keyId: admission.key_id, verdict: admission.verdict, now };
}

/**
 * Who is sending, and may they? In order: missing or malformed key 401, unknown or
 * revoked key 401, suspended org 402, then (with ENFORCE_LIMITS) a used-up plan feature
 * covering the route's signal 429. Nothing here reads the body; the limits come with the
 * gate's verdict, so a limit costs no lookup.
 */
export async function admit(request: Request, env: IngestEnv, settings: IngestSettings, route: string, format: BodyFormat): Promise<Admitted | Refused | Suspended> {
  const identified = await identify(request, env, settings, route, format);
  if (!identified.ok) return identified;
  const { orgId, keyId, verdict, now } = identified;
  const observing = (verdict.enforcement ?? settings.enforcement) === "observe";
  if (verdict.suspended) {
    const refusal = { format, orgId, suspendedAt: verdict.suspended_at, payUrl: verdict.pay_url, parked: null, logpush: route === "/v1/logpush" };
    if (observing) {
      wouldRefuse(env, route, 402, "billing_suspended", suspendedMessage(refusal), { orgId, keyId });
      return { ok: true, orgId, keyId, verdict, observed: "billing_suspended" };
    }
    const refused = refuse(env, route, format, 402, "billing_suspended", suspendedMessage(refusal), { orgId, keyId, response: suspendedResponse(refusal) });
    return { ...refused, suspended: { orgId, keyId, verdict } };
  }
  // After the suspension: a suspended org hears it must pay (402), whatever else it has used up.
  if (settings.enforceLimits && verdict.limits.length > 0) {
    const signal = signalOfRoute(route);
    const limit = signal === null ? null : limitFor(verdict.limits, signal, now);
    if (limit) {
      const refusal = { format, limit, upgradeUrl: upgradeUrlFor(settings, orgId), logpush: route === "/v1/logpush", now };
      if (observing) {
        wouldRefuse(env, route, 429, "plan_limit_reached", planLimitMessage(refusal), { orgId, keyId });
        return { ok: true, orgId, keyId, verdict, observed: "plan_limit_reached" };
      }
      return refuse(env, route, format, 429, "plan_limit_reached", planLimitMessage(refusal), { orgId, keyId, response: planLimitResponse(refusal) });
    }
  }
  return { ok: true, orgId, keyId, verdict, observed: null };
}
