import { isWellFormedIngestKey, presentedIngestKey } from "../../shared/ingest-key.ts";
import type { BodyFormat } from "../../shared/http-error.ts";
import type { IngestSettings } from "../config.ts";
import { refuse, type Refused } from "./account.ts";
import { gate } from "./isolate.ts";
import { SUSPENDED_MESSAGE } from "./refusals.ts";
import { gateSources } from "./sources.ts";

export type Admitted = { ok: true; orgId: string; keyId: string };

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
    admission = { org_id: check.org_id, key_id: check.key_id, verdict: await gate.verdict(check.org_id, sources, now, check.verdict) };
  }
  const { org_id: orgId, key_id: keyId, verdict } = admission;
  if (verdict.suspended) {
    const suspendedAt = verdict.suspended_at === null ? "" : new Date(verdict.suspended_at).toISOString();
    return refuse(env, route, format, 402, "billing_suspended", SUSPENDED_MESSAGE, { orgId, keyId, extra: { org_id: orgId, suspended_at: suspendedAt } });
  }
  return { ok: true, orgId, keyId };
}
