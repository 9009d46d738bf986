import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { UsageLedger } from "../../src/billing/usage/ledger.ts";
import { UsageReporter } from "../../src/billing/usage/reporter.ts";
import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, deliver, mirrorOf, orgState, orgStub, signWebhook, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { receiver } from "../support/notify.ts";

/** USAGE_REPORT_INTERVAL in the billing tests (vitest.config.mts). */
const REPORT_INTERVAL_MS = 10_000;
const clock = fakeClock();

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

let seq = 0;
/** One queue message as the usage consumer hands it over (ids are the queue's message ids). */
const message = (counts: Record<string, number>, id = `msg_${++seq}_${Date.now()}`) => ({ id, counts, first_at: clock.now, last_at: clock.now });

async function customer(prefix: string): Promise<string> {
  const org = uniqueOrg(prefix);
  await autumn.createCustomer(org, { webhook: false });
  return org;
}

/** Moves past the aggregation window and runs the org's alarm: the reports due go to Autumn. */
async function report(org: string, ms = REPORT_INTERVAL_MS): Promise<void> {
  clock.set(clock.now + ms);
  await runDurableObjectAlarm(orgStub(org));
}

const feature = async (org: string, id: string) => (await orgState(org)).usage.features.find((f) => f.feature_id === id)!;

describe("usage metering: ledger and reports to Autumn", () => {
  it("folds each queue message once, however often it is delivered", async () => {
    const org = await customer("usage_dedupe");
    const first = message({ traces: 5, bytes: 300 });
    expect(await orgStub(org).recordUsage([first, message({ traces: 2 })])).toEqual({ ok: true, recorded: 2, duplicates: 0 });
    // The queue redelivers the first message (its consumer's ack was lost), alone and in a batch.
    expect(await orgStub(org).recordUsage([first])).toEqual({ ok: true, recorded: 0, duplicates: 1 });
    expect(await orgStub(org).recordUsage([first, message({ traces: 1 })])).toEqual({ ok: true, recorded: 1, duplicates: 1 });
    expect(await feature(org, "spans")).toMatchObject({ signals: ["traces"], received: 8, pending: 8, reported: 0, backlog: 8 });
    expect(await feature(org, "ingest_bytes")).toMatchObject({ received: 300, backlog: 300 });
  });

  it("gathers usage for the report interval, then reports it once per feature under one idempotency key", async () => {
    const org = await customer("usage_report");
    await orgStub(org).recordUsage([message({ traces: 5, logs: 3, logpush: 4, metrics: 7, bytes: 1_000 })]);
    // Not yet: the window has not passed.
    await report(org, REPORT_INTERVAL_MS - 1_000);
    expect(await autumn.usageOf(org)).toEqual({});
    await report(org, 1_000);
    const usage = await autumn.usageOf(org);
    expect(Object.fromEntries(Object.entries(usage).map(([id, u]) => [id, u.value]))).toEqual({ spans: 5, log_records: 7, data_points: 7, ingest_bytes: 1_000 });
    expect(Object.values(usage).every((u) => u.calls === 1)).toBe(true);
    const keys = (await autumn.calls(org)).filter((c) => c.path === "/v1/balances.track");
    expect(keys).toHaveLength(4);
    expect(await feature(org, "log_records")).toMatchObject({ received: 7, reported: 7, backlog: 0, reports: 1, in_flight: null, last_error: null });
  });

  it("a report that timed out after Autumn applied it is retried with the same key, refused as a duplicate, and counted once", async () => {
    const org = await customer("usage_timeout");
    await orgStub(org).recordUsage([message({ traces: 40 })]);
    // AUTUMN_TIMEOUT is 1 s in the tests: Autumn applies the track, then answers too late.
    await autumn.fault({ mode: "timeout_after_apply", delay_ms: 1_500, paths: ["/v1/balances.track"], customer_id: org });
    await report(org);
    expect((await autumn.usageOf(org)).spans).toMatchObject({ value: 40, calls: 1 });
    const stuck = await feature(org, "spans");
    expect(stuck).toMatchObject({ reported: 0, backlog: 40, in_flight: { value: 40, attempts: 1 } });
    expect(stuck.last_error).toMatch(/did not answer/);
    // Meanwhile more usage arrives: it waits for the next report, the frozen one does not grow.
    await orgStub(org).recordUsage([message({ traces: 2 })]);
    await report(org, 60_000);
    expect((await autumn.usageOf(org)).spans).toMatchObject({ value: 40, calls: 1, duplicates: 1 });
    expect(await feature(org, "spans")).toMatchObject({ reported: 40, duplicates_refused: 1, pending: 2, in_flight: null });
    await report(org);
    expect((await autumn.usageOf(org)).spans).toMatchObject({ value: 42, calls: 2 });
    expect(await feature(org, "spans")).toMatchObject({ received: 42, reported: 42, backlog: 0 });
  });

  it("while Autumn is down usage accumulates and nothing is dropped; the ledger shows the backlog", async () => {
    const org = await customer("usage_down");
    await autumn.fault({ mode: "http_503", count: 1_000, paths: ["/v1/balances.track"], customer_id: org });
    for (let i = 0; i < 4; i++) {
      await orgStub(org).recordUsage([message({ metrics: 10 })]);
      await report(org, 20 * 60_000);
    }
    expect(await autumn.usageOf(org)).toEqual({});
    const backlog = await feature(org, "data_points");
    expect(backlog).toMatchObject({ received: 40, reported: 0, backlog: 40 });
    expect(backlog.in_flight!.attempts).toBeGreaterThanOrEqual(3);
    expect(backlog.last_error).toMatch(/503/);
    await autumn.clearFaults();
    await report(org, 20 * 60_000);
    await report(org, 20 * 60_000);
    expect((await autumn.usageOf(org)).data_points!.value).toBe(40);
    expect(await feature(org, "data_points")).toMatchObject({ received: 40, reported: 40, backlog: 0, last_error: null });
  });

  it("an org unknown to Autumn keeps its usage, retried after the resync interval, not every few seconds", async () => {
    const org = uniqueOrg("usage_unknown");
    await orgStub(org).recordUsage([message({ traces: 3 })]);
    await report(org);
    const kept = await feature(org, "spans");
    expect(kept).toMatchObject({ backlog: 3, in_flight: { value: 3, attempts: 1 } });
    expect(kept.last_error).toMatch(/404 customer_not_found/);
    expect(Date.parse(kept.in_flight!.next_attempt_at!) - clock.now).toBe(6 * 3_600_000);
  });

  it("with Autumn not configured, a due report waits like a refused one instead of re-arming the alarm at once", async () => {
    const org = uniqueOrg("usage_unconfigured");
    await orgStub(org).recordUsage([message({ traces: 4 })]);
    clock.set(clock.now + REPORT_INTERVAL_MS);
    const next = await runInDurableObject(orgStub(org), async (_instance, state) => {
      const ledger = new UsageLedger(state.storage.sql);
      const reporter = new UsageReporter(ledger, (change) => state.storage.transactionSync(change));
      await reporter.flush(org, { kind: "not_configured", message: "AUTUMN_SECRET_KEY is not set" }, { intervalMs: REPORT_INTERVAL_MS, refusedRetryMs: 3_600_000 });
      return { due: ledger.due(org, Date.now()), dueAt: ledger.dueAt(REPORT_INTERVAL_MS), rows: ledger.rows() };
    });
    expect(next.due).toEqual([]);
    expect(next.dueAt).toBe(clock.now + 3_600_000);
    expect(next.rows[0]).toMatchObject({ feature_id: "spans", report_value: 4, report_attempts: 1, last_error: "AUTUMN_SECRET_KEY is not set" });
  });

  it("refuses malformed messages and changes nothing", async () => {
    const org = await customer("usage_bad");
    expect(await orgStub(org).recordUsage([{ id: "", counts: { traces: 1 }, first_at: 0, last_at: 0 }])).toMatchObject({ ok: false, error: expect.stringMatching(/malformed/) });
    expect(await orgStub(org).recordUsage([{ id: "m", counts: { traces: -1 }, first_at: 0, last_at: 0 }])).toMatchObject({ ok: false, error: expect.stringMatching(/malformed/) });
    expect((await orgState(org)).usage.features.every((f) => f.received === 0)).toBe(true);
  });
});

describe("plan limits: reached, refused at the edge, reset, upgrade", () => {
  it("a report that uses up the allowance makes the object read Autumn, limit the feature, mirror it, and tell", async () => {
    const org = await customer("limit_report");
    const resetAt = clock.now + 3 * 86_400_000;
    await autumn.setAllowance(org, "spans", { granted: 100, next_reset_at: resetAt });
    await orgStub(org).recordUsage([message({ traces: 100 })]);
    await report(org);
    expect(await mirrorOf(org)).toMatchObject({ state: "ok", limits: [{ feature_id: "spans", signals: ["traces"], reset_at: resetAt }] });
    const view = await orgState(org);
    expect(view.usage.features.find((f) => f.feature_id === "spans")).toMatchObject({ balance: { granted: 100, usage: 100, remaining: 0 }, limit: { reset_at: new Date(resetAt).toISOString(), in_force: true } });
    expect(view.history[0]).toMatchObject({ kind: "limit_reached", source: "metering", limit: { feature_id: "spans", reset_at: new Date(resetAt).toISOString(), usage: 100, granted: 100 } });
    const events = await receiver.events(org);
    expect(events.map((e) => e.type)).toEqual(["org.limit_reached"]);
    expect(events[0]!.limit).toEqual({ feature_id: "spans", signals: ["traces"], reset_at: new Date(resetAt).toISOString(), usage: 100, granted: 100 });
  });

  it("Autumn's balances.limit_reached webhook limits the feature; an upgrade (billing.updated) lifts it", async () => {
    const org = await customer("limit_webhook");
    await autumn.setAllowance(org, "log_records", { granted: 10, next_reset_at: null });
    // Someone else's track used it up (Autumn sends the webhook on the crossing).
    expect((await autumn.track(org, "log_records", { value: 10 })).status).toBe(200);
    const [limitReached] = await autumn.webhooks({ type: "balances.limit_reached", customer_id: org });
    expect((await deliver({ headers: limitReached!.headers, body: limitReached!.body })).status).toBe(200);
    expect((await mirrorOf(org))!.limits).toEqual([{ feature_id: "log_records", signals: ["logs", "logpush"], reset_at: null }]);
    // The customer upgrades: more allowance, and Autumn says billing.updated.
    const upgrade = await autumn.setAllowance(org, "log_records", { granted: 1_000 }, { billingUpdated: true, webhook: false });
    expect((await deliver({ headers: upgrade.webhook!.headers, body: upgrade.webhook!.body })).status).toBe(200);
    expect((await mirrorOf(org))!.limits).toEqual([]);
    const view = await orgState(org);
    expect(view.history.slice(0, 2).map((h) => h.kind)).toEqual(["limit_cleared", "limit_reached"]);
    expect((await receiver.events(org)).map((e) => e.type)).toEqual(["org.limit_reached", "org.limit_cleared"]);
  });

  it("the object reads Autumn at the reset, and the limit goes when the balance has room again", async () => {
    const org = await customer("limit_reset");
    const resetAt = clock.now + 60_000;
    await autumn.setAllowance(org, "spans", { granted: 5, next_reset_at: resetAt });
    await autumn.track(org, "spans", { value: 5 });
    const [hook] = await autumn.webhooks({ type: "balances.limit_reached", customer_id: org });
    await deliver({ headers: hook!.headers, body: hook!.body });
    expect((await mirrorOf(org))!.limits).toHaveLength(1);
    // The period rolls over in Autumn; the object's alarm owes a read at the reset time.
    await autumn.resetBalance(org, "spans");
    clock.set(resetAt);
    await runDurableObjectAlarm(orgStub(org));
    expect((await mirrorOf(org))!.limits).toEqual([]);
    expect((await orgState(org)).history[0]).toMatchObject({ kind: "limit_cleared", source: "alarm" });
  });

  it("unlimited and overage-allowed balances are never limited, however much is used", async () => {
    const org = await customer("limit_never");
    await autumn.setAllowance(org, "spans", { granted: 1, overage_allowed: true });
    await autumn.setAllowance(org, "data_points", { unlimited: true });
    await orgStub(org).recordUsage([message({ traces: 50, metrics: 50 })]);
    await report(org);
    expect((await autumn.usageOf(org)).spans!.value).toBe(50);
    expect(await deliver(signWebhook({ type: "balances.limit_reached", data: { customer_id: org, feature_id: "spans", limit_type: "included" } }))).toHaveProperty("status", 200);
    expect((await orgState(org)).usage.features.every((f) => f.limit === null)).toBe(true);
    expect(await mirrorOf(org)).toBeNull();
  });
});
