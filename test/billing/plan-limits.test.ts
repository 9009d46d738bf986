import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AutumnBalance } from "../../src/billing/autumn/answers.ts";
import { eventsFor } from "../../src/billing/org/events.ts";
import { limitChanges, limitDisagreements, limitsFrom, newOrgRecord, nextSyncAt, type LimitRecord } from "../../src/billing/org/record.ts";
import { exhausted, meteredBalances } from "../../src/billing/autumn/answers.ts";
import { reportOutcome } from "../../src/billing/usage/reporter.ts";
import { limitFor, type UsageFeatures } from "../../src/shared/usage.ts";
import { autumn } from "../support/autumn.ts";
import { alarmOf, deleteAllAlarms, deliver, mirrorOf, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";

const T = 1_800_000_000_000;
const FEATURES: UsageFeatures = { traces: "spans", logs: "log_records", logpush: "log_records", bytes: "ingest_bytes" };
const balance = (over: Partial<AutumnBalance> = {}): AutumnBalance => ({ feature_id: "spans", granted: 100, remaining: 0, usage: 100, unlimited: false, overage_allowed: false, next_reset_at: T + 86_400_000, ...over });

describe("plan limits, decided from balances (pure)", () => {
  it("a used-up balance is a limit; unlimited, overage allowed, room left or no balance at all never are", () => {
    expect(exhausted(balance())).toBe(true);
    expect(exhausted(balance({ remaining: 1, usage: 99 }))).toBe(false);
    expect(exhausted(balance({ unlimited: true }))).toBe(false);
    expect(exhausted(balance({ overage_allowed: true }))).toBe(false);
    expect(exhausted(undefined)).toBe(false);
    // A plan that grants none of the feature has no room: read, not assumed.
    expect(exhausted(balance({ granted: 0, usage: 0, remaining: 0 }))).toBe(true);
  });

  it("limits cover the metered features only, with every signal reported under each", () => {
    const balances = { spans: balance(), log_records: balance({ feature_id: "log_records", next_reset_at: null }), seats: balance({ feature_id: "seats" }) };
    const limits = limitsFrom(balances, FEATURES, [], T);
    expect(limits).toEqual([
      { feature_id: "spans", signals: ["traces"], reset_at: T + 86_400_000, since: T, usage: 100, granted: 100 },
      { feature_id: "log_records", signals: ["logs", "logpush"], reset_at: null, since: T, usage: 100, granted: 100 },
    ]);
    expect(Object.keys(meteredBalances(balances, FEATURES))).toEqual(["spans", "log_records"]);
    // A limit still in force keeps when it started.
    expect(limitsFrom(balances, FEATURES, limits, T + 5_000)[0]!.since).toBe(T);
    // Metering off: no limits at all.
    expect(limitsFrom(balances, {}, limits, T)).toEqual([]);
  });

  it("reached and cleared are the differences by feature", () => {
    const a: LimitRecord = { feature_id: "spans", signals: ["traces"], reset_at: null, since: T, usage: 1, granted: 1 };
    const b: LimitRecord = { ...a, feature_id: "ingest_bytes", signals: ["bytes"] };
    expect(limitChanges([a], [b])).toEqual({ reached: [b], cleared: [a] });
    expect(limitChanges([a], [{ ...a, usage: 5 }])).toEqual({ reached: [], cleared: [] });
  });

  it("the edge applies a limit to its signals and the bytes feature's to every signal, until the reset", () => {
    const spans = { feature_id: "spans", signals: ["traces" as const], reset_at: T + 1_000 };
    expect(limitFor([spans], "traces", T)).toEqual(spans);
    expect(limitFor([spans], "logs", T)).toBeNull();
    expect(limitFor([spans], "traces", T + 999)).toEqual(spans);
    expect(limitFor([spans], "traces", T + 1_000)).toBeNull();
    const bytes = { feature_id: "ingest_bytes", signals: ["bytes" as const], reset_at: null };
    expect(limitFor([bytes], "logpush", T)).toEqual(bytes);
  });

  it("report answers call for a read only when they disagree with the limits held (a held limit past its reset is not held)", () => {
    const held: LimitRecord = { feature_id: "spans", signals: ["traces"], reset_at: T + 60_000, since: T, usage: 1, granted: 1 };
    const answers = [
      { feature_id: "spans", exhausted: true },
      { feature_id: "log_records", exhausted: false },
    ];
    expect(limitDisagreements(answers, [held], T)).toEqual({ reached: [], room: [] });
    expect(limitDisagreements(answers, [], T)).toEqual({ reached: ["spans"], room: [] });
    expect(limitDisagreements([{ feature_id: "spans", exhausted: false }], [held], T)).toEqual({ reached: [], room: ["spans"] });
    expect(limitDisagreements(answers, [held], T + 59_999)).toEqual({ reached: [], room: [] });
    expect(limitDisagreements(answers, [held], T + 60_000)).toEqual({ reached: ["spans"], room: [] });
    expect(limitDisagreements(answers, [{ ...held, reset_at: null }], T + 10 * 86_400_000)).toEqual({ reached: [], room: [] });
    expect(limitDisagreements([], [held], T)).toEqual({ reached: [], room: [] });
  });

  it("a limit owes a read at its reset, once", () => {
    const limit: LimitRecord = { feature_id: "spans", signals: ["traces"], reset_at: T + 60_000, since: T, usage: 1, granted: 1 };
    const record = { ...newOrgRecord("org_l", T), last_sync: { at: T, ok: true, error: null }, limits: [limit] };
    const config = { resyncIntervalMs: 6 * 3_600_000, limitResyncIntervalMs: 10 * 60_000 };
    expect(nextSyncAt(record, T, config)).toBe(T + 60_000);
    // After that read, the limit still in force is re-read every LIMIT_RESYNC_INTERVAL.
    expect(nextSyncAt({ ...record, last_sync: { at: T + 60_000, ok: true, error: null } }, T + 60_000, config)).toBe(T + 60_000 + 10 * 60_000);
  });

  it("a limited org is re-read every LIMIT_RESYNC_INTERVAL while limited, whenever its balance resets; an org with room is not", () => {
    const config = { resyncIntervalMs: 6 * 3_600_000, limitResyncIntervalMs: 10 * 60_000 };
    const limit: LimitRecord = { feature_id: "spans", signals: ["traces"], reset_at: null, since: T, usage: 1, granted: 1 };
    const synced = { ...newOrgRecord("org_l", T), last_sync: { at: T, ok: true, error: null } };
    expect(nextSyncAt({ ...synced, limits: [limit] }, T, config)).toBe(T + 10 * 60_000);
    expect(nextSyncAt({ ...synced, limits: [{ ...limit, reset_at: T + 30 * 86_400_000 }] }, T, config)).toBe(T + 10 * 60_000);
    expect(nextSyncAt(synced, T, config)).toBeNull();
  });

  it("org.limit_reached and org.limit_cleared name the feature, its signals, the reset and the balance", () => {
    const limit: LimitRecord = { feature_id: "spans", signals: ["traces"], reset_at: T + 60_000, since: T, usage: 100, granted: 100 };
    const before = newOrgRecord("org_e", T);
    const reached = eventsFor(before, { ...before, limits: [limit] }, T, 3_600_000).events;
    expect(reached.map((e) => [e.type, e.limit])).toEqual([["org.limit_reached", { feature_id: "spans", signals: ["traces"], reset_at: new Date(T + 60_000).toISOString(), usage: 100, granted: 100 }]]);
    const cleared = eventsFor({ ...before, limits: [limit] }, before, T, 3_600_000).events;
    expect(cleared.map((e) => e.type)).toEqual(["org.limit_cleared"]);
  });
});

describe("usage report answers (pure)", () => {
  const failure = (status: number | undefined, code?: string, kind: "http" | "timeout" | "network" = "http") => ({ ok: false as const, failure: { kind, status, code, message: `answered ${status}` } });

  it("applied; applied and used up; a duplicate key is an earlier attempt that was applied", () => {
    expect(reportOutcome({ ok: true, value: { balance: balance({ remaining: 5, usage: 95 }) } })).toEqual({ kind: "applied", exhausted: false });
    expect(reportOutcome({ ok: true, value: { balance: balance() } })).toEqual({ kind: "applied", exhausted: true });
    // No balance (or one the schema could not read, or Autumn 2.5's async track) says nothing either: issue 18, defect 6.
    expect(reportOutcome({ ok: true, value: { balance: null } })).toEqual({ kind: "applied", exhausted: null });
    // An unreadable balance says nothing either way: no read is decided on it.
    expect(reportOutcome({ ok: true, value: { balance: { feature_id: "spans", remaining: "lots" } } })).toEqual({ kind: "applied", exhausted: null });
    expect(reportOutcome(failure(409, "duplicate_idempotency_key"))).toEqual({ kind: "duplicate" });
  });

  it("timeouts, 5xx and 429 are retried; Autumn's refusals of the report itself wait longer", () => {
    expect(reportOutcome(failure(undefined, undefined, "timeout")).kind).toBe("retry");
    expect(reportOutcome(failure(503)).kind).toBe("retry");
    expect(reportOutcome(failure(429)).kind).toBe("retry");
    expect(reportOutcome(failure(409, "lock_already_exists")).kind).toBe("retry");
    expect(reportOutcome(failure(404, "customer_not_found")).kind).toBe("refused");
    expect(reportOutcome(failure(400, "invalid_inputs")).kind).toBe("refused");
  });
});

describe("an upgrade whose webhook is lost (issue 18, defect 1b)", () => {
  const clock = fakeClock();
  afterEach(async () => {
    await autumn.clearFaults();
    await deleteAllAlarms();
  });
  /** LIMIT_RESYNC_INTERVAL in wrangler.jsonc. */
  const LIMIT_RESYNC_MS = 10 * 60_000;

  it("lifts the limit within LIMIT_RESYNC_INTERVAL of the last read, with no webhook at all", async () => {
    const org = uniqueOrg("limit_lost_upgrade");
    await autumn.createCustomer(org, { webhook: false });
    // A balance that never resets: without a periodic read the limit would stay forever.
    await autumn.setAllowance(org, "spans", { granted: 10, next_reset_at: null });
    await autumn.track(org, "spans", { value: 10 });
    const [hook] = await autumn.webhooks({ type: "balances.limit_reached", customer_id: org });
    await deliver({ headers: hook!.headers, body: hook!.body });
    expect((await mirrorOf(org))!.limits).toHaveLength(1);
    const readAt = clock.now;
    // The customer upgrades; every webhook is lost.
    await autumn.setAllowance(org, "spans", { granted: 1_000 }, { webhook: false });
    expect(await alarmOf(org)).toBe(readAt + LIMIT_RESYNC_MS);
    clock.set(readAt + LIMIT_RESYNC_MS);
    await runDurableObjectAlarm(orgStub(org));
    expect((await mirrorOf(org))!.limits).toEqual([]);
    expect((await orgState(org)).history[0]).toMatchObject({ kind: "limit_cleared", source: "alarm" });
    // Room again: no more periodic reads for an ok org.
    expect(await alarmOf(org)).toBeNull();
  });
});
