import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { shardOf } from "../../src/shared/index-shard.ts";
import { ACTIVITY_ORGS_PER_MESSAGE, ActivityMessage, hourOf, MAX_ACTIVITY_HOURS, UsageMessage, type ActivityHour } from "../../src/shared/usage.ts";
import { UsageBatcher } from "../../src/ingest/usage/batcher.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { uniqueOrg } from "../support/billing.ts";
import { mintKey, override, sink } from "../support/ingest.ts";
import { ALL, orgActivity, parkingBucket, recordingQueue, send } from "../support/parking.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

/**
 * Issue 21, the console's chart: the ingest Worker counts what became of each request (accepted,
 * refused 402/429, would-be-refused in observe mode, parked) per org and hour, whether metering is on
 * or off, in one activity message per flush window (parts by index shard), apart from usage messages.
 */

const json = { "content-type": "application/json" };
const traces = { headers: json, body: OTLP_JSON["/v1/traces"] };
const noDeliveries = { send: async () => {}, sendBatch: async () => {} };

/** One request with its own recording queue (so its first flush runs at once); the messages once its waitUntil work settled. */
async function sent(extra: Record<string, unknown>, path: string, key: string, init: RequestInit = traces) {
  const queue = recordingQueue();
  const { status } = await send({ ...env, USAGE: queue, ...extra }, path, key, init, true);
  return { status, messages: queue.sent, activity: queue.activity };
}

/** The activity hours of the activity messages, in one list. */
const hours = (messages: ActivityMessage[]): ActivityHour[] => orgActivity(messages).flatMap((org) => org.hours);
const kinds = (messages: ActivityMessage[]) => hours(messages).map(({ hour: _hour, ...counts }) => counts);

let org: string;
let key: string;

/** The org's traces limited (spans used up), in its key's copy of the verdict and the mirror. */
async function limitTraces(orgId: string, ingestKey: string): Promise<void> {
  const verdict: MirrorEntry = { state: "ok", since: Date.now(), version: 1_000, suspend_at: null, suspended_at: null, pay_url: null, limits: [{ feature_id: "spans", signals: ["traces"], reset_at: null }], enforcement: null };
  const hashKey = ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, ingestKey));
  const record = (await env.INGEST_KEYS.get(hashKey, "json")) as Record<string, unknown>;
  await env.INGEST_KEYS.put(hashKey, JSON.stringify({ ...record, verdict }));
  await env.BILLING_STATE.put(billingStateKey(orgId), JSON.stringify(verdict));
}

beforeEach(async () => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("activity");
  key = (await mintKey(org)).key;
});

describe("activity messages", () => {
  it("metering off: an accepted export sends one activity message, no usage message, the request in this hour under its org's shard", async () => {
    const before = Date.now();
    const { status, messages, activity } = await sent({ USAGE_FEATURES: "" }, "/v1/traces", key);
    expect(status).toBe(200);
    expect(messages).toEqual([]);
    expect(activity).toEqual([{ kind: "activity", stream: expect.any(String), parts: [{ shard: shardOf(org), seq: 1, orgs: [{ org_id: org, hours: [{ hour: expect.any(Number), accepted: 1 }] }] }] }]);
    expect(hours(activity)[0]!.hour).toBeGreaterThanOrEqual(hourOf(before));
    expect(hours(activity)[0]!.hour).toBeLessThanOrEqual(hourOf(Date.now()));
    expect(ActivityMessage.safeParse(activity[0]).success).toBe(true);
  });

  it("metering on: the usage message carries the counts, the activity message the request and its items", async () => {
    const { messages, activity } = await sent({ USAGE_FEATURES: ALL }, "/v1/traces", key);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.counts).toMatchObject({ traces: 1 });
    expect(messages[0]!.activity).toBeUndefined();
    // The accepted request's items, as metered, in its hour too (the chart's items).
    expect(kinds(activity)).toEqual([{ accepted: 1, items: { accepted: 1 } }]);
  });

  it("metering on for another signal only: the traces request's items are not counted (no items), only its request", async () => {
    const { activity } = await sent({ USAGE_FEATURES: "logs=log_records" }, "/v1/traces", key);
    expect(kinds(activity)).toEqual([{ accepted: 1 }]);
  });

  it("a suspended org: the plain 402 counts refused; with parking on, the kept batch counts parked (OTLP and Logpush)", async () => {
    await override(org, "suspend");
    const plain = await sent({}, "/v1/traces", key);
    expect(plain.status).toBe(402);
    expect(kinds(plain.activity)).toEqual([{ refused: 1 }]);
    expect(plain.messages).toEqual([]);
    const parking = { PARKING: parkingBucket, DELIVERIES: noDeliveries };
    const parked = await sent(parking, "/v1/traces", key);
    expect(parked.status).toBe(402);
    expect(kinds(parked.activity)).toEqual([{ parked: 1 }]);
    // Metering on: a refusal's body is never read, so no items for it (nor for the kept batch, metered at delivery).
    const meteredPlain = await sent({ USAGE_FEATURES: ALL }, "/v1/traces", key);
    expect(kinds(meteredPlain.activity)).toEqual([{ refused: 1 }]);
    expect(meteredPlain.messages).toEqual([]);
    const logpushPlain = await sent({}, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n' });
    expect(logpushPlain.status).toBe(402);
    expect(kinds(logpushPlain.activity)).toEqual([{ refused: 1 }]);
    // Another org: a second park of the same org within 10 s holds the test for its trailing report.
    const other = uniqueOrg("activity-lp");
    const otherKey = (await mintKey(other)).key;
    await override(other, "suspend");
    const logpushParked = await sent(parking, "/v1/logpush/http_requests", otherKey, { body: '{"EdgeStartTimestamp":1700000000}\n' });
    expect(logpushParked.status).toBe(402);
    expect(orgActivity(logpushParked.activity).map((o) => [o.org_id, o.hours.map(({ hour: _h, ...c }) => c)])).toEqual([[other, [{ parked: 1 }]]]);
  });

  it("observe mode: the suspended org's export is accepted and counts would_refuse under 402's code, not accepted", async () => {
    await override(org, "suspend");
    const observed = await sent({ ENFORCEMENT: "observe" }, "/v1/traces", key);
    expect(observed.status).toBe(200);
    expect(kinds(observed.activity)).toEqual([{ would_refuse: 1, would_refuse_codes: { billing_suspended: 1 } }]);
    const logpush = await sent({ ENFORCEMENT: "observe" }, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n' });
    expect(logpush.status).toBe(200);
    expect(kinds(logpush.activity)).toEqual([{ would_refuse: 1, would_refuse_codes: { billing_suspended: 1 } }]);
    // Metering on: its items are metered (it went upstream), and counted as would-be-refused items.
    const metered = await sent({ ENFORCEMENT: "observe", USAGE_FEATURES: ALL }, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n{"EdgeStartTimestamp":1700000001}\n' });
    expect(kinds(metered.activity)).toEqual([{ would_refuse: 1, would_refuse_codes: { billing_suspended: 1 }, items: { would_refuse: 2 } }]);
  });

  it("observe mode: a plan limit's export is accepted and counts would_refuse under 429's code", async () => {
    await limitTraces(org, key);
    const observed = await sent({ ENFORCE_LIMITS: "true", ENFORCEMENT: "observe", USAGE_FEATURES: ALL }, "/v1/traces", key);
    expect(observed.status).toBe(200);
    expect(kinds(observed.activity)).toEqual([{ would_refuse: 1, would_refuse_codes: { plan_limit_reached: 1 }, items: { would_refuse: 1 } }]);
  });

  it("a plan limit's 429 counts refused", async () => {
    await limitTraces(org, key);
    const limited = await sent({ ENFORCE_LIMITS: "true" }, "/v1/traces", key);
    expect(limited.status).toBe(429);
    expect(kinds(limited.activity)).toEqual([{ refused: 1 }]);
  });

  it("an outage's batch parked (the client got its 2xx) counts parked; the upstream's own refusals and a bad key count nothing", async () => {
    await sink.fault({ mode: "status", status: 503, tenant: org, count: 1 });
    const parked = await sent({ PARKING: parkingBucket, DELIVERIES: noDeliveries }, "/v1/logs", key, { headers: json, body: OTLP_JSON["/v1/logs"] });
    expect(parked.status).toBe(200);
    expect(kinds(parked.activity)).toEqual([{ parked: 1 }]);
    // Metering on: the parked batch's items are metered (its client got a 2xx), but the chart counts parked data in requests (docs/metering.md, "Activity").
    // Another org: a second park of the same org within 10 s holds the test for its trailing report.
    const other = uniqueOrg("activity-mp");
    const otherKey = (await mintKey(other)).key;
    await sink.fault({ mode: "status", status: 503, tenant: other, count: 1 });
    const meteredPark = await sent({ PARKING: parkingBucket, DELIVERIES: noDeliveries, USAGE_FEATURES: ALL }, "/v1/logs", otherKey, { headers: json, body: OTLP_JSON["/v1/logs"] });
    expect(meteredPark.status).toBe(200);
    expect(meteredPark.messages[0]!.counts).toMatchObject({ logs: 1 });
    expect(kinds(meteredPark.activity)).toEqual([{ parked: 1 }]);
    await sink.fault({ mode: "status", status: 400, tenant: org, count: 1 });
    for (const refused of [await sent({}, "/v1/traces", key), await sent({}, "/v1/traces", "tg_ik_unknownunknownunknownunknown")]) {
      expect(refused.messages).toEqual([]);
      expect(refused.activity).toEqual([]);
    }
  });

  it("a Logpush batch accepted counts one request", async () => {
    const { status, activity } = await sent({}, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n{"EdgeStartTimestamp":1700000001}\n' });
    expect(status).toBe(200);
    expect(kinds(activity)).toEqual([{ accepted: 1 }]);
  });
});

describe("the batcher's activity", () => {
  /** A batcher whose flush waits for `flush()` (no timers), and its queue. */
  function manual(options: { fail?: boolean } = {}) {
    const queue = recordingQueue();
    const failing = { sendBatch: async () => Promise.reject(new Error("queue down")) };
    const timers: (() => void)[] = [];
    const batcher = new UsageBatcher(options.fail ? failing : queue, { wait: () => new Promise((resolve) => timers.push(resolve)), now: () => 0, retryDelaysMs: [] });
    return { queue, batcher, flush: () => timers.shift()!() };
  }

  it("adds per org and hour; usage messages carry counts only, one activity message the window's hours by shard; a window across an hour boundary carries both hours, in order", async () => {
    const { queue, batcher, flush } = manual();
    const hour = 7 * 3_600_000;
    const first = batcher.addActivity("org_a", "accepted", hour + 3_599_999);
    expect(first.opened).toBe(true);
    expect(batcher.addActivity("org_a", "accepted", hour + 1).opened).toBe(false);
    batcher.addActivity("org_a", "refused", hour + 3_600_000);
    batcher.add("org_a", { traces: 5 }, hour + 3_600_000);
    batcher.addActivity("org_b", "would_refuse", hour);
    batcher.addActivity("org_b", "would_refuse", hour, "plan_limit_reached");
    batcher.addActivity("org_b", "would_refuse", hour + 5, "billing_suspended");
    batcher.addActivity("org_b", "would_refuse", hour + 6, "plan_limit_reached");
    batcher.add("org_b", { logs: 7 }, hour + 6, { kind: "would_refuse", items: 7 });
    batcher.add("org_b", {}, hour + 6, { kind: "accepted", items: 0 });
    batcher.addActivity("org_c", "refused", hour);
    flush();
    await first.done;
    // org_c counted nothing for metering: no usage message of its own.
    expect(queue.sent).toEqual([
      { org_id: "org_a", stream: batcher.stream, seq: 1, counts: { traces: 5 }, first_at: hour + 1, last_at: hour + 3_600_000 },
      { org_id: "org_b", stream: batcher.stream, seq: 1, counts: { logs: 7 }, first_at: hour, last_at: hour + 6 },
    ]);
    const a = { org_id: "org_a", hours: [{ hour, accepted: 2 }, { hour: hour + 3_600_000, refused: 1 }] };
    // A would-be refusal without its code (no caller leaves it out) still counts in the total.
    const b = { org_id: "org_b", hours: [{ hour, would_refuse: 4, would_refuse_codes: { plan_limit_reached: 2, billing_suspended: 1 }, items: { would_refuse: 7, accepted: 0 } }] };
    const c = { org_id: "org_c", hours: [{ hour, refused: 1 }] };
    expect(queue.activity).toHaveLength(1);
    const [message] = queue.activity;
    expect(ActivityMessage.parse(message)).toEqual(message);
    expect(message!.stream).toBe(batcher.stream);
    // Parts in shard order, each org in its own shard's part, each part its shard's first number.
    const shards = message!.parts.map((part) => part.shard);
    expect(shards).toEqual([...new Set([a, b, c].map((org) => shardOf(org.org_id)))].sort((x, y) => x - y));
    for (const part of message!.parts) {
      expect(part.seq).toBe(1);
      expect(part.orgs).toEqual([a, b, c].filter((org) => shardOf(org.org_id) === part.shard));
    }
    for (const usage of queue.sent) expect(UsageMessage.safeParse(usage).success).toBe(true);
  });

  it("numbers each shard's parts 1, 2, 3, … per stream, whatever the other shards got", async () => {
    const { queue, batcher, flush } = manual();
    // Three orgs in three different shards.
    const orgs: string[] = [];
    for (let i = 0; orgs.length < 3; i++) if (!orgs.some((o) => shardOf(o) === shardOf(`org_${i}`))) orgs.push(`org_${i}`);
    const windows = [[orgs[0]!, orgs[1]!], [orgs[0]!], [orgs[2]!, orgs[0]!], [orgs[1]!]];
    for (const window of windows) {
      let done: Promise<void> | undefined;
      for (const org of window) done = batcher.addActivity(org, "accepted", 0).done;
      flush();
      await done;
    }
    const seqs = queue.activity.map((m) => m.parts.map((part) => [part.shard, part.seq]));
    const [s0, s1, s2] = orgs.map(shardOf) as [number, number, number];
    const order = (pairs: number[][]) => pairs.sort((x, y) => x[0]! - y[0]!);
    expect(seqs).toEqual([order([[s0, 1], [s1, 1]]), [[s0, 2]], order([[s0, 3], [s2, 1]]), [[s1, 2]]]);
  });

  it("a window of many orgs: at most ACTIVITY_ORGS_PER_MESSAGE orgs a message, every org once, and with metering off that is all it sends", async () => {
    const { queue, batcher, flush } = manual();
    const orgs = Array.from({ length: 2 * ACTIVITY_ORGS_PER_MESSAGE + 17 }, (_, i) => `org_many_${i}`);
    let done: Promise<void> | undefined;
    for (const org of orgs) done = batcher.addActivity(org, "accepted", 0).done;
    flush();
    await done;
    expect(queue.sent).toEqual([]);
    expect(queue.activity).toHaveLength(3);
    for (const message of queue.activity) {
      expect(ActivityMessage.safeParse(message).success).toBe(true);
      expect(orgActivity([message]).length).toBeLessThanOrEqual(ACTIVITY_ORGS_PER_MESSAGE);
    }
    expect(orgActivity(queue.activity).map((o) => o.org_id).sort()).toEqual([...orgs].sort());
    // A shard met in several messages of the window has a new number in each.
    for (let shard = 0; shard < 16; shard++) {
      const numbers = queue.activity.flatMap((m) => m.parts.filter((p) => p.shard === shard).map((p) => p.seq));
      expect(numbers).toEqual(numbers.map((_, i) => i + 1));
    }
  });

  it("a message is closed near ACTIVITY_MESSAGE_BYTES: orgs with many hours stay under the queue's 128 KB a message", async () => {
    const { queue, batcher, flush } = manual();
    let done: Promise<void> | undefined;
    // 48 hours each (a window never spans more: MAX_ACTIVITY_HOURS), every kind and code counted.
    for (let org = 0; org < 60; org++) {
      for (let h = 0; h < MAX_ACTIVITY_HOURS; h++) {
        for (const kind of ["accepted", "refused", "parked"] as const) done = batcher.addActivity(`org_wide_${org}`, kind, h * 3_600_000).done;
        batcher.addActivity(`org_wide_${org}`, "would_refuse", h * 3_600_000, "billing_suspended");
        batcher.add(`org_wide_${org}`, {}, h * 3_600_000, { kind: "accepted", items: 123_456_789 });
      }
    }
    flush();
    await done;
    expect(queue.activity.length).toBeGreaterThan(1);
    for (const message of queue.activity) expect(new TextEncoder().encode(JSON.stringify(message)).byteLength).toBeLessThan(100_000);
    expect(orgActivity(queue.activity)).toHaveLength(60);
  });

  it("a send that keeps failing logs activity_lost with the orgs and their hours (never silent)", async () => {
    const { batcher, flush } = manual({ fail: true });
    const logged: unknown[] = [];
    const error = console.error;
    console.error = (line: unknown) => void logged.push(typeof line === "string" ? JSON.parse(line) : line);
    try {
      const { done } = batcher.addActivity("org_lost", "accepted", 0);
      flush();
      await done;
    } finally {
      console.error = error;
    }
    expect(logged).toEqual([expect.objectContaining({ event: "activity_lost", stream: batcher.stream, parts: [{ shard: shardOf("org_lost"), seq: 1, orgs: [{ org_id: "org_lost", hours: [{ hour: 0, accepted: 1 }] }] }] })]);
  });
});

describe("UsageMessage's activity: optional, bounded", () => {
  const base = { org_id: "org_a", stream: "s1", seq: 1, counts: {}, first_at: 1, last_at: 2 };
  it("a message from before activity still parses", () => {
    expect(UsageMessage.safeParse(base).success).toBe(true);
  });
  it("refuses an hour not on an hour's start, a negative or fractional count, an unknown unit, no hours or too many", () => {
    const withActivity = (activity: unknown) => UsageMessage.safeParse({ ...base, activity }).success;
    expect(withActivity({ unit: "requests", hours: [{ hour: 3_600_000, accepted: 1 }] })).toBe(true);
    expect(withActivity({ unit: "requests", hours: [{ hour: 3_600_001, accepted: 1 }] })).toBe(false);
    expect(withActivity({ unit: "requests", hours: [{ hour: 0, accepted: -1 }] })).toBe(false);
    expect(withActivity({ unit: "requests", hours: [{ hour: 0, parked: 1.5 }] })).toBe(false);
    expect(withActivity({ unit: "bytes", hours: [{ hour: 0, accepted: 1 }] })).toBe(false);
    expect(withActivity({ unit: "requests", hours: [] })).toBe(false);
    expect(withActivity({ unit: "requests", hours: Array.from({ length: MAX_ACTIVITY_HOURS + 1 }, (_, i) => ({ hour: i * 3_600_000, accepted: 1 })) })).toBe(false);
  });
  it("would-be refusals per code and items: optional (an older ingest Worker's hour parses); known codes and whole counts only", () => {
    const hour = (fields: Record<string, unknown>) => UsageMessage.safeParse({ ...base, activity: { unit: "requests", hours: [{ hour: 0, ...fields }] } });
    expect(hour({ would_refuse: 2 }).success).toBe(true);
    const split = hour({ would_refuse: 2, would_refuse_codes: { billing_suspended: 1, plan_limit_reached: 1 }, items: { accepted: 0, would_refuse: 9 } });
    expect(split.success && split.data.activity?.hours[0]).toEqual({ hour: 0, would_refuse: 2, would_refuse_codes: { billing_suspended: 1, plan_limit_reached: 1 }, items: { accepted: 0, would_refuse: 9 } });
    expect(hour({ would_refuse: 1, would_refuse_codes: { payment_required: 1 } }).success).toBe(false);
    expect(hour({ would_refuse: 1, would_refuse_codes: { billing_suspended: -1 } }).success).toBe(false);
    expect(hour({ items: { accepted: 1.5 } }).success).toBe(false);
  });
});
