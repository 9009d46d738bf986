import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import { autumn, SLOW_AUTUMN_MS } from "../support/autumn.ts";
import type { OrgBilling } from "../../src/billing/org/object.ts";
import { admin, alarmOf, deleteAllAlarms, deliver, deliverNow, MIN_NOTICE_MS, mirrorOf, orgState, orgStub, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { receiver } from "../support/notify.ts";

const clock = fakeClock();

const SECOND = 1_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const GRACE = 3 * DAY;

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

/** A customer that signed up, never paid, and just went past due (webhook delivered). */
async function overdueOrg(prefix = "never_paid"): Promise<string> {
  const org = uniqueOrg(prefix);
  await autumn.createCustomer(org);
  const { webhook } = await autumn.pastDue(org, clock.now);
  expect((await deliver(webhook)).status).toBe(200);
  return org;
}

describe("a past-due org that never paid", () => {
  it("turns overdue on the webhook, with history and a mirror entry", async () => {
    const org = await overdueOrg();
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "overdue", reason: "in_grace_period", anchor: new Date(clock.now).toISOString(), suspend_at: new Date(clock.now + GRACE).toISOString() });
    expect(state.history).toHaveLength(1);
    expect(state.history[0]).toMatchObject({ kind: "transition", from: "ok", to: "overdue", source: "webhook", message_id: expect.stringMatching(/^msg_/) });
    expect(await mirrorOf(org)).toEqual({ state: "overdue", since: clock.now, version: expect.any(Number), suspend_at: clock.now + GRACE, suspended_at: null, pay_url: expect.stringMatching(/^https:\/\//), limits: [], enforcement: null, reason: "in_grace_period" });
    // The first follow-up read after the webhook (1 min) comes before the resync (6 h) and the deadline (3 d).
    expect(await alarmOf(org)).toBe(clock.now + 60 * SECOND);
  });

  it("is suspended by the alarm exactly at the deadline, after a fresh Autumn read", async () => {
    const org = await overdueOrg();
    const start = clock.now;
    clock.set(start + GRACE - 1);
    expect(await runDurableObjectAlarm(orgStub(org))).toBe(true);
    expect((await orgState(org)).state).toBe("overdue");
    expect(await alarmOf(org)).toBe(start + GRACE);

    const readsBefore = (await autumn.calls(org)).length;
    clock.set(start + GRACE);
    expect(await runDurableObjectAlarm(orgStub(org))).toBe(true);
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: new Date(start + GRACE).toISOString() });
    expect(state.history[0]).toMatchObject({ from: "overdue", to: "suspended", source: "alarm" });
    expect((await autumn.calls(org)).length).toBeGreaterThan(readsBefore);
    expect(await mirrorOf(org)).toMatchObject({ state: "suspended", suspended_at: start + GRACE });
  });

  it("gets ingestion back on the payment webhook", async () => {
    const org = await overdueOrg();
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("suspended");

    await autumn.pay(org, clock.now);
    expect(await (await deliverNow(org)).json()).toMatchObject({ status: "processed", org_id: org, state: "ok" });
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "ok", reason: "not_past_due", anchor: null, suspended_at: null });
    expect(state.history.map((h) => `${h.from}->${h.to}`)).toEqual(["suspended->ok", "overdue->suspended", "ok->overdue"]);
    expect(await mirrorOf(org)).toMatchObject({ state: "ok", suspended_at: null });
    expect(await alarmOf(org)).toBeNull();
  });
});

describe("who is never suspended", () => {
  it("a lapsed customer who paid money before stays overdue with no deadline", async () => {
    const org = uniqueOrg("lapsed");
    await autumn.createCustomer(org);
    await autumn.addInvoice(org, { status: "paid", total: 49, created_at: clock.now - 60 * DAY });
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    clock.set(clock.now + 10 * GRACE);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "lapsed_customer", lapsed_customer: true, suspend_at: null });
  });

  it("an org whose paid invoice is older than the 10 recent unpaid ones", async () => {
    const org = uniqueOrg("old_payer");
    await autumn.createCustomer(org);
    await autumn.addInvoice(org, { status: "paid", total: 29.99, created_at: clock.now - 400 * DAY });
    for (let i = 1; i <= 10; i++) await autumn.addInvoice(org, { status: "uncollectible", total: 29.99, created_at: clock.now - i * DAY });
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "overdue", reason: "lapsed_customer", evidence: { paid_checked: "invoices_list" } });
    expect((await autumn.calls(org)).map((c) => c.path)).toContain("/v1/invoices.list");
  });

  it("but a $0 trial invoice does not count as payment", async () => {
    const org = uniqueOrg("trial");
    await autumn.createCustomer(org);
    await autumn.trialInvoice(org, clock.now - 20 * DAY);
    await deliver((await autumn.pastDue(org, clock.now - GRACE)).webhook);
    await sitOutMinimumNotice(org, clock);
    expect(await orgState(org)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid" });
  });

  it("an org whose only past-due subscription is an add-on", async () => {
    const org = uniqueOrg("addon");
    await autumn.createCustomer(org);
    await deliver((await autumn.addSubscription(org, { plan_id: "extra_seats", add_on: true, past_due: true })).webhook);
    expect(await orgState(org)).toMatchObject({ state: "ok", reason: "not_past_due" });
    expect(await mirrorOf(org)).toBeNull();
  });
});

describe("while not ok, the object resyncs on its own", () => {
  it("reads Autumn again after RESYNC_INTERVAL and restores an org whose payment webhook was lost", async () => {
    const org = await overdueOrg();
    const webhookAt = clock.now;
    // The follow-up reads after the webhook (1, 5 and 15 min) find it still past due; then only the resync is left.
    for (const minutes of [1, 5, 15]) {
      expect(await alarmOf(org)).toBe(webhookAt + minutes * 60 * SECOND);
      clock.set(webhookAt + minutes * 60 * SECOND);
      await runDurableObjectAlarm(orgStub(org));
    }
    expect((await orgState(org)).follow_up_at).toBeNull();
    await autumn.pay(org, clock.now); // the webhook is never delivered
    clock.set(clock.now + 6 * HOUR);
    expect(await alarmOf(org)).toBe(clock.now);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "ok" });
  });

  it("an expired subscription drops out and the org returns to ok", async () => {
    const org = await overdueOrg();
    await deliver((await autumn.expire(org, clock.now)).webhook);
    expect((await orgState(org)).state).toBe("ok");
  });
});

describe("Autumn faults never cause a wrong transition", () => {
  it.each([
    ["500", { mode: "http_500" as const }],
    ["503", { mode: "http_503" as const, retry_after: 7 }],
    ["429 with Retry-After", { mode: "http_429" as const, retry_after: 120 }],
    ["invalid JSON", { mode: "invalid_json" as const }],
    ["an unknown 404", { mode: "http_404_unknown_code" as const }],
    ["a timeout", { mode: "slow" as const, delay_ms: SLOW_AUTUMN_MS }],
  ])("%s at the deadline keeps the org overdue and retries through the alarm", async (_name, fault) => {
    const org = await overdueOrg();
    const deadline = clock.now + GRACE;
    clock.set(deadline);
    await autumn.fault({ ...fault, count: 1, customer_id: org });
    await runDurableObjectAlarm(orgStub(org));
    const failed = await orgState(org);
    expect(failed).toMatchObject({ state: "overdue", consecutive_failures: 1, last_sync: { ok: false } });
    const retryAt = await alarmOf(org);
    const retryAfter = "retry_after" in fault ? fault.retry_after * SECOND : 0;
    expect(retryAt).toBe(deadline + Math.max(5 * SECOND, retryAfter));

    clock.set(retryAt!);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "suspended", consecutive_failures: 0, last_sync: { ok: true } });
  });

  it("a failing Autumn on a payment webhook keeps the suspension until a read succeeds", async () => {
    const org = await overdueOrg();
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    await autumn.fault({ mode: "http_500", count: 1, customer_id: org });
    await autumn.pay(org, clock.now);
    const response = await deliverNow(org);
    expect(response.status).toBe(200);
    expect((await orgState(org)).state).toBe("suspended");
    clock.set(clock.now + 5 * SECOND);
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("ok");
  });

  it("backs off exponentially while Autumn keeps failing", async () => {
    const org = await overdueOrg();
    await autumn.fault({ mode: "http_500", count: 4, customer_id: org });
    const delays: number[] = [];
    await admin(`/orgs/${org}/resync`, { method: "POST" });
    for (let i = 0; i < 3; i++) {
      const at = (await alarmOf(org))!;
      delays.push(at - clock.now);
      clock.set(at);
      await runDurableObjectAlarm(orgStub(org));
    }
    expect(delays).toEqual([5 * SECOND, 10 * SECOND, 20 * SECOND]);
    expect((await orgState(org)).consecutive_failures).toBe(4);
  });

  it("an unknown customer (404 customer_not_found) is flagged, not read as paid: the state is kept, no backoff retry", async () => {
    const org = uniqueOrg("unknown");
    const response = await admin(`/orgs/${org}/resync`, { method: "POST" });
    expect(await response.json()).toMatchObject({ state: "ok", autumn_customer_unknown: true, evidence: null, consecutive_failures: 0, next_check_at: null, history: [] });
  });
});

describe("webhook delivery semantics", () => {
  it("acknowledges a redelivered message id without processing it again", async () => {
    const org = uniqueOrg("dup");
    await autumn.createCustomer(org);
    const { webhook } = await autumn.pastDue(org, clock.now);
    expect(await (await deliver(webhook)).json()).toMatchObject({ status: "processed" });
    const reads = (await autumn.calls(org)).length;
    const again = await deliver(webhook);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: "duplicate", state: "overdue" });
    expect((await autumn.calls(org)).length).toBe(reads);
  });

  it("does not trust delivery order: a stale past-due event after the payment leaves the org ok", async () => {
    const org = uniqueOrg("order");
    await autumn.createCustomer(org);
    const pastDue = (await autumn.pastDue(org, clock.now)).webhook;
    const paid = (await autumn.pay(org, clock.now)).webhook;
    await deliver(paid);
    await deliver(pastDue);
    const state = await orgState(org);
    expect(state.state).toBe("ok");
    expect(state.history).toHaveLength(0);
  });

  it("handles concurrent webhooks for one org with a single transition", async () => {
    const org = uniqueOrg("burst");
    await autumn.createCustomer(org);
    await autumn.pastDue(org, clock.now);
    const webhooks = await Promise.all(Array.from({ length: 8 }, () => autumn.addInvoice(org, { status: "void", total: 1, created_at: clock.now })));
    const responses = await Promise.all(webhooks.map(({ webhook }) => deliver(webhook)));
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(200));
    const state = await orgState(org);
    expect(state.state).toBe("overdue");
    expect(state.history).toHaveLength(1);
    // Coalesced: far fewer reads than webhooks.
    expect((await autumn.calls(org)).filter((c) => c.path === "/v1/customers.get").length).toBeLessThan(8);
  });
});

describe("the KV mirror", () => {
  it("is repaired by the alarm after a failed write, and never goes backwards", async () => {
    const org = uniqueOrg("mirror");
    await autumn.createCustomer(org);
    await runInDurableObject(orgStub(org), (instance) => {
      const kv = (instance as unknown as { env: BillingEnv }).env.BILLING_STATE;
      vi.spyOn(kv, "put").mockRejectedValueOnce(new Error("KV unavailable"));
    });
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "overdue", mirror: { in_sync: false } });
    expect(await mirrorOf(org)).toBeNull();
    expect(await alarmOf(org)).toBe(clock.now + 5 * SECOND);

    clock.set(clock.now + 5 * SECOND);
    await runDurableObjectAlarm(orgStub(org));
    expect(await mirrorOf(org)).toMatchObject({ state: "overdue", version: expect.any(Number) });
    expect((await orgState(org)).mirror.in_sync).toBe(true);
  });

  it("is rewritten by an operator's resync, replacing a wrong entry", async () => {
    const org = await overdueOrg("rewrite");
    await env.BILLING_STATE.put(billingStateKey(org), JSON.stringify({ state: "suspended", since: 0, version: 999, suspend_at: null, suspended_at: 0 }));
    await admin(`/orgs/${org}/resync`, { method: "POST" });
    expect(await mirrorOf(org)).toMatchObject({ state: "overdue", since: clock.now, suspend_at: clock.now + GRACE });
  });
});

describe("the minimum notice holds when an exemption ends (issue 18, defect 2)", () => {
  const MINUTE = 60 * SECOND;
  const override = (org: string, body: unknown) => admin(`/orgs/${org}/override`, { method: "POST", body: JSON.stringify(body) });
  /** The deliveries queue as the object sees it, recorded. */
  async function recordDeliveries(org: string): Promise<unknown[]> {
    const sent: unknown[] = [];
    await runInDurableObject(orgStub(org), (instance: OrgBilling) => {
      const bound = (instance as unknown as { env: BillingEnv }).env;
      Object.defineProperty(instance, "env", { value: { ...bound, DELIVERIES: { send: async (body: unknown) => void sent.push(body) } } });
    });
    return sent;
  }

  it("a suspended org exempted for less than MIN_NOTICE is told the deadline, warned, restored, and suspended only MIN_NOTICE after the exemption began", async () => {
    const org = await overdueOrg("exempt_short");
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("suspended");
    const sent = await recordDeliveries(org);

    const exemptAt = clock.now;
    const deadline = exemptAt + MIN_NOTICE_MS;
    expect((await override(org, { action: "exempt", until: new Date(exemptAt + 30 * MINUTE).toISOString(), note: "ticket 7" })).status).toBe(200);
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "exempt", suspend_at: new Date(deadline).toISOString() });
    // Published while exempt, so accepted exports carry the partial-success warning.
    expect(await mirrorOf(org)).toMatchObject({ state: "overdue", suspend_at: deadline });
    // Leaving suspended (for overdue) sends the parked batches and says ingestion is back.
    expect(sent).toEqual([{ org_id: org }]);

    clock.set(exemptAt + 30 * MINUTE);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "in_grace_period", suspend_at: new Date(deadline).toISOString() });
    expect(await mirrorOf(org)).toMatchObject({ state: "overdue", suspend_at: deadline });

    clock.set(deadline - 1);
    await runDurableObjectAlarm(orgStub(org));
    expect((await orgState(org)).state).toBe("overdue");
    clock.set(deadline);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "suspended", suspended_at: new Date(deadline).toISOString() });

    const events = await receiver.events(org);
    expect(events.map((e) => [e.type, e.previous_state, e.state])).toEqual([
      ["org.overdue", "ok", "overdue"],
      ["org.suspension_warning", null, "overdue"],
      ["org.suspended", "overdue", "suspended"],
      ["org.restored", "suspended", "overdue"],
      ["org.suspension_warning", null, "overdue"],
      ["org.suspended", "overdue", "suspended"],
    ]);
    expect(events[3]).toMatchObject({ reason: "exempt", deadline: new Date(deadline).toISOString() });
    expect(events[4]).toMatchObject({ deadline: new Date(deadline).toISOString() });
  });

  it("unsuspend lifts a suspension for one grace period: the parked batches go, org.restored goes, and the deadline is the exemption's end", async () => {
    const org = await overdueOrg("unsuspend");
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    const sent = await recordDeliveries(org);
    const at = clock.now;
    await override(org, { action: "unsuspend", note: "ticket 8" });
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "exempt", suspend_at: new Date(at + GRACE).toISOString() });
    expect(await mirrorOf(org)).toMatchObject({ state: "overdue", suspend_at: at + GRACE });
    expect(sent).toEqual([{ org_id: org }]);
    expect((await receiver.events(org)).map((e) => e.type).at(-1)).toBe("org.restored");
  });

  it("an exemption without end cleared: the notice starts when it is cleared", async () => {
    const org = await overdueOrg("exempt_open");
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    await override(org, { action: "exempt", note: "ticket 9" });
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "exempt", suspend_at: null });
    expect((await mirrorOf(org))?.suspend_at).toBeNull();
    clock.set(clock.now + 10 * DAY);
    const clearedAt = clock.now;
    await override(org, { action: "clear", note: "ticket 9 closed" });
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "in_grace_period", suspend_at: new Date(clearedAt + MIN_NOTICE_MS).toISOString() });
    expect(await alarmOf(org)).toBeLessThanOrEqual(clearedAt + MIN_NOTICE_MS);
  });
});
