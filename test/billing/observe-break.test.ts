import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { admin, BILLING, deleteAllAlarms, deliver, deliverNow, MIN_NOTICE_MS, mirrorOf, orgState, orgStub, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { receiver } from "../support/notify.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";

/**
 * Issue 21, second read (adversarial): the per-org enforcement override and observe mode where they meet
 * the state machine, outbound events, support's overrides, resyncs and sweeps, the admin API's input
 * checks and the console's forms. Three defects found this way
 * (kept batches held after a switch to observe, a silent cut-off, the timing promise) failed at d1c5278 and
 * are fixed; the others pin behaviour that held.
 */

const clock = fakeClock();
const DAY = 86_400_000;

afterEach(deleteAllAlarms);

const json = { "content-type": "application/json" };
const setEnforcement = (org: string, body: unknown) => admin(`/orgs/${encodeURIComponent(org)}/enforcement`, { method: "POST", headers: json, body: JSON.stringify(body) });
const supportOverride = async (org: string, action: "suspend" | "exempt" | "clear" | "unsuspend") => {
  const response = await admin(`/orgs/${encodeURIComponent(org)}/override`, { method: "POST", headers: json, body: JSON.stringify({ action, note: "support (break test)" }) });
  expect(response.status).toBe(200);
};

describe("observe mode and the state machine", () => {
  it("held: an observed org past due is warned, suspended no sooner than MIN_NOTICE, then pays: every event says observe, the override survives", async () => {
    const org = uniqueOrg("brk_obs_pay");
    await autumn.createCustomer(org);
    expect((await setEnforcement(org, { mode: "observe", note: "canary" })).status).toBe(200);
    await deliver((await autumn.pastDue(org, clock.now - 10 * DAY)).webhook);
    const noticed = clock.now;
    expect((await orgState(org)).state).toBe("overdue");

    await sitOutMinimumNotice(org, clock);
    const suspended = await orgState(org);
    expect(suspended.state).toBe("suspended");
    expect(Date.parse(suspended.suspended_at!)).toBeGreaterThanOrEqual(noticed + MIN_NOTICE_MS);

    await autumn.pay(org, clock.now);
    await deliverNow(org);
    const paid = await orgState(org);
    expect(paid.state).toBe("ok");
    expect(paid.enforcement).toMatchObject({ mode: "observe" });
    expect((await mirrorOf(org))?.enforcement).toBe("observe");

    const events = await receiver.events(org);
    expect(events.map((e) => e.type)).toEqual(["org.overdue", "org.suspension_warning", "org.suspended", "org.restored"]);
    expect(new Set(events.map((e) => e.enforcement))).toEqual(new Set(["observe"]));
  });

  it("enforcing an org already suspended under observe tells the receiver (org.enforcement_changed), not a silent cut-off", async () => {
    // The canary (docs/deploying.md step 3) on an org the observe week suspended: its product was told
    // `org.suspended` with "enforcement": "observe" ("only counted and logged, the data still accepted", docs/events.md),
    // so it had no reason to tell the customer they are cut off. The switch to enforce makes the next export a 402
    // within 1 s, yet nothing goes out: the receiver never learns that the suspension is now carried out.
    const org = uniqueOrg("brk_obs_enforce");
    await autumn.createCustomer(org);
    expect((await setEnforcement(org, { mode: "observe", note: "observe week" })).status).toBe(200);
    await supportOverride(org, "suspend");
    expect((await receiver.events(org)).map((e) => [e.type, e.enforcement])).toEqual([["org.suspended", "observe"]]);

    expect((await setEnforcement(org, { mode: "enforce", note: "canary, ticket 42" })).status).toBe(200);
    expect((await mirrorOf(org))?.enforcement).toBe("enforce");
    const after = (await receiver.events(org)).slice(1);
    // Whatever its type, some event must now tell the product this org's suspension is enforced.
    expect(after.filter((e) => e.enforcement === "enforce" && e.state === "suspended")).toHaveLength(1);
  });

  it("held: support's overrides and the enforcement override are independent (clear keeps the canary, default keeps the suspension)", async () => {
    const org = uniqueOrg("brk_obs_both");
    await autumn.createCustomer(org);
    expect((await setEnforcement(org, { mode: "enforce", note: "canary" })).status).toBe(200);
    await supportOverride(org, "suspend");
    expect(await mirrorOf(org)).toMatchObject({ state: "suspended", enforcement: "enforce" });
    expect((await setEnforcement(org, { mode: "default", note: "canary over" })).status).toBe(200);
    expect(await mirrorOf(org)).toMatchObject({ state: "suspended", enforcement: null });
    expect((await orgState(org)).override).toMatchObject({ action: "suspend" });
    expect((await setEnforcement(org, { mode: "observe", note: "again" })).status).toBe(200);
    await supportOverride(org, "clear");
    await supportOverride(org, "exempt");
    const view = await orgState(org);
    expect([view.state, view.override?.action, view.enforcement?.mode]).toEqual(["ok", "exempt", "observe"]);
    expect((await mirrorOf(org))?.enforcement).toBe("observe");
  });

  it("held: an operator's resync and a sweep's reconcile keep the enforcement override and its publication", async () => {
    const org = uniqueOrg("brk_obs_resync");
    await autumn.createCustomer(org);
    expect((await setEnforcement(org, { mode: "observe", note: "canary" })).status).toBe(200);
    expect((await admin(`/orgs/${org}/resync`, { method: "POST" })).status).toBe(200);
    await autumn.pastDue(org, { at: clock.now - 10 * DAY, webhook: false });
    expect(await orgStub(org).reconcile("unknown_past_due")).toBe("overdue");
    const view = await orgState(org);
    expect(view.enforcement).toMatchObject({ mode: "observe", note: "canary" });
    expect(await mirrorOf(org)).toMatchObject({ state: "overdue", enforcement: "observe" });
  });
});

describe("the admin route's input", () => {
  it.each([
    ["a mode in capitals", { mode: "Enforce", note: "x" }, 400],
    ["a note of 2,001 characters", { mode: "enforce", note: "n".repeat(2001) }, 400],
    ["a JSON array", [{ mode: "enforce", note: "x" }], 400],
    ["a note that is a number", { mode: "enforce", note: 42 }, 400],
  ])("held: %s is a 4xx with a stable code, and nothing changes", async (_what, body, status) => {
    const org = uniqueOrg("brk_obs_bad");
    const response = await setEnforcement(org, body);
    expect(response.status).toBe(status);
    expect(await response.json()).toMatchObject({ error: "invalid_request", message: expect.any(String) });
    expect((await orgState(org)).history).toEqual([]);
    expect(await mirrorOf(org)).toBeNull();
  });

  it("held: an org id that is not one is 400 invalid_org_id", async () => {
    const response = await admin(`/orgs/${encodeURIComponent("a b/c")}/enforcement`, { method: "POST", headers: json, body: JSON.stringify({ mode: "enforce", note: "x" }) });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_org_id" });
  });

  it("held: a gzip-declared body is 415 unsupported_encoding and changes nothing", async () => {
    const org = uniqueOrg("brk_obs_gz");
    const response = await admin(`/orgs/${org}/enforcement`, { method: "POST", headers: { ...json, "content-encoding": "gzip" }, body: JSON.stringify({ mode: "enforce", note: "x" }) });
    expect(response.status).toBe(415);
    expect(await mirrorOf(org)).toBeNull();
  });
});

describe("the console's enforcement form", () => {
  const login = async () =>
    (
      await exports.default.fetch(`${BILLING}/admin/login`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded", origin: BILLING },
        body: new URLSearchParams({ token: TEST_ADMIN_TOKEN }).toString(),
      })
    ).headers
      .get("set-cookie")!
      .split(";")[0]!;

  it.each([
    ["another origin", { origin: "https://evil.example" }],
    ["a cross-site fetch", { "sec-fetch-site": "cross-site" }],
    ["no origin at all", {}],
  ])("held: a form from %s is refused 403 and changes nothing, signed in or not", async (_what, headers) => {
    const org = uniqueOrg("brk_obs_csrf");
    const cookie = await login();
    const response = await exports.default.fetch(`${BILLING}/admin/org/${org}/enforcement`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie, ...headers },
      body: new URLSearchParams({ mode: "observe", note: "csrf" }).toString(),
    });
    expect(response.status).toBe(403);
    expect((await orgState(org)).history).toEqual([]);
    expect(await mirrorOf(org)).toBeNull();
  });
});

describe("the override's timing bound as documented", () => {
  it("the admin API page and the console promise what the timing bounds say (~1.5 min for an org not suspended), not seconds", async () => {
    // policy.md's Timing bounds: "within 1 s for a suspended org ...; otherwise as a new suspension, within ~1.5 min"
    // (isolates' 5 s, KV's 30 s edge cache, KV's ~60 s propagation). admin-api.md says the ingest Worker follows
    // "within its cache bounds (5 s, 1 s for a suspended org)", and the console's flash says "within seconds": an
    // operator canarying a limited (429) or overdue org is told to expect it in 5 s and may see it take a minute and more.
    const policy = (await import("../../docs/policy.md?raw")).default as string;
    const adminApi = (await import("../../docs/admin-api.md?raw")).default as string;
    expect(policy).toMatch(/enforcement override[^\n]*within ~1\.5 min/);
    const row = adminApi.split("\n").find((line) => line.startsWith("| `POST /admin/orgs/{orgId}/enforcement`"))!;
    expect(row).not.toMatch(/\(5 s, 1 s for a suspended org\)/);

    const org = uniqueOrg("brk_obs_flash");
    const cookie = (
      await exports.default.fetch(`${BILLING}/admin/login`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", origin: BILLING }, body: new URLSearchParams({ token: TEST_ADMIN_TOKEN }).toString() })
    ).headers
      .get("set-cookie")!
      .split(";")[0]!;
    const html = await (await exports.default.fetch(`${BILLING}/admin/org/${org}?done=enforcement`, { headers: { cookie } })).text();
    expect(html).toContain("Enforcement set");
    expect(html).not.toContain("follows within seconds");
  });
});
