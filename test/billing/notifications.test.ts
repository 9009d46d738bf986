import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { alarmOf, deleteAllAlarms, deliver, deliverNow, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { receiver } from "../support/notify.ts";
import { fakeClock } from "../support/clock.ts";

const clock = fakeClock();

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const GRACE = 3 * DAY;
const WARNING = 24 * HOUR;

afterEach(deleteAllAlarms);

const types = async (org: string) => (await receiver.events(org)).map((e) => e.type);

async function overdueNow(prefix: string): Promise<{ org: string; deadline: number }> {
  const org = uniqueOrg(prefix);
  await autumn.createCustomer(org);
  await deliver((await autumn.pastDue(org, clock.now)).webhook);
  return { org, deadline: clock.now + GRACE };
}

describe("outbound events", () => {
  it("sends one signed event per transition, named after the state entered", async () => {
    const { org, deadline } = await overdueNow("events");
    clock.set(deadline);
    await runDurableObjectAlarm(orgStub(org));
    await autumn.pay(org, clock.now);
    await deliverNow(org);
    const events = await receiver.events(org);
    expect(events.map((e) => [e.type, e.previous_state, e.state])).toEqual([
      ["org.overdue", "ok", "overdue"],
      ["org.suspension_warning", null, "overdue"],
      ["org.suspended", "overdue", "suspended"],
      ["org.restored", "suspended", "ok"],
    ]);
    expect(events[0]).toMatchObject({ org_id: org, reason: "in_grace_period", deadline: new Date(deadline).toISOString(), id: expect.stringMatching(/^evt_/) });
    expect(events[2]).toMatchObject({ suspended_at: new Date(deadline).toISOString(), deadline: null });
  });

  it("warns exactly once, SUSPENSION_WARNING before the deadline", async () => {
    const { org, deadline } = await overdueNow("warning");
    expect(await types(org)).toEqual(["org.overdue"]);
    clock.set(deadline - WARNING - 1);
    await runDurableObjectAlarm(orgStub(org));
    expect(await types(org)).toEqual(["org.overdue"]);
    expect(await alarmOf(org)).toBe(deadline - WARNING);

    clock.set(deadline - WARNING);
    await runDurableObjectAlarm(orgStub(org));
    expect(await types(org)).toEqual(["org.overdue", "org.suspension_warning"]);
    const [, warning] = await receiver.events(org);
    expect(warning).toMatchObject({ state: "overdue", deadline: new Date(deadline).toISOString() });

    clock.set(deadline - HOUR);
    await runDurableObjectAlarm(orgStub(org));
    await deliverNow(org);
    expect(await types(org)).toEqual(["org.overdue", "org.suspension_warning"]);
  });

  it("warns at once when an org turns overdue already inside the warning window", async () => {
    const org = uniqueOrg("late");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now - GRACE + HOUR)).webhook);
    expect(await types(org)).toEqual(["org.overdue", "org.suspension_warning"]);
  });

  it("warns again in a new overdue period", async () => {
    const { org } = await overdueNow("again");
    clock.set(clock.now + GRACE - WARNING);
    await runDurableObjectAlarm(orgStub(org));
    // The merchant writes the invoice off: good standing without any payment, so still never paid.
    await autumn.voidInvoices(org, clock.now);
    await deliverNow(org);
    clock.set(clock.now + DAY);
    await autumn.pastDue(org, clock.now);
    await deliverNow(org);
    clock.set(clock.now + GRACE - WARNING);
    await runDurableObjectAlarm(orgStub(org));
    expect(await types(org)).toEqual(["org.overdue", "org.suspension_warning", "org.restored", "org.overdue", "org.suspension_warning"]);
  });

  it("never warns a lapsed customer or an exempt org", async () => {
    const org = uniqueOrg("nowarn");
    await autumn.createCustomer(org);
    await autumn.addInvoice(org, { status: "paid", total: 10, created_at: clock.now - 90 * DAY });
    await deliver((await autumn.pastDue(org, clock.now - GRACE + HOUR)).webhook);
    expect(await types(org)).toEqual(["org.overdue"]);
    expect((await orgState(org)).reason).toBe("lapsed_customer");
  });

  it("keeps every event while the receiver is down and delivers them afterwards, in order, with stable ids", async () => {
    const { org, deadline } = await overdueNow("down");
    await receiver.down(org);
    clock.set(deadline);
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("suspended");
    await autumn.pay(org, clock.now);
    await deliverNow(org);
    expect(await types(org)).toEqual(["org.overdue"]);

    // Retried by the alarm with backoff while the receiver stays down.
    for (let i = 0; i < 3; i++) {
      clock.set((await alarmOf(org))!);
      await runDurableObjectAlarm(orgStub(org));
    }
    const refused = (await receiver.attempts(org)).filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThanOrEqual(4);
    expect(new Set(refused.map((a) => a.headers["webhook-id"])).size).toBe(1);

    await receiver.up(org);
    clock.set((await alarmOf(org))!);
    await runDurableObjectAlarm(orgStub(org));
    expect(await types(org)).toEqual(["org.overdue", "org.suspension_warning", "org.suspended", "org.restored"]);
    const ids = (await receiver.events(org)).map((e) => e.id);
    expect(ids[1]).toBe(refused[0]!.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(4);
  });
});
