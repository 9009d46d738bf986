import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { OrgStore } from "../../src/billing/org/store.ts";
import { USAGE_TABLES, UsageLedger } from "../../src/billing/usage/ledger.ts";
import { MAX_STREAM_GAPS, USAGE_STREAM_WINDOW_MS } from "../../src/billing/usage/stream-marks.ts";
import { ACTIVITY_TABLES } from "../../src/billing/usage/activity.ts";
import { EVENT_TABLES } from "../../src/billing/org/events.ts";
import { UsageReporter } from "../../src/billing/usage/reporter.ts";
import { afterEach, describe, expect, it } from "vitest";
import { autumn, SLOW_AUTUMN_MS } from "../support/autumn.ts";
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
    // AUTUMN_TIMEOUT is 1 s in the tests: Autumn applies the track, then answers far too late (a starved runtime still times out first).
    await autumn.fault({ mode: "timeout_after_apply", delay_ms: SLOW_AUTUMN_MS, paths: ["/v1/balances.track"], customer_id: org });
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

describe("usage metering: each isolate's batch folded exactly once, in storage bounded by streams", () => {
  /** One batch as an isolate's batcher sends it: its stream and sequence, under a queue message id of its own. */
  const batch = (stream: string, seq: number, counts: Record<string, number>, id = `q_${++seq_}_${stream}_${seq}`) => ({ id, stream, seq, counts, first_at: clock.now, last_at: clock.now });
  let seq_ = 0;
  const tables = (org: string) =>
    runInDurableObject(orgStub(org), async (_instance, state) => ({
      seen: state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM usage_seen").one().n,
      streams: state.storage.sql.exec<{ stream: string; high: number; gaps: string }>("SELECT stream, high, gaps FROM usage_streams ORDER BY stream").toArray(),
    }));

  it("a batch sent twice (a send retried after the queue took it) arrives under two queue message ids and is folded once", async () => {
    const org = await customer("usage_resend");
    expect(await orgStub(org).recordUsage([batch("iso_a", 1, { traces: 5 }, "queue_id_1")])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    expect(await orgStub(org).recordUsage([batch("iso_a", 1, { traces: 5 }, "queue_id_2")])).toEqual({ ok: true, recorded: 0, duplicates: 1 });
    expect(await feature(org, "spans")).toMatchObject({ received: 5 });
  });

  it("out of order, duplicated and retried deliveries of several isolates fold each batch exactly once, with one row per isolate and none per message", async () => {
    const org = await customer("usage_order");
    // Two isolates, 1..60 each, each batch counting seq spans: delivered shuffled, a third of them twice, some in the same call.
    let state = 7;
    const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const deliveries = ["iso_a", "iso_b"].flatMap((stream) => Array.from({ length: 60 }, (_, i) => batch(stream, i + 1, { traces: i + 1 })));
    const redeliveries = deliveries.filter((_, i) => i % 3 === 0).map((d) => ({ ...d, id: `${d.id}_again` }));
    const all = [...deliveries, ...redeliveries].sort(() => random() - 0.5);
    let recorded = 0;
    let duplicates = 0;
    for (let i = 0; i < all.length; i += 7) {
      const answer = await orgStub(org).recordUsage(all.slice(i, i + 7));
      if (!answer.ok) throw new Error(answer.error);
      recorded += answer.recorded;
      duplicates += answer.duplicates;
    }
    expect({ recorded, duplicates }).toEqual({ recorded: 120, duplicates: 40 });
    expect(await feature(org, "spans")).toMatchObject({ received: 2 * ((60 * 61) / 2) });
    // Every redelivery now is a duplicate, whatever its queue id.
    expect(await orgStub(org).recordUsage(deliveries.slice(0, 5).map((d) => ({ ...d, id: `${d.id}_late` })))).toEqual({ ok: true, recorded: 0, duplicates: 5 });
    const { seen, streams } = await tables(org);
    expect(seen).toBe(0);
    expect(streams).toEqual([{ stream: "iso_a", high: 60, gaps: "[]" }, { stream: "iso_b", high: 60, gaps: "[]" }]);
  });

  it("a late batch below the high-water mark is counted (a gap), and only once", async () => {
    const org = await customer("usage_gap");
    await orgStub(org).recordUsage([batch("iso_g", 1, { logs: 1 }), batch("iso_g", 4, { logs: 4 })]);
    expect(JSON.parse((await tables(org)).streams[0]!.gaps).map(([lo, hi]: number[]) => [lo, hi])).toEqual([[2, 3]]);
    expect(await orgStub(org).recordUsage([batch("iso_g", 3, { logs: 3 })])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    expect(await orgStub(org).recordUsage([batch("iso_g", 3, { logs: 3 }), batch("iso_g", 2, { logs: 2 }), batch("iso_g", 2, { logs: 2 })])).toEqual({ ok: true, recorded: 1, duplicates: 2 });
    expect(await feature(org, "log_records")).toMatchObject({ received: 10 });
    expect((await tables(org)).streams).toEqual([{ stream: "iso_g", high: 4, gaps: "[]" }]);
  });

  it("past the window (the queue's retention) a gap is given up and a silent stream's row is dropped; a stream seen again starts over exactly", async () => {
    const org = await customer("usage_window");
    const start = clock.now;
    await orgStub(org).recordUsage([batch("iso_w", 1, { metrics: 1 }), batch("iso_w", 3, { metrics: 3 }), batch("iso_x", 1, { metrics: 10 })]);
    // Just inside the window the gap is still owed: seq 2 is counted.
    clock.set(start + USAGE_STREAM_WINDOW_MS);
    await orgStub(org).recordUsage([batch("iso_x", 2, { metrics: 20 })]);
    expect((await tables(org)).streams.map((s) => s.stream)).toEqual(["iso_w", "iso_x"]);
    expect(await orgStub(org).recordUsage([batch("iso_w", 2, { metrics: 2 })])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    // iso_w's row goes once nothing of it was folded for the whole window: no queue can still hold a batch of it at or below its mark.
    clock.set(start + 2 * USAGE_STREAM_WINDOW_MS + 1);
    await orgStub(org).recordUsage([batch("iso_x", 4, { metrics: 40 })]);
    expect((await tables(org)).streams.map((s) => [s.stream, s.high])).toEqual([["iso_x", 4]]);
    // iso_x: seq 3 is still owed (its gap is new); iso_w coming back at 5 owes 1..4 again, which only a batch sent after its last fold can fill.
    expect(await orgStub(org).recordUsage([batch("iso_x", 3, { metrics: 30 }), batch("iso_w", 5, { metrics: 5 }), batch("iso_w", 4, { metrics: 4 })])).toEqual({ ok: true, recorded: 3, duplicates: 0 });
    expect(await feature(org, "data_points")).toMatchObject({ received: 1 + 3 + 10 + 20 + 2 + 40 + 30 + 5 + 4 });
    // A gap older than the window is given up (a batch from it cannot be on the queue any more; if one came, it is refused as already
    // seen), while the stream, still folding, keeps its row.
    const restart = clock.now;
    clock.set(restart + USAGE_STREAM_WINDOW_MS / 2);
    await orgStub(org).recordUsage([batch("iso_w", 6, { metrics: 6 })]);
    clock.set(restart + USAGE_STREAM_WINDOW_MS + 1);
    expect(await orgStub(org).recordUsage([batch("iso_w", 7, { metrics: 7 }), batch("iso_w", 1, { metrics: 1 })])).toEqual({ ok: true, recorded: 1, duplicates: 1 });
    expect((await tables(org)).streams.find((s) => s.stream === "iso_w")).toEqual({ stream: "iso_w", high: 7, gaps: "[]" });
  });

  it("the gaps a stream remembers are capped: past the cap neighbouring gaps are coalesced, still owed, and the row stays small", async () => {
    const org = await customer("usage_cap");
    // Every other batch missing: MAX_STREAM_GAPS + 5 gaps. (Before issue 18 the oldest five were given up: their
    // batches, possibly still waiting out the consumer's backoff, were then taken for duplicates.)
    const sent = Array.from({ length: MAX_STREAM_GAPS + 6 }, (_, i) => batch("iso_c", 2 * i + 1, { bytes: 1 }));
    expect(await orgStub(org).recordUsage(sent)).toMatchObject({ ok: true, recorded: sent.length });
    const row = (await tables(org)).streams[0]!;
    const gaps = JSON.parse(row.gaps) as unknown[][];
    expect(gaps).toHaveLength(MAX_STREAM_GAPS);
    expect(row.gaps.length).toBeLessThan(20_000);
    // A coalesced number is still owed once; a number folded before (inside a coalesced range) stays a duplicate.
    expect(await orgStub(org).recordUsage([batch("iso_c", 2, { bytes: 1 }), batch("iso_c", 2, { bytes: 1 }), batch("iso_c", 3, { bytes: 1 }), batch("iso_c", 12, { bytes: 1 })])).toEqual({ ok: true, recorded: 2, duplicates: 2 });
  });

  it("messages from before streams (no stream, no seq) are still folded once by queue message id: the v4 table serves them until they drain", async () => {
    const org = await customer("usage_legacy");
    const legacy = message({ traces: 2 });
    expect(await orgStub(org).recordUsage([legacy, legacy])).toEqual({ ok: true, recorded: 1, duplicates: 1 });
    expect((await tables(org)).seen).toBe(1);
  });

  it("during the v5 deploy a stream message is also deduped by queue id in either order, and usage_seen still empties", async () => {
    const org = await customer("usage_deploy");
    // An old consumer is active (a message without a stream was folded by id) ...
    expect(await orgStub(org).recordUsage([message({ traces: 1 }, "legacy_q")])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    // ... a new consumer folds a batch with its stream first, and an old consumer is handed the same queue message again.
    expect(await orgStub(org).recordUsage([batch("iso_d", 1, { traces: 2 }, "q_both")])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    expect(await orgStub(org).recordUsage([message({ traces: 2 }, "q_both")])).toEqual({ ok: true, recorded: 0, duplicates: 1 });
    expect(await feature(org, "spans")).toMatchObject({ received: 3 });
    expect((await tables(org)).seen).toBe(2);
    // Once the legacy row is past the window, stream messages record no ids (their own rows do not keep it going).
    clock.set(clock.now + USAGE_STREAM_WINDOW_MS);
    expect(await orgStub(org).recordUsage([batch("iso_d", 2, { traces: 1 })])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    expect((await tables(org)).seen).toBe(0);
  });

  it("an object at schema 4 is migrated: usage_streams is created, usage_seen kept for messages still on the queue", async () => {
    const org = await customer("usage_migrate");
    await orgStub(org).recordUsage([message({ traces: 1 }, "old_queue_id")]);
    const after = await runInDurableObject(orgStub(org), async (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("DROP TABLE usage_streams");
      sql.exec("UPDATE schema_version SET version = 4");
      new OrgStore(state.storage, [EVENT_TABLES, USAGE_TABLES, ACTIVITY_TABLES]);
      return {
        version: sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
        streams: sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM usage_streams").one().n,
        seen: sql.exec<{ id: string }>("SELECT id FROM usage_seen").toArray().map((row) => row.id),
      };
    });
    // Brought up to the current version (7: usage_activity per code and items, test/billing/usage-activity.test.ts).
    expect(after).toEqual({ version: 7, streams: 0, seen: ["old_queue_id"] });
    expect(await orgStub(org).recordUsage([message({ traces: 1 }, "old_queue_id")])).toEqual({ ok: true, recorded: 0, duplicates: 1 });
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

  it("reports while a held limit stays used up read nothing more from Autumn; a report whose answer shows room again reads once and lifts it", async () => {
    // Defect 8: with ENFORCE_LIMITS=false usage keeps coming past the allowance, and every report used to re-read the customer.
    const org = await customer("limit_quiet");
    const reads = async () => (await autumn.calls(org)).filter((c) => c.path === "/v1/customers.get" || c.path === "/v1/invoices.list").length;
    await autumn.setAllowance(org, "spans", { granted: 100, next_reset_at: clock.now + 3 * 86_400_000 });
    await orgStub(org).recordUsage([message({ traces: 100 })]);
    await report(org);
    expect(await reads()).toBe(1);
    expect((await mirrorOf(org))!.limits.map((l) => l.feature_id)).toEqual(["spans"]);
    for (let i = 0; i < 3; i++) {
      await orgStub(org).recordUsage([message({ traces: 50 })]);
      await report(org);
    }
    expect((await autumn.calls(org)).filter((c) => c.path === "/v1/balances.track")).toHaveLength(4);
    expect(await reads()).toBe(1);
    // Room again (an upgrade whose webhook never came): the next report's answer disagrees with the held limit.
    await autumn.setAllowance(org, "spans", { granted: 1_000 }, { webhook: false });
    await orgStub(org).recordUsage([message({ traces: 1 })]);
    await report(org);
    expect(await reads()).toBe(2);
    expect((await mirrorOf(org))!.limits).toEqual([]);
    expect((await orgState(org)).history[0]).toMatchObject({ kind: "limit_cleared", source: "metering" });
    // And a report that shows room for a feature not held limited reads nothing.
    await orgStub(org).recordUsage([message({ traces: 1 })]);
    await report(org);
    expect(await reads()).toBe(2);
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
