import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { BILLING, deleteAllAlarms, deliver, orgState, uniqueOrg } from "../support/billing.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";
import { orgPage, sweepCard } from "../../src/billing/console/pages.ts";
import { DEFAULT_POLICY, NO_USAGE } from "../../src/billing/config.ts";
import { usageView } from "../../src/billing/usage/usage-view.ts";
import { newOrgRecord } from "../../src/billing/org/record.ts";
import { orgView } from "../../src/billing/org/view.ts";
import { newSweep, sweepView } from "../../src/billing/reconcile/sweep-record.ts";
import { GRACE, suspendedOrg } from "../support/console.ts";

afterEach(deleteAllAlarms);


function get(path: string, cookie?: string): Promise<Response> {
  return exports.default.fetch(`${BILLING}${path}`, { redirect: "manual", headers: cookie ? { cookie } : {} });
}

function postForm(path: string, fields: Record<string, string>, options: { cookie?: string; origin?: string | null } = {}): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
  if (options.cookie) headers.cookie = options.cookie;
  if (options.origin !== null) headers.origin = options.origin ?? BILLING;
  return exports.default.fetch(`${BILLING}${path}`, { method: "POST", redirect: "manual", headers, body: new URLSearchParams(fields).toString() });
}

async function login(): Promise<string> {
  const response = await postForm("/admin/login", { token: TEST_ADMIN_TOKEN });
  expect(response.status).toBe(303);
  return response.headers.get("set-cookie")!.split(";")[0]!;
}

let suspended: string;
beforeAll(async () => {
  suspended = await suspendedOrg("console");
});

describe("signing in", () => {
  it("sends a visitor without a session to the login form", async () => {
    const response = await get("/admin");
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/admin/login");
    const form = await get("/admin/login");
    expect(form.status).toBe(200);
    expect(form.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await form.text()).toContain('<form method="post" action="/admin/login">');
  });

  it("refuses a wrong token", async () => {
    const response = await postForm("/admin/login", { token: "guess" });
    expect(response.status).toBe(401);
    expect(response.headers.get("set-cookie")).toBeNull();
    expect(await response.text()).toContain("That is not the admin token.");
  });

  it("refuses a sign-in posted from another site, and sets no cookie (a found defect: it signed in)", async () => {
    const response = await postForm("/admin/login", { token: TEST_ADMIN_TOKEN }, { origin: "https://evil.example" });
    expect(response.status).toBe(403);
    expect(response.headers.get("set-cookie")).toBeNull();
    // A client that sends no Origin (curl, a script) is not a browser on another site: it still signs in.
    expect((await postForm("/admin/login", { token: TEST_ADMIN_TOKEN }, { origin: null })).status).toBe(303);
  });

  it("sets a Secure, HttpOnly, SameSite=Strict session cookie that does not contain the token", async () => {
    const response = await postForm("/admin/login", { token: TEST_ADMIN_TOKEN });
    const cookie = response.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^tollgate_session=\d{13}\.[A-Za-z0-9_-]{43}; Path=\/admin; Max-Age=43200; Secure; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(TEST_ADMIN_TOKEN);
    expect(response.headers.get("location")).toBe("/admin");
  });

  it.each([
    ["a forged signature", `tollgate_session=${Date.now() + 3_600_000}.${"A".repeat(43)}`],
    ["an expired session", `tollgate_session=${Date.now() - 1}.${"A".repeat(43)}`],
    ["garbage", "tollgate_session=yes"],
  ])("does not accept %s", async (_name, cookie) => {
    expect((await get("/admin", cookie)).status).toBe(303);
  });

  it("signs out by clearing the cookie", async () => {
    const response = await postForm("/admin/logout", {}, { cookie: await login() });
    expect(response.headers.get("set-cookie")).toContain("Max-Age=0");
  });
});

describe("reading", () => {
  it("the overview lists the suspended org with why, and links to it", async () => {
    const page = await (await get("/admin", await login())).text();
    expect(page).toContain(`href="/admin/org/${suspended}"`);
    expect(page).toContain("past due beyond the grace period and never paid");
    expect(page).toMatch(/<strong>\d+<\/strong> suspended/);
  });

  it("the org page explains the state with Autumn's evidence and the timeline", async () => {
    const page = await (await get(`/admin/org/${suspended}`, await login())).text();
    expect(page).toContain('<span class="badge suspended">Suspended</span>');
    expect(page).toContain("grace_elapsed_never_paid");
    expect(page).toContain("never (no paid invoice with money)");
    expect(page).toContain("https://invoice.stripe.com/i/acct_standin/");
    expect(page).toMatch(/<ol class="timeline">[\s\S]*Overdue<\/span> → <span class="badge suspended">/i);
  });

  it("says so when Tollgate has no record of the org, rather than showing a mistyped id as a healthy one (a found defect)", async () => {
    const cookie = await login();
    const unknown = await (await get(`/admin/org/${uniqueOrg("never-seen")}`, cookie)).text();
    expect(unknown).toContain("Tollgate has no record of this org");
    const known = await (await get(`/admin/org/${suspended}`, cookie)).text();
    expect(known).not.toContain("Tollgate has no record of this org");
  });

  it("finds an org by id from the search box", async () => {
    const response = await get(`/admin/org?id=${suspended}`, await login());
    expect(response.headers.get("location")).toBe(`/admin/org/${suspended}`);
  });

  it("the lists page through the index", async () => {
    expect(await (await get("/admin/list/suspended", await login())).text()).toContain(suspended);
  });
});

describe("acting", () => {
  it("refuses a form posted from another origin", async () => {
    const cookie = await login();
    const response = await postForm(`/admin/org/${suspended}/resync`, {}, { cookie, origin: "https://evil.example" });
    expect(response.status).toBe(403);
    const noOrigin = await postForm(`/admin/org/${suspended}/resync`, {}, { cookie, origin: null });
    expect(noOrigin.status).toBe(403);
  });

  it("requires a note for an override, and changes nothing without one", async () => {
    const cookie = await login();
    const before = await orgState(suspended);
    const response = await postForm(`/admin/org/${suspended}/override`, { action: "exempt", note: "  " }, { cookie });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain("a note is required");
    expect((await orgState(suspended)).version).toBe(before.version);
  });

  it("exempts with a note: restored at once, the note escaped in the timeline", async () => {
    const org = uniqueOrg("console_exempt");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, Date.now() - GRACE - 60_000)).webhook);
    const cookie = await login();
    const until = new Date(Date.now() + 86_400_000).toISOString().slice(0, 16);
    const response = await postForm(`/admin/org/${org}/override`, { action: "exempt", until, note: "ticket <b>42</b>: wire pending" }, { cookie });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe(`/admin/org/${org}?done=override`);
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "exempt", override: { until: `${until}:00.000Z` } });
    const page = await (await get(`/admin/org/${org}?done=override`, cookie)).text();
    expect(page).toContain("Override applied and recorded in the timeline.");
    expect(page).toContain("ticket &lt;b&gt;42&lt;/b&gt;: wire pending");
    expect(page).not.toContain("<b>42</b>");
  });
});

describe("reconciliation", () => {
  const sweeper = () => env.RECONCILER.getByName("sweeper");

  /** Runs the sweeper's alarm (one page each) until the sweep is over: alarms are not reset between tests. */
  async function runSweepToEnd() {
    for (let i = 0; i < 1_000; i++) {
      const sweep = await sweeper().status();
      if (sweep === null || sweep.status !== "running") return sweep;
      await runDurableObjectAlarm(sweeper());
    }
    throw new Error("the sweep did not end within 1,000 alarms");
  }

  /** The <dd> that follows a <dt> on a page. */
  function fact(page: string, term: string): string {
    return new RegExp(`<dt>${term}</dt>\\s*<dd>([\\s\\S]*?)</dd>`).exec(page)?.[1] ?? "";
  }

  // The sweep walks every customer the stand-in holds (all test files' orgs), and hands this file the past-due ones
  // it does not know: seconds on a loaded machine.
  it("the overview shows the last sweep, and the org page the org it found with both deadline terms", { timeout: 30_000 }, async () => {
    // Past due in Autumn with the webhook lost; its invoice is old enough that the minimum notice decides the deadline.
    const org = uniqueOrg("console_lost");
    await autumn.createCustomer(org, { webhook: false });
    await autumn.pastDue(org, { at: Date.now() - GRACE + 3_600_000, webhook: false });
    expect((await sweeper().start("admin")).started).toBe(true);
    const sweep = await runSweepToEnd();
    expect(sweep).toMatchObject({ status: "finished", orgs_handed_over: { unknown_past_due: expect.any(Number) } });
    expect(sweep!.orgs_handed_over.unknown_past_due).toBeGreaterThanOrEqual(1);

    const cookie = await login();
    const overview = await (await get("/admin", cookie)).text();
    expect(overview).toContain("<h2>Last reconciliation sweep</h2>");
    expect(fact(overview, "Status")).toContain('<span class="sweep-status finished">Finished</span>');
    expect(fact(overview, "Finished")).toContain(`datetime="${sweep!.finished_at}"`);
    expect(fact(overview, "Customers seen")).toContain(`${sweep!.customers_seen} <span`);
    expect(fact(overview, "Orgs handed over")).toContain(`<strong>${sweep!.orgs_handed_over.unknown_past_due}</strong> past due in Autumn, ok or unknown here`);
    expect(overview).toContain('<form method="post" action="/admin/sweep" class="inline">');

    const state = await orgState(org);
    expect(state).toMatchObject({ state: "overdue", history: [{ source: "reconcile", note: "unknown_past_due" }] });
    const page = await (await get(`/admin/org/${org}`, cookie)).text();
    expect(fact(page, "First seen overdue")).toContain(`datetime="${state.noticed_at}"`);
    expect(fact(page, "Grace period ends")).toContain(`datetime="${state.deadline_terms!.grace_ends_at}"`);
    expect(fact(page, "Grace period ends")).not.toContain("the deadline");
    expect(fact(page, "Minimum notice ends")).toContain(`datetime="${state.deadline_terms!.notice_ends_at}"`);
    expect(fact(page, "Minimum notice ends")).toContain('<span class="decides">the deadline</span>');
    expect(state.suspend_at).toBe(state.deadline_terms!.notice_ends_at);
    expect(page).toMatch(/<span class="source">reconcile<\/span>[\s\S]*?<span class="muted">sweep: past due in Autumn, ok or unknown here<\/span>/);
  });

  it("“Run a sweep now” starts one, or points at the one already running", async () => {
    const cookie = await login();
    const before = await sweeper().status();
    const response = await postForm("/admin/sweep", {}, { cookie });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/admin?done=sweep_started#sweep");
    const started = await sweeper().status();
    expect(started).toMatchObject({ status: "running", trigger: "admin" });
    expect(started!.id).not.toBe(before?.id);

    const page = await (await get("/admin?done=sweep_started", cookie)).text();
    expect(page).toContain("Started a reconciliation sweep");
    expect(fact(page, "Status")).toContain('<span class="sweep-status running">Running</span>');

    const again = await postForm("/admin/sweep", {}, { cookie });
    expect(again.headers.get("location")).toBe("/admin?done=sweep_running#sweep");
    expect((await sweeper().status())!.id).toBe(started!.id);
    expect((await runSweepToEnd())!.status).toBe("finished");
  });

  it("refuses “Run a sweep now” from another origin, and starts nothing", async () => {
    const cookie = await login();
    const before = await sweeper().status();
    expect((await postForm("/admin/sweep", {}, { cookie, origin: "https://evil.example" })).status).toBe(403);
    expect((await postForm("/admin/sweep", {}, { cookie, origin: null })).status).toBe(403);
    expect((await postForm("/admin/sweep", {})).status).toBe(303); // no session: to the login form
    expect(await sweeper().status()).toEqual(before);
  });

  it("a held sweep shows what it would restore and a Confirm button; confirming one that is not held does nothing", async () => {
    const held = sweepView({ ...newSweep("sweep_held_1", "cron", Date.now()), status: "held", phase: "held", would_restore: { no_longer_past_due: 9, missing_from_autumn: 0, limit_lifted: 0 }, would_restore_sample: [{ org_id: "org_paid_a", kind: "no_longer_past_due" }], restricted_held: 20, restore_allowance: 5 });
    const card = sweepCard(held, Date.now()).value;
    expect(card).toContain("Held for confirmation");
    expect(card).toContain("Would move 9 orgs toward ok");
    expect(card).toContain('<form method="post" action="/admin/sweep/sweep_held_1/confirm" class="inline"><button type="submit">Confirm this sweep</button></form>');
    const cookie = await login();
    const response = await postForm("/admin/sweep/sweep_not_kept/confirm", {}, { cookie });
    expect(response.headers.get("location")).toBe("/admin?done=sweep_not_held#sweep");
  });

  it("says so before the first sweep, and when the sweeper cannot be asked", () => {
    expect(sweepCard(null, Date.now()).value).toContain("No sweep has run yet");
    expect(sweepCard("unavailable", Date.now()).value).toContain("could not be asked");
  });

  it("the org page lists undelivered events, escaped", () => {
    const now = Date.now();
    const record = { ...newOrgRecord("org_letters", now), state: "overdue" as const, reason: "in_grace_period" as const, anchor: now, noticed_at: now, suspend_at: now + GRACE };
    const view = { ...orgView(record, [], [], now, DEFAULT_POLICY), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, now) };
    const event = { id: "evt_1", type: "org.overdue" as const, org_id: "org_letters", enforcement: "enforce" as const, state: "overdue" as const, previous_state: "ok" as const, reason: "in_grace_period" as const, deadline: null, suspended_at: null, pay_url: null, at: new Date(now).toISOString() };
    const page = orgPage({ ...view, dead_letters: [{ event, attempts: 40, error: "receiver answered 500 <html>", at: new Date(now).toISOString() }] }, [], now, {}).value;
    expect(page).toContain("<h2>Undelivered events</h2>");
    expect(page).toContain("<td><code>org.overdue</code></td><td><code>evt_1</code></td>");
    expect(page).toContain("<td>40</td><td>receiver answered 500 &lt;html&gt;</td>");
    expect(orgPage(view, [], now, {}).value).not.toContain("Undelivered events");
  });

  it("the org page shows usage against the balances, the limits in force and what is still owed to Autumn", () => {
    const now = Date.now();
    const resetAt = now + 86_400_000;
    const record = {
      ...newOrgRecord("org_usage", now),
      limits: [{ feature_id: "spans", signals: ["traces" as const], reset_at: resetAt, since: now, usage: 100, granted: 100 }],
      evidence: {
        customer_found: true, past_due_subscriptions: [], open_invoices: [], paid_invoice: null, pay_url: null, paid_checked: "not_needed" as const, recent_invoice_count: 0,
        balances: {
          spans: { feature_id: "spans", granted: 100, remaining: 0, usage: 100, unlimited: false, overage_allowed: false, next_reset_at: resetAt },
          ingest_bytes: { feature_id: "ingest_bytes", granted: 0, remaining: 0, usage: 3_145_728, unlimited: true, overage_allowed: false, next_reset_at: null },
        },
      },
    };
    const row = (feature_id: string, over: object) => ({ feature_id, epoch: "e", received: 0, pending: 0, pending_since: null, report_seq: 0, report_value: null, report_attempts: 0, report_next_at: null, report_first_at: null, reported: 0, reports: 0, duplicates: 0, last_reported_at: null, last_error: null, ...over });
    const rows = [row("spans", { received: 130, reported: 100, pending: 30 }), row("ingest_bytes", { received: 3_145_728, report_value: 1_048_576, report_attempts: 2, report_next_at: now + 30_000, last_error: "/v1/balances.track answered 503" })];
    const features = { traces: "spans", bytes: "ingest_bytes" };
    const view = { ...orgView(record, [], [], now, DEFAULT_POLICY), enforcement_mode: "enforce" as const, usage: usageView(record, rows, { features, reportIntervalMs: 30_000, enforce: true }, now) };
    const page = orgPage(view, [], now, {}).value;
    expect(page).toContain("<h2>Usage and plan limits</h2>");
    expect(page).toContain("Limits are enforced");
    expect(page).toContain("<td><code>spans</code></td><td>traces</td><td>100 / 100</td>");
    expect(page).toContain('<span class="error">used up</span>');
    expect(page).toContain("<td>130</td><td>100</td><td>30</td>");
    expect(page).toContain("<td><code>ingest_bytes</code></td><td>bytes</td><td>3.0 MiB / unlimited</td>");
    expect(page).toContain("(report of 1.0 MiB, attempt 3");
    expect(page).toContain("/v1/balances.track answered 503");
    const off = { ...view, usage: usageView(newOrgRecord("org_off", now), [], NO_USAGE, now) };
    expect(orgPage(off, [], now, {}).value).not.toContain("Usage and plan limits");
  });
});
