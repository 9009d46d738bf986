import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { OrgBilling } from "../../src/billing/org/object.ts";
import { autumn } from "../support/autumn.ts";
import { admin, deleteAllAlarms, orgStub, uniqueOrg } from "../support/billing.ts";

afterEach(deleteAllAlarms);

type View = { parking: Record<string, number | string | null> };
const viewOf = async (org: string) => (await (await admin(`/orgs/${org}`)).json()) as View;
const post = (path: string, body: unknown) => admin(path, { method: "POST", body: JSON.stringify(body) });

describe("parking progress on the org's object", () => {
  it("adds the reported batches and bytes, and the admin view shows them with what is waiting", async () => {
    const org = uniqueOrg("park-progress");
    const stub = orgStub(org);
    await stub.recordParking({ parked_batches: 3, parked_bytes: 3_000 });
    await stub.recordParking({ parked_batches: 1, parked_bytes: 500 });
    await stub.recordParking({ delivered_batches: 2, delivered_bytes: 2_000, expired_batches: 1, expired_bytes: 1_000 });
    const view = await viewOf(org);
    expect(view.parking).toMatchObject({
      parked_batches: 4,
      parked_bytes: 3_500,
      delivered_batches: 2,
      delivered_bytes: 2_000,
      expired_batches: 1,
      expired_bytes: 1_000,
      waiting_batches: 1,
      waiting_bytes: 500,
    });
    expect(view.parking.last_delivery_at).toEqual(expect.any(String));
  });

  it("answers the bytes parked now (the ingest Worker's per-org cap): reports move it, a listing sets it outright, an empty report only asks", async () => {
    const org = uniqueOrg("park-waiting");
    const stub = orgStub(org);
    expect(await stub.recordParking({})).toEqual({ ok: true, waiting_bytes: 0 });
    expect(await stub.recordParking({ parked_batches: 2, parked_bytes: 700 })).toEqual({ ok: true, waiting_bytes: 700 });
    expect(await stub.recordParking({ refused_batches: 1, refused_bytes: 100 })).toEqual({ ok: true, waiting_bytes: 600 });
    // A report was lost: the next listing puts the figure right.
    expect(await stub.recordParking({ delivered_batches: 1, delivered_bytes: 300, listed_bytes: 0 })).toEqual({ ok: true, waiting_bytes: 0 });
    expect(await stub.recordParking({})).toEqual({ ok: true, waiting_bytes: 0 });
    expect((await viewOf(org)).parking).toMatchObject({ waiting_bytes: 0, refused_bytes: 100, delivered_bytes: 300 });
  });

  it("an org that never parked shows zeros", async () => {
    const view = await viewOf(uniqueOrg("park-none"));
    expect(view.parking).toMatchObject({ parked_batches: 0, delivered_batches: 0, waiting_batches: 0 });
  });

  it("refuses a malformed report and stores nothing", async () => {
    const org = uniqueOrg("park-bad");
    const stub = orgStub(org);
    expect(await stub.recordParking({ parked_batches: -1 })).toEqual({ ok: false });
    expect(await stub.recordParking({ parked_batches: 1.5 })).toEqual({ ok: false });
    expect(await stub.recordParking({ parked_batches: 1, surprise: 1 } as never)).toEqual({ ok: false });
    const view = await viewOf(org);
    expect(view.parking.parked_batches).toBe(0);
  });

  it("going from suspended to ok sends the org to the deliveries queue; other transitions do not", async () => {
    const org = uniqueOrg("park-restore");
    await autumn.createCustomer(org);
    const sent: unknown[] = [];
    await runInDurableObject(orgStub(org), (instance: OrgBilling) => {
      const env = (instance as unknown as { env: BillingEnv }).env;
      Object.defineProperty(instance, "env", { value: { ...env, DELIVERIES: { send: async (body: unknown) => void sent.push(body) } } });
    });
    expect(await (await post(`/orgs/${org}/override`, { action: "suspend", note: "test" })).json()).toMatchObject({ state: "suspended" });
    expect(sent).toEqual([]);
    expect(await (await post(`/orgs/${org}/override`, { action: "clear", note: "paid" })).json()).toMatchObject({ state: "ok" });
    expect(sent).toEqual([{ org_id: org }]);
  });
});

describe("the org.restored event", () => {
  it("carries the parking progress: parked, delivered, expired and what is waiting; other events do not", async () => {
    const { eventsFor } = await import("../../src/billing/org/events.ts");
    const { newOrgRecord } = await import("../../src/billing/org/record.ts");
    const { addParking, NO_PARKING } = await import("../../src/billing/org/parking.ts");
    const now = Date.parse("2026-11-25T10:00:00Z");
    const suspended = { ...newOrgRecord("org_restored_evt", now), state: "suspended" as const, reason: "manual_suspend" as const };
    const ok = { ...suspended, state: "ok" as const, reason: "not_past_due" as const };
    const parking = addParking(NO_PARKING, { parked_batches: 5, parked_bytes: 5_000, expired_batches: 1, expired_bytes: 1_000 }, now);
    const [restored] = eventsFor(suspended, ok, now, 60_000, parking).events;
    expect(restored).toMatchObject({
      type: "org.restored",
      parking: { parked_batches: 5, parked_bytes: 5_000, delivered_batches: 0, expired_batches: 1, waiting_batches: 4, waiting_bytes: 4_000 },
    });
    const [suspendedEvent] = eventsFor(ok, suspended, now, 60_000, parking).events;
    expect(suspendedEvent!.parking).toBeUndefined();
  });
});

describe("through the org's object", () => {
  it("the org.restored event it sends carries what was parked while it was suspended", async () => {
    const { receiver } = await import("../support/notify.ts");
    const org = uniqueOrg("park-restored-obj");
    await autumn.createCustomer(org);
    expect(await (await post(`/orgs/${org}/override`, { action: "suspend", note: "test" })).json()).toMatchObject({ state: "suspended" });
    await orgStub(org).recordParking({ parked_batches: 2, parked_bytes: 2_048 });
    expect(await (await post(`/orgs/${org}/override`, { action: "clear", note: "paid" })).json()).toMatchObject({ state: "ok" });
    const restored = (await receiver.events(org)).find((event) => event.type === "org.restored");
    expect(restored).toMatchObject({ parking: { parked_batches: 2, parked_bytes: 2_048, waiting_batches: 2, waiting_bytes: 2_048 } });
  });
});

describe("waiting_bytes and listings (issue 18 break: phantom waiting bytes)", () => {
  it("a parked report for batches parked before the last listing began adds nothing; a later one adds; an older listing sets nothing", async () => {
    const { addParking, NO_PARKING, waitingBytes } = await import("../../src/billing/org/parking.ts");
    let p = addParking(NO_PARKING, { parked_batches: 1, parked_bytes: 400, parked_until: 1_000 }, 1_000);
    p = addParking(p, { delivered_batches: 2, delivered_bytes: 800, listed_bytes: 0, listed_at: 1_005 }, 1_006);
    // The trailing report of a batch parked at 1_001 (the listing at 1_005 saw it): nothing waits.
    p = addParking(p, { parked_batches: 1, parked_bytes: 400, parked_until: 1_001 }, 1_010);
    expect(waitingBytes(p)).toBe(0);
    // At the listing's start exactly: it may not have been seen, so it counts (the cap errs high).
    p = addParking(p, { parked_batches: 1, parked_bytes: 100, parked_until: 1_005 }, 1_011);
    expect(waitingBytes(p)).toBe(100);
    // A slower, older listing (a cleanup that began before) does not overwrite the newer figure.
    p = addParking(p, { listed_bytes: 5_000, listed_at: 1_000 }, 1_012);
    expect({ waiting: waitingBytes(p), listed_at: p.listed_at }).toEqual({ waiting: 100, listed_at: 1_005 });
    // Reports without stamps (an older ingest Worker) move the figure as before.
    p = addParking(p, { parked_batches: 1, parked_bytes: 50 }, 1_020);
    expect(waitingBytes(p)).toBe(150);
  });
});
