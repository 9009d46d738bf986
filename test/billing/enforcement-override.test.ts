import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { eventsFor, notifySettings } from "../../src/billing/org/events.ts";
import { newOrgRecord } from "../../src/billing/org/record.ts";
import { ConfigError } from "../../src/shared/settings.ts";
import { autumn } from "../support/autumn.ts";
import { admin, BILLING, deleteAllAlarms, deliver, mirrorOf, orgState, uniqueOrg } from "../support/billing.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";
import { receiver } from "../support/notify.ts";
import { fakeClock } from "../support/clock.ts";

/**
 * Issue 21, the per-org canary: `POST /admin/orgs/{id}/enforcement` sets the org's own enforcement
 * mode (or clears it with `default`), with a note, recorded in history as an override entry, shown in
 * the org's view, and published in its mirror entry (which the ingest Worker reads); outbound events
 * carry the org's effective mode. Bad input is a 4xx with a stable code and changes nothing.
 */

const clock = fakeClock();

afterEach(deleteAllAlarms);

const setEnforcement = (org: string, body: unknown) => admin(`/orgs/${encodeURIComponent(org)}/enforcement`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("the enforcement override (admin API)", () => {
  it("observe: recorded with its note, in history as an override entry, shown in the view, published in the mirror entry", async () => {
    const org = uniqueOrg("canary");
    const response = await setEnforcement(org, { mode: "observe", note: "canary for the rollout (ops-42)" });
    expect(response.status).toBe(200);
    const view = (await response.json()) as Awaited<ReturnType<typeof orgState>>;
    expect(view.enforcement).toEqual({ mode: "observe", note: "canary for the rollout (ops-42)", at: new Date(clock.now).toISOString() });
    expect(view.state).toBe("ok");
    expect(view.history[0]).toMatchObject({ kind: "override", source: "admin", note: "canary for the rollout (ops-42)", override: null, enforcement: "observe", from: "ok", to: "ok" });
    expect(view.mirror.in_sync).toBe(true);
    expect(await mirrorOf(org)).toMatchObject({ state: "ok", enforcement: "observe" });
  });

  it("enforce, then default: each recorded; default clears the override and republishes null", async () => {
    const org = uniqueOrg("canary_clear");
    expect((await setEnforcement(org, { mode: "enforce", note: "first org enforced" })).status).toBe(200);
    expect((await mirrorOf(org))?.enforcement).toBe("enforce");
    const cleared = await setEnforcement(org, { mode: "default", note: "canary over" });
    expect(cleared.status).toBe(200);
    const view = await orgState(org);
    expect(view.enforcement).toBeNull();
    expect(view.history.map((h) => [h.kind, h.enforcement, h.note])).toEqual([
      ["override", "default", "canary over"],
      ["override", "enforce", "first org enforced"],
    ]);
    expect((await mirrorOf(org))?.enforcement).toBeNull();
  });

  it("changes no billing state: a suspended org stays suspended, and its mirror keeps the suspension", async () => {
    const org = uniqueOrg("canary_susp");
    expect((await admin(`/orgs/${org}/override`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ action: "suspend", note: "test" }) })).status).toBe(200);
    const before = await orgState(org);
    expect((await setEnforcement(org, { mode: "observe", note: "watch it" })).status).toBe(200);
    const after = await orgState(org);
    expect([after.state, after.reason, after.suspended_at, after.override]).toEqual([before.state, before.reason, before.suspended_at, before.override]);
    expect(await mirrorOf(org)).toMatchObject({ state: "suspended", enforcement: "observe" });
  });

  it.each([
    ["an unknown mode", { mode: "off", note: "x" }],
    ["no note", { mode: "observe" }],
    ["an empty note", { mode: "observe", note: "   " }],
    ["no mode", { note: "x" }],
  ])("%s: 400 with a stable code, and nothing changes", async (_what, body) => {
    const org = uniqueOrg("canary_bad");
    const response = await setEnforcement(org, body);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: expect.stringMatching(/^[a-z_]+$/), message: expect.any(String) });
    const view = await orgState(org);
    expect(view.enforcement).toBeNull();
    expect(view.history).toEqual([]);
    expect(await mirrorOf(org)).toBeNull();
  });

  it("not JSON: a 4xx, and nothing changes", async () => {
    const org = uniqueOrg("canary_nojson");
    const response = await admin(`/orgs/${org}/enforcement`, { method: "POST", headers: { "content-type": "application/json" }, body: "{mode" });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect((await orgState(org)).history).toEqual([]);
  });

  it("requires the admin token", async () => {
    const org = uniqueOrg("canary_auth");
    const response = await admin(`/orgs/${org}/enforcement`, { method: "POST", authorization: null, body: JSON.stringify({ mode: "observe", note: "x" }) });
    expect(response.status).toBe(401);
    expect(await mirrorOf(org)).toBeNull();
  });
});

describe("outbound events carry the enforcement mode", () => {
  it("an org observed by its override: org.overdue says \"enforcement\": \"observe\"; back to the Workers' mode, \"enforce\"", async () => {
    const org = uniqueOrg("canary_events");
    await autumn.createCustomer(org);
    expect((await setEnforcement(org, { mode: "observe", note: "canary" })).status).toBe(200);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    const [overdue] = await receiver.events(org);
    expect(overdue).toMatchObject({ type: "org.overdue", enforcement: "observe" });

    const other = uniqueOrg("plain_events");
    await autumn.createCustomer(other);
    await deliver((await autumn.pastDue(other, clock.now)).webhook);
    const [plain] = await receiver.events(other);
    expect(plain).toMatchObject({ type: "org.overdue", enforcement: "enforce" });
  });

  it("the billing Worker's ENFORCEMENT=observe labels events of an org without an override, and an org's enforce override wins over it", () => {
    const notify = notifySettings({ ...env, NOTIFY_URL: "https://receiver.example.com/events", ENFORCEMENT: "observe" });
    expect(notify?.enforcement).toBe("observe");
    const prev = newOrgRecord("org_observe", clock.now);
    const next = { ...prev, state: "overdue" as const, reason: "in_grace_period" as const, anchor: clock.now, suspend_at: clock.now + 86_400_000 };
    expect(eventsFor(prev, next, clock.now, 3_600_000, null, notify!.enforcement).events.map((e) => [e.type, e.enforcement])).toEqual([["org.overdue", "observe"]]);
    const canary = { ...next, enforcement: { mode: "enforce" as const, note: "canary", at: clock.now } };
    expect(eventsFor(prev, canary, clock.now, 3_600_000, null, "observe").events[0]?.enforcement).toBe("enforce");
  });

  it("a bad ENFORCEMENT is a configuration error naming the variable (notifications wait until it is fixed)", () => {
    expect(() => notifySettings({ ...env, NOTIFY_URL: "https://receiver.example.com/events", ENFORCEMENT: "sometimes" })).toThrow(ConfigError);
    expect(() => notifySettings({ ...env, NOTIFY_URL: "https://receiver.example.com/events", ENFORCEMENT: "sometimes" })).toThrow(/ENFORCEMENT/);
  });
});

describe("the console's enforcement form", () => {
  const form = (path: string, fields: Record<string, string>, cookie?: string) =>
    exports.default.fetch(`${BILLING}${path}`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: BILLING, ...(cookie ? { cookie } : {}) },
      body: new URLSearchParams(fields).toString(),
    });
  const login = async () => (await form("/admin/login", { token: TEST_ADMIN_TOKEN })).headers.get("set-cookie")!.split(";")[0]!;
  const page = async (path: string, cookie: string) => (await exports.default.fetch(`${BILLING}${path}`, { redirect: "manual", headers: { cookie } })).text();

  it("sets the mode with a note, shown on the org page and in its timeline (escaped)", async () => {
    const org = uniqueOrg("console_canary");
    const cookie = await login();
    expect(await page(`/admin/org/${org}`, cookie)).toContain(`action="/admin/org/${org}/enforcement"`);
    const response = await form(`/admin/org/${org}/enforcement`, { mode: "enforce", note: "first canary <b>ops</b>" }, cookie);
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe(`/admin/org/${org}?done=enforcement`);
    expect((await mirrorOf(org))?.enforcement).toBe("enforce");
    const html = await page(`/admin/org/${org}?done=enforcement`, cookie);
    expect(html).toContain("Enforcement set and recorded in the timeline");
    expect(html).toMatch(/<dd class="enforcement"><strong>enforce<\/strong> \(this org's own override/);
    expect(html).toContain("<strong>enforcement enforce</strong>");
    expect(html).toContain("first canary &lt;b&gt;ops&lt;/b&gt;");
  });

  it("a bad mode or no note: 400 naming the problem, and nothing changes", async () => {
    const org = uniqueOrg("console_canary_bad");
    const cookie = await login();
    const noNote = await form(`/admin/org/${org}/enforcement`, { mode: "observe", note: " " }, cookie);
    expect(noNote.status).toBe(400);
    expect(await noNote.text()).toContain("a note is required");
    expect((await form(`/admin/org/${org}/enforcement`, { mode: "sometimes", note: "x" }, cookie)).status).toBe(400);
    expect((await orgState(org)).history).toEqual([]);
    expect(await mirrorOf(org)).toBeNull();
  });
});
