import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, deliver, deliverNow, MIN_NOTICE_MS, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { receiver } from "../support/notify.ts";

const clock = fakeClock();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const GRACE = 3 * DAY;

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

const types = async (org: string) => (await receiver.events(org)).map((e) => e.type);

/**
 * Promise 1 (README "Promises"): no org is suspended by the policy before the deadline in force has been
 * published for MIN_NOTICE, and, where SUSPENSION_WARNING fits, warned about.
 * Found by a reviewer: before the fix, a later read finding an older overdue invoice moved the anchor
 * earlier but kept notice_from, so the deadline in force jumped to now: the org was suspended at once,
 * before the deadline it was told, never warned.
 */
describe("promise 1: a deadline moved earlier by an older invoice found later", () => {
  it("is not enforced before it has been published for MIN_NOTICE, and is warned before suspension", async () => {
    const org = uniqueOrg("earlier");
    const T0 = clock.now;
    await autumn.createCustomer(org);
    expect((await deliver((await autumn.pastDue(org, T0)).webhook)).status).toBe(200);
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "in_grace_period", suspend_at: new Date(T0 + GRACE).toISOString() });
    // Published: suspension at T0 + 3 d. The warning would be due at T0 + 2 d.
    const published = T0 + GRACE;

    clock.set(T0 + DAY);
    // A second base plan's net-terms invoice, open since T0 - 20 d, is now overdue.
    await autumn.addSubscription(org, { plan_id: "team", add_on: false, past_due: true, invoice: { status: "open", total: 99, created_at: T0 - 20 * DAY } });
    // Its billing.updated, signed now.
    expect((await deliverNow(org)).status).toBe(200);

    const view = await orgState(org);
    const events = await types(org);
    // Either still overdue with a deadline at least MIN_NOTICE away from its publication, or suspended
    // no sooner than the deadline published before and after a warning.
    expect({ state: view.state, events }).toEqual({ state: "overdue", events: expect.any(Array) });
    expect(Date.parse(view.suspend_at!)).toBeGreaterThanOrEqual(Math.min(published, clock.now + MIN_NOTICE_MS));
  });

  it("never suspends without the warning when SUSPENSION_WARNING fits in the notice", async () => {
    const org = uniqueOrg("nowarn_earlier");
    const T0 = clock.now;
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, T0)).webhook);
    clock.set(T0 + DAY);
    await autumn.addSubscription(org, { plan_id: "team", add_on: false, past_due: true, invoice: { status: "open", total: 99, created_at: T0 - 20 * DAY } });
    expect((await deliverNow(org)).status).toBe(200);
    await runDurableObjectAlarm(orgStub(org));
    clock.set(T0 + GRACE + DAY);
    await runDurableObjectAlarm(orgStub(org));
    const events = await types(org);
    expect(events).toContain("org.suspended");
    // A day of notice (the org was first seen at T0) leaves room for the 24 h warning before any suspension.
    expect(events.slice(0, events.indexOf("org.suspended"))).toContain("org.suspension_warning");
  });
});
