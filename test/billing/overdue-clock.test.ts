import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { alarmOf, deleteAllAlarms, deliver, deliverNow, MIN_NOTICE_MS, orgState, orgStub, signWebhook, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";

const clock = fakeClock();

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const DAY = 86_400_000;
const GRACE = 3 * DAY;
const iso = (ms: number) => new Date(ms).toISOString();

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

describe("a safe overdue clock", () => {
  it("an add-on's old open invoice never starts the clock", async () => {
    const org = uniqueOrg("addon_old");
    await autumn.createCustomer(org);
    await autumn.addOnWithOpenInvoice(org, { plan_id: "extra_seats", created_at: clock.now - 20 * DAY });
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "in_grace_period", anchor: iso(clock.now), suspend_at: iso(clock.now + GRACE) });
  });

  it("a net-terms invoice open for weeks gets the minimum notice, not a suspension on sight", async () => {
    const org = uniqueOrg("net_terms");
    await autumn.createCustomer(org);
    await autumn.netTermsInvoice(org, { created_at: clock.now - 20 * DAY });
    await deliver((await autumn.pastDue(org, { invoice: false })).webhook);
    const seen = clock.now;
    const state = await orgState(org);
    expect(state).toMatchObject({
      state: "overdue",
      reason: "in_grace_period",
      anchor: iso(seen - 20 * DAY),
      noticed_at: iso(seen),
      suspend_at: iso(seen + MIN_NOTICE_MS),
      deadline_terms: { grace_ends_at: iso(seen - 20 * DAY + GRACE), notice_ends_at: iso(seen + MIN_NOTICE_MS) },
    });
    expect(state.history.map((h) => `${h.from}->${h.to}`)).toEqual(["ok->overdue"]);
  });

  it("suspends exactly when the minimum notice ends, not 1 ms before", async () => {
    const org = uniqueOrg("notice");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now - 10 * DAY)).webhook);
    const deadline = clock.now + MIN_NOTICE_MS;
    clock.set(deadline - 1);
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("overdue");
    expect(await alarmOf(org)).toBe(deadline);
    clock.set(deadline);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: iso(deadline) });
  });
});

describe("reads after a webhook", () => {
  async function suspended(): Promise<string> {
    const org = uniqueOrg("followup");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("suspended");
    return org;
  }

  it("a payment Autumn shows a little after its webhook lifts the suspension within minutes", async () => {
    const org = await suspended();
    // The payment webhook arrives while Autumn still shows the plan past due.
    expect(await (await deliverNow(org)).json()).toMatchObject({ state: "suspended" });
    const webhookAt = clock.now;
    expect(await orgState(org)).toMatchObject({ follow_up_at: iso(webhookAt + MINUTE) });
    expect(await alarmOf(org)).toBe(webhookAt + MINUTE);
    await autumn.pay(org, { webhook: false });
    clock.set(webhookAt + MINUTE);
    await runDurableObjectAlarm(orgStub(org));
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "ok", follow_up_at: null });
    expect(state.history[0]).toMatchObject({ from: "suspended", to: "ok", source: "alarm" });
  });

  it("routes invoice.finalized to the org, and acknowledges one without a customer", async () => {
    const org = uniqueOrg("finalized");
    await autumn.createCustomer(org);
    await autumn.pastDue(org, { webhook: false });
    const { webhook } = await autumn.invoiceFinalized(org);
    expect(JSON.parse(webhook.body)).toMatchObject({ type: "invoice.finalized", data: { customer_id: org } });
    expect(await (await deliver(webhook)).json()).toMatchObject({ status: "processed", org_id: org, state: "overdue" });

    const orphan = signWebhook({ type: "invoice.finalized", data: { customer_id: null, stripe_id: "in_x" } });
    expect(await (await deliver(orphan)).json()).toMatchObject({ status: "ignored", type: "invoice.finalized" });
  });
});

describe("retries", () => {
  it("honours Retry-After only up to 15 minutes", async () => {
    const org = uniqueOrg("retry_day");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    clock.set(clock.now + GRACE - 1);
    await autumn.fault({ mode: "http_429", retry_after: 86_400, count: 1, customer_id: org });
    await runDurableObjectAlarm(orgStub(org));
    expect(await alarmOf(org)).toBe(clock.now + 1);
    clock.set(clock.now + 1);
    await autumn.fault({ mode: "http_503", retry_after: 86_400, count: 1, customer_id: org });
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "overdue", consecutive_failures: 2 });
    expect(await alarmOf(org)).toBe(clock.now + 15 * MINUTE);
  });

  it("while a suspension waits only for Autumn, retries at least once a minute", async () => {
    const org = uniqueOrg("awaiting");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    clock.set(clock.now + GRACE);
    await autumn.fault({ mode: "http_500", count: 8, customer_id: org });
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      await runDurableObjectAlarm(orgStub(org));
      const next = (await alarmOf(org))!;
      delays.push(next - clock.now);
      clock.set(next);
    }
    expect(delays).toEqual([5, 10, 20, 40, 60, 60, 60, 60].map((s) => s * SECOND));
    expect((await orgState(org)).reason).toBe("grace_elapsed_awaiting_autumn");
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("suspended");
  });
});

describe("notifications turned off with events queued", () => {
  it("keeps the events and owes no alarm for them, so the alarm cannot spin", async () => {
    const org = uniqueOrg("spin");
    await autumn.createCustomer(org);
    // The receiver refuses: org.overdue (and its warning) wait in the outbox.
    const bindings = env as unknown as Record<string, string>;
    const url = bindings.NOTIFY_URL!;
    bindings.NOTIFY_URL = "http://127.0.0.1:9/refused";
    try {
      await deliver((await autumn.pastDue(org, clock.now)).webhook);
      expect((await alarmOf(org))! - clock.now).toBeLessThanOrEqual(5 * SECOND);
      // The operator turns notifications off: the due delivery no longer sets the alarm.
      bindings.NOTIFY_URL = "";
      clock.set(clock.now + 10 * SECOND);
      let runs = 0;
      while (runs < 20 && (await alarmOf(org))! <= clock.now) {
        await runDurableObjectAlarm(orgStub(org));
        runs++;
      }
      expect(runs).toBeLessThanOrEqual(1);
      expect(await alarmOf(org)).toBe(clock.now - 10 * SECOND + MINUTE);
    } finally {
      bindings.NOTIFY_URL = url;
    }
  });
});
