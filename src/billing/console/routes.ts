import { Router, type IRequest } from "itty-router";
import { log, logWarn } from "../../shared/log.ts";
import { isValidOrgId, ORG_ID_RULE, orgIdFromPath } from "../../shared/storage-keys.ts";
import { adminToken } from "../config.ts";
import { timingSafeEqualStrings } from "../admin/constant-time.ts";
import { IndexCursor } from "../index/entry.ts";
import { orgIndex } from "../index/object.ts";
import { orgBilling } from "../org/object.ts";
import { reconciler } from "../reconcile/sweeper.ts";
import { indexEntryView } from "../org/view.ts";
import { REASON_LABELS } from "../org/record.ts";
import { html, page } from "./html.ts";
import { readEnforcementForm, readOverrideForm } from "./override-form.ts";
import { listPage, loginPage, orgPage, overviewPage, type Flash } from "./pages.ts";
import { CLEARED_SESSION_COOKIE, fromAnotherSite, hasValidSession, sameOrigin, sessionCookie } from "./session.ts";

/**
 * The operator console at /admin: server-rendered pages behind a login form that sets a
 * Secure, HttpOnly, SameSite=Strict session cookie. Writes are plain form posts, checked
 * to come from our own origin, answered with a redirect back (post/redirect/get).
 */
type ConsoleRequest = IRequest & { orgId: string };

const DONE_MESSAGES: Record<string, string> = {
  resync: "Read Autumn again and applied the policy.",
  override: "Override applied and recorded in the timeline.",
  enforcement: "Enforcement set and recorded in the timeline; the ingest Worker follows within 1 s for a suspended org, within about 1.5 min otherwise.",
  sweep_started: "Started a reconciliation sweep: reload to follow it.",
  sweep_running: "A sweep is already running: reload to follow it.",
  sweep_confirmed: "Confirmed the held sweep: it is handing its orgs over; reload to follow it.",
  sweep_not_held: "That sweep is no longer held (a newer sweep discarded it, or it already ran): nothing was done.",
};

function doneMessage(request: IRequest): string | undefined {
  return DONE_MESSAGES[new URL(request.url).searchParams.get("done") ?? ""];
}

function redirect(location: string, headers: Record<string, string> = {}): Response {
  return new Response(null, { status: 303, headers: { location, "cache-control": "no-store", ...headers } });
}

function notFound(message: string): Response {
  return page(404, html`<html lang="en"><head><meta charset="utf-8" /><title>Not found · Tollgate</title><link rel="stylesheet" href="/admin/assets/console.css" /></head>
    <body><main><section class="card narrow"><h1>Not found</h1><p>${message}</p><p><a href="/admin">Back to the overview</a></p></section></main></body></html>`);
}

async function requireSession(request: IRequest, env: BillingEnv): Promise<Response | undefined> {
  const path = new URL(request.url).pathname;
  if (path === "/admin/login") {
    if (request.method !== "POST" || !fromAnotherSite(request)) return undefined;
    logWarn({ event: "admin_rejected", code: "csrf_rejected", path });
    return page(403, html`<p>Refused: this sign-in was not sent from the console itself.</p>`);
  }
  if (!(await hasValidSession(request.headers, adminToken(env), Date.now()))) return redirect("/admin/login");
  if (request.method !== "GET" && !sameOrigin(request)) {
    logWarn({ event: "admin_rejected", code: "csrf_rejected", path });
    return page(403, html`<p>Refused: this form was not sent from the console itself.</p>`);
  }
  return undefined;
}

function withOrg(request: IRequest): Response | undefined {
  const orgId = orgIdFromPath(request.params.orgId);
  if (orgId === null) return notFound(`That is not an org id (${ORG_ID_RULE}).`);
  (request as ConsoleRequest).orgId = orgId;
  return undefined;
}

async function renderOrg(env: BillingEnv, orgId: string, flash: Flash, status = 200): Promise<Response> {
  const stub = orgBilling(env, orgId);
  const [view, keys] = await Promise.all([stub.view(), stub.listIngestKeys()]);
  return page(status, orgPage(view, keys, Date.now(), flash));
}

export const consoleRouter = Router<ConsoleRequest, [BillingEnv, ExecutionContext]>({ base: "/admin" })
  .all("*", requireSession)
  .get("/login", () => page(200, loginPage(null)))
  .post("/login", async (request, env) => {
    const form = await request.formData().catch(() => null);
    const token = form?.get("token");
    if (typeof token !== "string" || !(await timingSafeEqualStrings(token, adminToken(env)))) {
      logWarn({ event: "admin_rejected", code: "unauthorized", path: "/admin/login" });
      return page(401, loginPage("That is not the admin token."));
    }
    return redirect("/admin", { "set-cookie": await sessionCookie(adminToken(env), Date.now()) });
  })
  .post("/logout", () => redirect("/admin/login", { "set-cookie": CLEARED_SESSION_COOKIE }))
  .get("", async (request, env) => {
    const now = Date.now();
    // The sweep's status is a second object's answer: when it fails, the overview still shows the orgs.
    const [overview, sweep] = await Promise.all([
      orgIndex(env).overview(now, 24 * 3_600_000),
      reconciler(env)
        .status()
        .catch((error: unknown) => {
          logWarn({ event: "console_sweep_status_failed", error: String(error) });
          return "unavailable" as const;
        }),
    ]);
    const view = {
      counts: overview.counts,
      due_soon: overview.due_soon.map(indexEntryView),
      recently_suspended: overview.recently_suspended.map(indexEntryView),
      recently_restored: overview.recently_restored.map(indexEntryView),
      would_refuse: overview.would_refuse.map((row) => ({ ...row, last_hour: new Date(row.last_hour).toISOString() })),
    };
    return page(200, overviewPage(view, REASON_LABELS, sweep, now, { done: doneMessage(request) }));
  })
  // Not /admin/reconcile: the Worker routes that path to the admin API (Bearer token).
  .post("/sweep", async (_request, env) => {
    const { started, sweep } = await reconciler(env).start("admin");
    log({ event: "admin_reconcile", started, sweep_id: sweep.id, via: "console" });
    return redirect(`/admin?done=${started ? "sweep_started" : "sweep_running"}#sweep`);
  })
  // A held sweep (it would restore too many orgs at once) acts only when an operator confirms it.
  .post("/sweep/:sweepId/confirm", async (request, env) => {
    const sweepId = request.params.sweepId ?? "";
    if (!/^[A-Za-z0-9_-]{1,80}$/.test(sweepId)) return notFound(`"${sweepId}" is not a sweep id.`);
    const result = await reconciler(env).confirm(sweepId);
    log({ event: "admin_reconcile_confirmed", sweep_id: sweepId, ok: result.ok, via: "console" });
    return redirect(`/admin?done=${result.ok ? "sweep_confirmed" : "sweep_not_held"}#sweep`);
  })
  .get("/list/:state", async (request, env) => {
    const state = request.params.state;
    if (state !== "ok" && state !== "overdue" && state !== "suspended") return notFound("Lists exist for ok, overdue and suspended.");
    // The admin API's cursor rule (IndexCursor); anything else shows the first page.
    const cursor = IndexCursor.safeParse(new URL(request.url).searchParams.get("cursor"));
    const list = await orgIndex(env).list({ state, cursor: cursor.success ? cursor.data : null, limit: 50 });
    return page(200, listPage(state, list.orgs.map(indexEntryView), list.next_cursor, Date.now(), cursor.success));
  })
  .get("/org", (request) => {
    const id = new URL(request.url).searchParams.get("id")?.trim() ?? "";
    return isValidOrgId(id) ? redirect(`/admin/org/${encodeURIComponent(id)}`) : notFound(`"${id}" is not an org id (${ORG_ID_RULE}).`);
  })
  .all("/org/:orgId", withOrg)
  .all("/org/:orgId/*", withOrg)
  .get("/org/:orgId", (request, env) => renderOrg(env, request.orgId, { done: doneMessage(request) }))
  .post("/org/:orgId/resync", async (request, env) => {
    await orgBilling(env, request.orgId).resync();
    return redirect(`/admin/org/${encodeURIComponent(request.orgId)}?done=resync`);
  })
  .post("/org/:orgId/override", async (request, env) => {
    const form = await request.formData().catch(() => null);
    const read = readOverrideForm(form, Date.now());
    if (!read.ok) {
      logWarn({ event: "admin_rejected", code: read.error, path: `/admin/org/${request.orgId}/override`, via: "console" });
      return renderOrg(env, request.orgId, { error: { code: read.error, message: read.message } }, 400);
    }
    await orgBilling(env, request.orgId).override(read.command);
    return redirect(`/admin/org/${encodeURIComponent(request.orgId)}?done=override`);
  })
  .post("/org/:orgId/enforcement", async (request, env) => {
    const form = await request.formData().catch(() => null);
    const read = readEnforcementForm(form);
    if (!read.ok) {
      logWarn({ event: "admin_rejected", code: read.error, path: `/admin/org/${request.orgId}/enforcement`, via: "console" });
      return renderOrg(env, request.orgId, { error: { code: read.error, message: read.message } }, 400);
    }
    await orgBilling(env, request.orgId).setEnforcement(read.command);
    return redirect(`/admin/org/${encodeURIComponent(request.orgId)}?done=enforcement`);
  })
  .all("*", () => notFound("No such page."));
