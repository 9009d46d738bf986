import type { z } from "zod";
import { Router, type IRequest } from "itty-router";
import { answer, refuse, type Refusal } from "../../shared/result.ts";
import { parseJsonBody } from "../../shared/json-body.ts";
import { log, logError, logWarn } from "../../shared/log.ts";
import { decodePathSegment, ORG_ID_RULE, orgIdFromPath } from "../../shared/storage-keys.ts";
import { bearerToken } from "../../shared/bearer.ts";
import { timingSafeEqualStrings } from "./constant-time.ts";
import { DeadLetterQuery, duplicateOrgs, EnforcementBody, ListQuery, MAX_BATCH_BODY_BYTES, MintBatchBody, OverrideBody } from "./requests.ts";
import { mintKeys } from "./mint-batch.ts";
import { adminToken, ConfigError, ingestKeyPepper } from "../config.ts";
import { MAX_ACTIVE_KEYS } from "../org/store.ts";
import { orgIndex } from "../index/object.ts";
import { orgBilling } from "../org/object.ts";
import { reconciler } from "../reconcile/sweeper.ts";
import { indexEntryView } from "../org/view.ts";

type AdminRequest = IRequest & { orgId: string };

/** Bearer ADMIN_TOKEN, compared in constant time. Returns a refusal, or nothing when allowed. Every route answers a Result; the Worker's edge makes it a Response. */
async function authorize(request: IRequest, env: BillingEnv): Promise<Refusal | undefined> {
  let expected: string;
  try {
    expected = adminToken(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logError({ event: "admin_rejected", code: "not_configured", variable: error.variable });
    return refuse(503, "not_configured", error.message);
  }
  const presented = bearerToken(request.headers);
  if (presented === null || !(await timingSafeEqualStrings(presented, expected))) {
    logWarn({ event: "admin_rejected", code: "unauthorized", path: new URL(request.url).pathname });
    return refuse(401, "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>", {}, { "www-authenticate": 'Bearer realm="tollgate-admin"' });
  }
  return undefined;
}

/** Key ids are minted as `ik_` + 16 hex digits; anything far from that shape cannot name a key. */
const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Sweep ids are minted as `sweep_` + a compact time + 8 hex digits. */
const SWEEP_ID_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

function withOrg(request: IRequest): Refusal | undefined {
  const orgId = orgIdFromPath(request.params.orgId);
  if (orgId === null) return refuse(400, "invalid_org_id", `org id must be ${ORG_ID_RULE}, percent-encoded in the path`);
  (request as AdminRequest).orgId = orgId;
  return undefined;
}

/** A request's query string against its schema; the first problem is a 400 naming the parameter (and `hint`). */
function parseQuery<S extends z.ZodType>(request: IRequest, schema: S, hint = ""): { ok: true; value: z.infer<S> } | Refusal {
  const parsed = schema.safeParse(Object.fromEntries(new URL(request.url).searchParams));
  if (parsed.success) return { ok: true, value: parsed.data };
  const issue = parsed.error.issues[0];
  return refuse(400, "invalid_request", `${issue?.path.join(".") || "query"}: ${issue?.message ?? "invalid"}${hint}`);
}

export const adminRouter = Router<AdminRequest, [BillingEnv, ExecutionContext]>({ base: "/admin" })
  .all("*", authorize)
  .get("/orgs", async (request, env) => {
    const query = parseQuery(request, ListQuery, " (state must be overdue, suspended or ok)");
    if (!query.ok) return query;
    const page = await orgIndex(env).list({ state: query.value.state, cursor: query.value.cursor ?? null, limit: query.value.limit });
    return answer({ orgs: page.orgs.map(indexEntryView), next_cursor: page.next_cursor });
  })
  // The reconciliation sweep: start one now (or get the one already running), or read the current or last one.
  .post("/reconcile", async (_request, env) => {
    const { started, sweep } = await reconciler(env).start("admin");
    log({ event: "admin_reconcile", started, sweep_id: sweep.id });
    return answer({ ...sweep, started }, started ? 202 : 200);
  })
  // A held sweep (it would restore too many orgs at once) goes ahead only when an operator confirms it.
  .post("/reconcile/:sweepId/confirm", async ({ params }, env) => {
    const sweepId = decodePathSegment(params.sweepId);
    if (sweepId === null || !SWEEP_ID_PATTERN.test(sweepId)) return refuse(400, "invalid_sweep_id", "a sweep id is what POST or GET /admin/reconcile answered as id");
    const result = await reconciler(env).confirm(sweepId);
    if (!result.ok) {
      return result.error === "sweep_not_found"
        ? refuse(404, "sweep_not_found", `no sweep ${sweepId} is kept`)
        : refuse(409, "sweep_not_held", `sweep ${sweepId} is ${result.status}, not held: only the current held sweep can be confirmed (a newer sweep discards a held one)`);
    }
    log({ event: "admin_reconcile_confirmed", sweep_id: sweepId });
    return answer(result.sweep, 202);
  })
  .get("/reconcile", async (_request, env) => {
    const sweep = await reconciler(env).status();
    return sweep === null ? refuse(404, "no_sweep", "no reconciliation sweep has run yet: POST /admin/reconcile starts one") : answer(sweep);
  })
  // `POST /admin/ingest-keys:batch`. itty-router reads `:name` as a parameter even mid-segment, so this
  // pattern matches `/ingest-keys` followed by anything up to the next slash, `:batch` included; the
  // handler takes only that suffix (colon plain or percent-encoded) and leaves the rest to the 404.
  .post("/ingest-keys:suffix", async (request, env) => {
    if (decodePathSegment(request.params.suffix) !== ":batch") return undefined;
    const body = await parseJsonBody(request, MintBatchBody, MAX_BATCH_BODY_BYTES);
    if (!body.ok) return body;
    const repeated = duplicateOrgs(body.value.orgs);
    if (repeated.length > 0) return refuse(400, "duplicate_org", `each org may be named once per batch (one key each); named more than once: ${repeated.slice(0, 10).join(", ")}${repeated.length > 10 ? ` and ${repeated.length - 10} more` : ""}`);
    const result = await mintKeys(env, body.value.orgs, ingestKeyPepper(env));
    // Multi-status when any org failed: what was minted is in `keys` all the same (no transaction spans objects).
    return answer(result, result.failed.length === 0 ? 201 : 207);
  })
  .all("/orgs/:orgId/*", withOrg)
  .all("/orgs/:orgId", withOrg)
  .get("/orgs/:orgId", async ({ orgId }, env) => answer(await orgBilling(env, orgId).view()))
  .get("/orgs/:orgId/dead-letters", async (request, env) => {
    const query = parseQuery(request, DeadLetterQuery);
    if (!query.ok) return query;
    return answer(await orgBilling(env, request.orgId).deadLetters({ cursor: query.value.cursor ?? null, limit: query.value.limit }));
  })
  .post("/orgs/:orgId/resync", async ({ orgId }, env) => {
    log({ event: "admin_resync", org_id: orgId });
    return answer(await orgBilling(env, orgId).resync());
  })
  .post("/orgs/:orgId/override", async (request, env) => {
    const body = await parseJsonBody(request, OverrideBody);
    if (!body.ok) return body;
    const until = body.value.until === undefined ? null : Date.parse(body.value.until);
    if (until !== null && until <= Date.now()) return refuse(400, "invalid_request", "until must be in the future");
    if (body.value.action === "clear" && until !== null) return refuse(400, "invalid_request", "clear takes no until");
    const view = await orgBilling(env, request.orgId).override({ action: body.value.action, until, note: body.value.note });
    return answer(view);
  })
  // The org's own enforcement mode (a canary against the Workers' ENFORCEMENT): no Autumn read, only republished.
  .post("/orgs/:orgId/enforcement", async (request, env) => {
    const body = await parseJsonBody(request, EnforcementBody);
    if (!body.ok) return body;
    return answer(await orgBilling(env, request.orgId).setEnforcement(body.value));
  })
  .post("/orgs/:orgId/ingest-keys", async ({ orgId }, env) => {
    const pepper = ingestKeyPepper(env);
    const minted = await orgBilling(env, orgId).createIngestKey(pepper);
    if (!minted.ok) return refuse(409, "too_many_keys", `org ${orgId} already has ${MAX_ACTIVE_KEYS} active ingest keys: revoke one first`);
    const { ok: _ok, ...key } = minted;
    return answer(key, 201);
  })
  .get("/orgs/:orgId/ingest-keys", async ({ orgId }, env) => answer({ keys: await orgBilling(env, orgId).listIngestKeys() }))
  .delete("/orgs/:orgId/ingest-keys/:keyId", async ({ orgId, params }, env) => {
    const keyId = decodePathSegment(params.keyId);
    if (keyId === null || !KEY_ID_PATTERN.test(keyId)) return refuse(400, "invalid_key_id", "a key id is what POST .../ingest-keys returned (ik_ and 16 hex digits)");
    if (!(await orgBilling(env, orgId).revokeIngestKey(keyId))) return refuse(404, "key_not_found", `org ${orgId} has no active ingest key ${keyId}`);
    return answer({ key_id: keyId, revoked: true });
  })
  .all("*", () => refuse(404, "not_found", "no such admin route"));
