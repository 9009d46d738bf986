import { exports } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { BILLING, deleteAllAlarms, deliver, orgState, uniqueOrg } from "../support/billing.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";
import { orgPage } from "../../src/billing/console/pages.ts";
import { refreshTimes, refreshUtcNow } from "../../src/billing/console/client/times.ts";
import { parseUtcMinute } from "../../src/billing/console/override-form.ts";
import { DEFAULT_POLICY, NO_USAGE } from "../../src/billing/config.ts";
import { usageView } from "../../src/billing/usage/usage-view.ts";
import { newOrgRecord, type OrgRecord } from "../../src/billing/org/record.ts";
import { orgView } from "../../src/billing/org/view.ts";
import { GRACE, suspendedOrg } from "../support/console.ts";

/**
 * Issue 22's console defects, each checked as a person (or a browser) meets it: a signed-in
 * browser on an API path, relative times that do not tick, "ok" beside a suspended org, a
 * local-format date picker under "UTC", a missing favicon, and a deadline shown while exempt.
 */
afterEach(deleteAllAlarms);

const HTML_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

function get(path: string, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${BILLING}${path}`, { redirect: "manual", headers });
}

function postForm(path: string, fields: Record<string, string>, cookie: string): Promise<Response> {
  return exports.default.fetch(`${BILLING}${path}`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie, origin: BILLING },
    body: new URLSearchParams(fields).toString(),
  });
}

async function login(): Promise<string> {
  const response = await exports.default.fetch(`${BILLING}/admin/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: BILLING },
    body: new URLSearchParams({ token: TEST_ADMIN_TOKEN }).toString(),
  });
  expect(response.status).toBe(303);
  return response.headers.get("set-cookie")!.split(";")[0]!;
}

/** The <dd> that follows a <dt> on a page. */
function fact(page: string, term: string): string {
  return new RegExp(`<dt>${term}</dt>\\s*<dd[^>]*>([\\s\\S]*?)</dd>`).exec(page)?.[1] ?? "";
}

let suspended: string;
beforeAll(async () => {
  suspended = await suspendedOrg("console_p");
});

describe("a signed-in browser on an admin API path", () => {
  it("is sent to the org's console page, the overview or the list (303), not given a JSON 401", async () => {
    const cookie = await login();
    const browser = { cookie, accept: HTML_ACCEPT };
    const org = await get(`/admin/orgs/${suspended}`, browser);
    expect(org.status).toBe(303);
    expect(org.headers.get("location")).toBe(`/admin/org/${suspended}`);
    expect((await get(`/admin/orgs/${suspended}/ingest-keys`, browser)).headers.get("location")).toBe(`/admin/org/${suspended}`);
    expect((await get("/admin/orgs", browser)).headers.get("location")).toBe("/admin");
    expect((await get("/admin/orgs?state=suspended", browser)).headers.get("location")).toBe("/admin/list/suspended");
    expect((await get("/admin/reconcile", browser)).headers.get("location")).toBe("/admin#sweep");
    // The page it lands on is the console's.
    expect(await (await get(org.headers.get("location")!, { cookie })).text()).toContain('<span class="badge suspended">Suspended</span>');
  });

  it("API clients keep their JSON answers exactly", async () => {
    const cookie = await login();
    // No session: the JSON 401, even from a browser.
    const anonymous = await get(`/admin/orgs/${suspended}`, { accept: HTML_ACCEPT });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("content-type")).toContain("application/json");
    expect(await anonymous.json()).toMatchObject({ error: "unauthorized" });
    // A session but a client that does not ask for HTML (curl, fetch): the JSON 401.
    const script = await get(`/admin/orgs/${suspended}`, { cookie, accept: "application/json" });
    expect(script.status).toBe(401);
    expect(await script.json()).toMatchObject({ error: "unauthorized" });
    expect((await get(`/admin/orgs/${suspended}`, { cookie })).status).toBe(401);
    // A bearer token wins over everything: the org's JSON.
    const bearer = await get(`/admin/orgs/${suspended}`, { cookie, accept: HTML_ACCEPT, authorization: `Bearer ${TEST_ADMIN_TOKEN}` });
    expect(bearer.status).toBe(200);
    expect(await bearer.json()).toMatchObject({ org_id: suspended, state: "suspended" });
    // Writes are never redirected.
    const post = await exports.default.fetch(`${BILLING}/admin/orgs/${suspended}/resync`, { method: "POST", redirect: "manual", headers: { cookie, accept: HTML_ACCEPT } });
    expect(post.status).toBe(401);
  });
});

/** A minimal stand-in for a <time> element, enough for the client's tick. */
function timeElement(attributes: Record<string, string>, text: string) {
  return {
    textContent: text as string | null,
    getAttribute: (name: string) => attributes[name] ?? null,
    hasAttribute: (name: string) => name in attributes,
  };
}

describe("relative times", () => {
  it("every relative time on the org page is marked to tick, not only the deadline's countdown", async () => {
    const page = await (await get(`/admin/org/${suspended}`, { cookie: await login() })).text();
    const times = [...page.matchAll(/<time [^>]*>/g)].map((m) => m[0]);
    const relative = times.filter((t) => !/class="absolute"|data-utc-now/.test(t));
    expect(relative.length).toBeGreaterThanOrEqual(5);
    for (const tag of relative) expect(tag).toContain("data-relative");
    expect(fact(page, "Grace period ends")).toContain("data-relative");
    expect(fact(page, "Last read from Autumn")).toContain("data-relative");
  });

  it("the client's tick rewrites every marked time, past and future, and says when a countdown is over", () => {
    const now = Date.parse("2026-12-02T12:00:00.000Z");
    const graceEnded = timeElement({ datetime: "2026-12-02T11:59:42.000Z", "data-relative": "" }, "in 18s");
    const lastRead = timeElement({ datetime: "2026-12-02T11:59:08.000Z", "data-relative": "" }, "50s ago");
    const deadline = timeElement({ datetime: "2026-12-02T11:59:59.000Z", "data-relative": "", "data-countdown": "" }, "in 1s");
    const future = timeElement({ datetime: "2026-12-02T12:01:00.000Z", "data-relative": "" }, "in 5m");
    refreshTimes([graceEnded, lastRead, deadline, future], now);
    expect(graceEnded.textContent).toBe("18s ago");
    expect(lastRead.textContent).toBe("52s ago");
    expect(deadline.textContent).toBe("now: reload for the new state");
    expect(future.textContent).toBe("in 1m");
    const clock = timeElement({ datetime: "2026-12-02T11:00:00.000Z", "data-utc-now": "" }, "2026-12-02 11:00 UTC");
    refreshUtcNow([clock], now);
    expect(clock.textContent).toBe("2026-12-02 12:00 UTC");
  });
});

describe("words that cannot be misread", () => {
  it("says the last read from Autumn succeeded, not “ok”, on a suspended org", async () => {
    const page = await (await get(`/admin/org/${suspended}`, { cookie: await login() })).text();
    const lastRead = fact(page, "Last read from Autumn");
    expect(lastRead).toMatch(/ago<\/time>: succeeded$/);
    expect(lastRead).not.toMatch(/\bok\b/);
  });

  it("shows the mode that applies, observe included, when the org has no override of its own", () => {
    const now = Date.now();
    const record = newOrgRecord("org_observed", now);
    const view = { ...orgView(record, [], [], now, DEFAULT_POLICY), enforcement_mode: "observe" as const, usage: usageView(record, [], NO_USAGE, now) };
    expect(fact(orgPage(view, [], now, {}).value, "Enforcement")).toContain("<strong>observe</strong> (the Workers' <code>ENFORCEMENT</code>) <span class=\"muted\">nothing is refused for billing");
  });

  it("says a failed read failed, and why", () => {
    const now = Date.now();
    const record: OrgRecord = { ...newOrgRecord("org_failed_read", now), last_sync: { at: now - 52_000, ok: false, error: "Autumn answered 503", customer_unknown: false } };
    const view = { ...orgView(record, [], [], now, DEFAULT_POLICY), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, now) };
    expect(fact(orgPage(view, [], now, {}).value, "Last read from Autumn")).toMatch(/52s ago<\/time>: <span class="error">failed: Autumn answered 503<\/span>$/);
  });
});

describe("the override's end, in UTC", () => {
  it("is a text field for a UTC date-time that says UTC, not a local date picker", async () => {
    const page = await (await get(`/admin/org/${suspended}`, { cookie: await login() })).text();
    const input = /<input id="until"[^>]*>/.exec(page)?.[0] ?? "";
    expect(input).toContain('type="text"');
    expect(input).not.toContain("datetime-local");
    expect(input).toContain('pattern="\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}Z?"');
    expect(input).toContain('placeholder="YYYY-MM-DDTHH:MMZ"');
    expect(page).toMatch(/<label for="until">Until \(UTC[^<]*<\/label>/);
  });

  it("reads YYYY-MM-DDTHH:MM with or without Z as UTC, and nothing else", () => {
    expect(parseUtcMinute("2026-12-05T10:00Z")).toBe(Date.parse("2026-12-05T10:00:00.000Z"));
    expect(parseUtcMinute("2026-12-05T10:00")).toBe(Date.parse("2026-12-05T10:00:00.000Z"));
    expect(parseUtcMinute(" 2026-12-05t10:00z ")).toBe(Date.parse("2026-12-05T10:00:00.000Z"));
    for (const bad of ["05/12/2026 10:00", "2026-12-05", "2026-12-05T10:00+01:00", "2026-02-30T10:00Z", "2026-12-05T24:00Z", "2026-12-05T10:60Z", "tomorrow"]) {
      expect(parseUtcMinute(bad), bad).toBeNull();
    }
  });

  it.each([
    ["a local-format date", "05/12/2026 10:00", "invalid_until"],
    ["a day that does not exist", "2026-02-30T10:00Z", "invalid_until"],
    ["an offset other than UTC", "2026-12-05T10:00+01:00", "invalid_until"],
    ["an end in the past", "2020-01-01T00:00Z", "until_in_past"],
  ])("refuses %s with 400 and a stable code, and changes nothing", async (_name, until, code) => {
    const cookie = await login();
    const before = await orgState(suspended);
    const response = await postForm(`/admin/org/${suspended}/override`, { action: "exempt", until, note: "ticket 7" }, cookie);
    expect(response.status).toBe(400);
    expect(await response.text()).toContain(`<p class="error" role="alert" data-error="${code}">`);
    expect((await orgState(suspended)).version).toBe(before.version);
  });

  it("applies an end given as YYYY-MM-DDTHH:MMZ", async () => {
    const org = uniqueOrg("console_utc");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, Date.now() - GRACE - 60_000)).webhook);
    const until = `${new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 16)}Z`;
    const response = await postForm(`/admin/org/${org}/override`, { action: "exempt", until, note: "ticket 8" }, await login());
    expect(response.status).toBe(303);
    expect(await orgState(org)).toMatchObject({ reason: "exempt", override: { until: `${until.slice(0, 16)}:00.000Z` } });
  });
});

describe("the favicon", () => {
  it("is served with caching headers, and every page links it", async () => {
    const response = await get("/favicon.ico");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("image/svg+xml");
    expect(response.headers.get("cache-control")).toMatch(/public, max-age=\d{5,}/);
    expect(await response.text()).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const login = await (await get("/admin/login")).text();
    expect(login).toContain('<link rel="icon" href="/favicon.ico" type="image/svg+xml" />');
  });
});

describe("while an exemption is in force", () => {
  const NOW = Date.parse("2026-12-02T10:00:00.000Z");
  const DAY = 86_400_000;

  function exemptView(until: number | null) {
    const anchor = NOW - 5 * DAY;
    const record: OrgRecord = {
      ...newOrgRecord("org_exempt_view", NOW),
      state: "overdue",
      reason: "exempt",
      since: NOW - DAY,
      anchor,
      noticed_at: anchor,
      notice_from: NOW - DAY,
      // What the policy stores: the latest of the grace end (passed), the notice end (in 6 days) and the exemption's end.
      suspend_at: until === null ? null : Math.max(NOW + 6 * DAY, until),
      override: { action: "exempt", until, note: "wire pending", at: NOW - DAY },
    };
    // A week's minimum notice from the exemption's grant: the deadline after it is later than its end.
    return { ...orgView(record, [], [], NOW, { ...DEFAULT_POLICY, minNoticeMs: 7 * DAY }), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, NOW) };
  }

  it("shows the exemption's end and the deadline that applies then, not the deadline as if it were running", () => {
    const page = orgPage(exemptView(NOW + 3 * DAY), [], NOW, {}).value;
    expect(page).not.toContain("<dt>Suspension deadline</dt>");
    expect(page).not.toContain('<span class="decides">the deadline</span>');
    const exemption = fact(page, "Exempt");
    expect(exemption).toContain("until 2026-12-05 10:00 UTC");
    expect(exemption).toContain("then the deadline 2026-12-08 10:00 UTC applies");
    expect(fact(page, "Minimum notice ends")).toContain('<span class="decides">applies after the exemption</span>');
  });

  it("an exemption with no end says so, and names no deadline", () => {
    const page = orgPage(exemptView(null), [], NOW, {}).value;
    expect(page).not.toContain("<dt>Suspension deadline</dt>");
    expect(fact(page, "Exempt")).toContain("with no end");
  });

  it("an org in its grace period still shows its live deadline (from the org view)", () => {
    const record: OrgRecord = { ...newOrgRecord("org_grace_view", NOW), state: "overdue", reason: "in_grace_period", anchor: NOW, noticed_at: NOW, notice_from: NOW, suspend_at: NOW + 3 * DAY };
    const view = { ...orgView(record, [], [], NOW, DEFAULT_POLICY), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, NOW) };
    expect(view.published_deadline).toBe("2026-12-05T10:00:00.000Z");
    const page = orgPage(view, [], NOW, {}).value;
    expect(fact(page, "Suspension deadline")).toContain('datetime="2026-12-05T10:00:00.000Z"');
    expect(page).not.toContain("<dt>Exempt</dt>");
  });
});
