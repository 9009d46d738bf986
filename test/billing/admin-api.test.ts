import { runDurableObjectAlarm } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { sessionCookie } from "../../src/billing/console/session.ts";
import { autumn } from "../support/autumn.ts";
import { admin, BILLING, deleteAllAlarms, deliver, orgState, orgStub, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";

const clock = fakeClock();

const DAY = 86_400_000;
const GRACE = 3 * DAY;

afterEach(deleteAllAlarms);

function post(path: string, body: unknown) {
  return admin(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

async function suspendedOrg(): Promise<string> {
  const org = uniqueOrg("admin");
  await autumn.createCustomer(org);
  await deliver((await autumn.pastDue(org, clock.now - GRACE)).webhook);
  await sitOutMinimumNotice(org, clock);
  expect((await orgState(org)).state).toBe("suspended");
  return org;
}

describe("admin authentication", () => {
  it.each([
    ["no header", null],
    ["a wrong token", "Bearer nope"],
    ["another scheme", "Basic dGVzdA=="],
  ])("refuses %s with 401", async (_name, authorization) => {
    const response = await admin("/orgs/org_a", { authorization });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: "unauthorized" });
  });
});

describe("GET /admin/orgs/{orgId}", () => {
  it("shows an org never seen as ok", async () => {
    const response = await admin(`/orgs/${uniqueOrg("never")}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ state: "ok", reason: "never_synced", history: [], override: null });
  });

  it("refuses an invalid org id with 400 before touching any object", async () => {
    const response = await admin(`/orgs/${encodeURIComponent("bad id!")}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_org_id" });
  });

  it("answers 404 not_found for unknown routes", async () => {
    const response = await admin("/orgs/org_a/nothing-here");
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: "not_found" });
  });
});

describe("POST /admin/orgs/{orgId}/resync", () => {
  it("reads Autumn clock.now and returns the resulting state", async () => {
    const org = uniqueOrg("resync");
    await autumn.createCustomer(org);
    await autumn.pastDue(org, clock.now);
    const response = await post(`/orgs/${org}/resync`, {});
    expect(await response.json()).toMatchObject({ state: "overdue", history: [{ source: "admin", to: "overdue" }] });
  });
});

describe("POST /admin/orgs/{orgId}/override", () => {
  it("exempts a suspended org until a date, with the note in history", async () => {
    const org = await suspendedOrg();
    const until = new Date(clock.now + 2 * DAY).toISOString();
    const response = await post(`/orgs/${org}/override`, { action: "exempt", until, note: "ticket 1234: paying by wire" });
    expect(response.status).toBe(200);
    const state = (await response.json()) as Awaited<ReturnType<typeof orgState>>;
    expect(state).toMatchObject({ state: "overdue", reason: "exempt", override: { action: "exempt", until, note: "ticket 1234: paying by wire" } });
    expect(state.history.slice(0, 2)).toMatchObject([
      { kind: "transition", from: "suspended", to: "overdue", source: "admin", note: "ticket 1234: paying by wire" },
      { kind: "override", override: { action: "exempt", until }, note: "ticket 1234: paying by wire" },
    ]);

    // The exemption ends: the alarm re-reads Autumn and suspends again.
    clock.set(clock.now + 2 * DAY);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid" });
  });

  it("unsuspend grants one more grace period", async () => {
    const org = await suspendedOrg();
    const state = await (await post(`/orgs/${org}/override`, { action: "unsuspend", note: "goodwill" })).json();
    expect(state).toMatchObject({ state: "overdue", reason: "exempt", override: { action: "exempt", until: new Date(clock.now + GRACE).toISOString() } });
  });

  it("suspends by hand, even a paying org, and clear lets the policy decide again", async () => {
    const org = uniqueOrg("manual");
    await autumn.createCustomer(org);
    expect(await (await post(`/orgs/${org}/override`, { action: "suspend", note: "abuse report 77" })).json()).toMatchObject({ state: "suspended", reason: "manual_suspend" });
    expect(await (await post(`/orgs/${org}/override`, { action: "clear", note: "resolved" })).json()).toMatchObject({ state: "ok", override: null });
  });

  it.each([
    ["no note", { action: "exempt" }],
    ["an empty note", { action: "exempt", note: "  " }],
    ["an unknown action", { action: "forgive", note: "x" }],
    ["a malformed until", { action: "exempt", until: "tomorrow", note: "x" }],
    ["an until in the past", { action: "exempt", until: "2020-01-01T00:00:00Z", note: "x" }],
  ])("refuses %s with 400 and changes nothing", async (_name, body) => {
    const org = await suspendedOrg();
    const before = await orgState(org);
    const response = await post(`/orgs/${org}/override`, body);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_request", message: expect.any(String) });
    expect(await orgState(org)).toEqual(before);
  });

  it.each(["gzip", "br", "deflate, gzip"])("refuses a body declared as %s with 415 unsupported_encoding and changes nothing (found by the fuzz test)", async (encoding) => {
    const org = await suspendedOrg();
    const before = await orgState(org);
    const response = await admin(`/orgs/${org}/override`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": encoding },
      body: JSON.stringify({ action: "unsuspend", note: "not really gzip" }),
    });
    expect(response.status).toBe(415);
    expect(await response.json()).toMatchObject({ error: "unsupported_encoding" });
    expect(await orgState(org)).toEqual(before);
  });

  it("refuses a body that is not JSON with 400 invalid_json", async () => {
    const response = await admin(`/orgs/${uniqueOrg()}/override`, { method: "POST", body: "{" });
    expect(await response.json()).toMatchObject({ error: "invalid_json" });
  });
});

describe("malformed percent-encoding in paths", () => {
  // `%E0` alone, a truncated `%`, an overlong UTF-8 sequence and a lone surrogate: decodeURIComponent throws on all of them.
  const MALFORMED = ["%E0", "%", "%zz", "org%C0%AF", "%ED%A0%80"];

  it.each(MALFORMED)("GET /admin/orgs/%s answers 400 invalid_org_id", async (segment) => {
    const response = await admin(`/orgs/${segment}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_org_id" });
  });

  it.each(MALFORMED)("POST /admin/orgs/%s/resync answers 400 invalid_org_id", async (segment) => {
    const response = await admin(`/orgs/${segment}/resync`, { method: "POST" });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_org_id" });
  });

  it.each(MALFORMED)("DELETE /admin/orgs/{org}/ingest-keys/%s answers 400 invalid_key_id and revokes nothing", async (segment) => {
    const org = uniqueOrg("keys");
    const minted = await admin(`/orgs/${org}/ingest-keys`, { method: "POST" });
    expect(minted.status).toBe(201);
    const response = await admin(`/orgs/${org}/ingest-keys/${segment}`, { method: "DELETE" });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_key_id" });
    const keys = (await (await admin(`/orgs/${org}/ingest-keys`)).json()) as { keys: unknown[] };
    expect(keys.keys).toHaveLength(1);
  });

  it("DELETE of a well-encoded but unknown key id is still 404 key_not_found", async () => {
    const response = await admin(`/orgs/${uniqueOrg("keys")}/ingest-keys/ik_0000000000000000`, { method: "DELETE" });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: "key_not_found" });
  });

  it.each(MALFORMED)("the console's /admin/org/%s answers 404 with a page, signed in", async (segment) => {
    const cookie = (await sessionCookie(TEST_ADMIN_TOKEN, Date.now())).split(";")[0]!;
    for (const [method, path] of [["GET", `/admin/org/${segment}`], ["POST", `/admin/org/${segment}/resync`]] as const) {
      const response = await exports.default.fetch(`${BILLING}${path}`, { method, redirect: "manual", headers: { cookie, origin: BILLING } });
      expect(response.status).toBe(404);
      expect(await response.text()).toContain("is not an org id");
    }
  });

  it.each(["1e99", "9007199254740993", "-1", "%E0", "abc"])("the console's list page treats cursor=%s as the first page (found by the fuzz test: 1e99 was a 500)", async (cursor) => {
    const cookie = (await sessionCookie(TEST_ADMIN_TOKEN, Date.now())).split(";")[0]!;
    const response = await exports.default.fetch(`${BILLING}/admin/list/overdue?cursor=${cursor}`, { redirect: "manual", headers: { cookie } });
    expect(response.status).toBe(200);
    await response.body?.cancel();
  });
});
