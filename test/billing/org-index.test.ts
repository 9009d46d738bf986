import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { autumn } from "../support/autumn.ts";
import { admin, alarmOf, deleteAllAlarms, deliver, deliverNow, mirrorOf, orgStub, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { shardNameOf } from "../../src/shared/index-shard.ts";

const clock = fakeClock();

const DAY = 86_400_000;
const GRACE = 3 * DAY;

afterEach(deleteAllAlarms);

type Page = { orgs: { org_id: string; state: string; reason: string; suspend_at: string | null; suspended_at: string | null }[]; next_cursor: string | null };

async function list(query: string): Promise<Page> {
  const response = await admin(`/orgs?${query}`);
  expect(response.status).toBe(200);
  return (await response.json()) as Page;
}

/** Every page of a state, for the orgs this test made. */
async function all(state: string, mine: Set<string>): Promise<Page["orgs"]> {
  const found: Page["orgs"] = [];
  let cursor: string | null = null;
  do {
    const page: Page = await list(`state=${state}&limit=2${cursor === null ? "" : `&cursor=${cursor}`}`);
    found.push(...page.orgs.filter((o) => mine.has(o.org_id)));
    cursor = page.next_cursor;
  } while (cursor !== null);
  return found;
}

async function pastDue(prefix: string, invoiceAt: number): Promise<string> {
  const org = uniqueOrg(prefix);
  await autumn.createCustomer(org);
  await autumn.pastDue(org, invoiceAt);
  // Signed at the test's clock, which may have moved past the stand-in's.
  await deliverNow(org);
  return org;
}

describe("GET /admin/orgs?state=...", () => {
  it("lists orgs that are not ok, overdue by deadline, through pages", async () => {
    const gone = await pastDue("idx_susp", clock.now - GRACE);
    await sitOutMinimumNotice(gone, clock);
    const late = await pastDue("idx_late", clock.now - 2 * DAY - 3_600_000);
    const early = await pastDue("idx_early", clock.now);
    const paying = uniqueOrg("idx_ok");
    await autumn.createCustomer(paying);
    await deliverNow(paying);
    const mine = new Set([late, early, gone, paying]);

    const overdue = await all("overdue", mine);
    expect(overdue.map((o) => o.org_id)).toEqual([late, early]);
    expect(overdue[0]).toMatchObject({ state: "overdue", reason: "in_grace_period", suspend_at: new Date(clock.now + DAY).toISOString() });
    // Past due for 2 days and an hour when first seen: the minimum notice (24 h), not the grace period (23 h left), sets the deadline.
    expect(await all("suspended", mine)).toMatchObject([{ org_id: gone, state: "suspended", reason: "grace_elapsed_never_paid" }]);
    // Orgs only ever seen in good standing are not indexed at all.
    expect(await all("ok", mine)).toEqual([]);
  });

  it("follows every transition, including back to ok (recently restored)", async () => {
    const org = await pastDue("idx_follow", clock.now);
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    expect(await all("suspended", new Set([org]))).toHaveLength(1);
    expect(await all("overdue", new Set([org]))).toHaveLength(0);
    await autumn.pay(org, clock.now);
    await deliverNow(org);
    expect(await all("suspended", new Set([org]))).toHaveLength(0);
    expect(await all("ok", new Set([org]))).toMatchObject([{ org_id: org, reason: "not_past_due" }]);
  });

  it("an org that never left ok is never listed as restored, even when it publishes (a plan limit reached)", async () => {
    const org = uniqueOrg("idx_limited");
    await autumn.createCustomer(org, { webhook: false });
    await autumn.setAllowance(org, "spans", { granted: 10, next_reset_at: null });
    await autumn.track(org, "spans", { value: 10 });
    await deliverNow(org);
    // The limit was published (mirror and key entries), but the org is ok and never was anything else.
    expect(await mirrorOf(org)).toMatchObject({ state: "ok", limits: [{ feature_id: "spans" }] });
    expect(await all("ok", new Set([org]))).toEqual([]);
  });

  it("is repaired by the org's alarm when the index could not be written", async () => {
    const org = uniqueOrg("idx_repair");
    await autumn.createCustomer(org);
    await runInDurableObject(orgStub(org), (instance) => {
      const namespace = (instance as unknown as { env: BillingEnv }).env.ORG_INDEX;
      vi.spyOn(namespace, "getByName").mockReturnValueOnce({ upsert: () => Promise.reject(new Error("index unavailable")) } as never);
    });
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    expect(await all("overdue", new Set([org]))).toHaveLength(0);
    clock.set((await alarmOf(org))!);
    await runDurableObjectAlarm(orgStub(org));
    expect(await all("overdue", new Set([org]))).toHaveLength(1);
  });

  it("costs a publication one call to the index: to the org's shard", async () => {
    const org = uniqueOrg("idx_one_call");
    await autumn.createCustomer(org);
    // Index writes made anywhere in the runtime (the namespace is shared; a sweep may read the index meanwhile).
    const writes: string[] = [];
    const spy = await runInDurableObject(orgStub(org), (instance) => {
      const namespace = (instance as unknown as { env: BillingEnv }).env.ORG_INDEX;
      // The namespace's own method (an earlier test's spy may still sit on the instance).
      const getByName = (name: string) => (Object.getPrototypeOf(namespace) as typeof namespace).getByName.call(namespace, name);
      return vi.spyOn(namespace, "getByName").mockImplementation((name) => {
        const stub = getByName(name);
        return new Proxy(stub, { get: (target, property) => (property === "upsert" && writes.push(name), Reflect.get(target, property)) });
      });
    });
    try {
      await deliver((await autumn.pastDue(org, clock.now)).webhook);
      expect(writes).toEqual([shardNameOf(org)]);
    } finally {
      spy.mockRestore();
    }
    expect(await all("overdue", new Set([org]))).toHaveLength(1);
  });

  it.each(["", "state=everything", "state=overdue&limit=0", "state=overdue&cursor=abc"])("refuses %j with 400", async (query) => {
    const response = await admin(`/orgs?${query}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_request" });
  });
});
