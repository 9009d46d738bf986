import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { hourOf, MAX_ACTIVITY_HOURS, UsageMessage, type ActivityHour } from "../../src/shared/usage.ts";
import { UsageBatcher } from "../../src/ingest/usage/batcher.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { uniqueOrg } from "../support/billing.ts";
import { mintKey, override, sink } from "../support/ingest.ts";
import { ALL, parkingBucket, recordingQueue, send } from "../support/parking.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

/**
 * Issue 21, the console's chart: the ingest Worker counts what became of each request (accepted,
 * refused 402/429, would-be-refused in observe mode, parked) per org and hour, in the usage
 * message it sends anyway, whether metering is on or off.
 */

const json = { "content-type": "application/json" };
const traces = { headers: json, body: OTLP_JSON["/v1/traces"] };
const noDeliveries = { send: async () => {}, sendBatch: async () => {} };

/** One request with its own recording queue (so its first flush runs at once); the messages once its waitUntil work settled. */
async function sent(extra: Record<string, unknown>, path: string, key: string, init: RequestInit = traces) {
  const queue = recordingQueue();
  const { status } = await send({ ...env, USAGE: queue, ...extra }, path, key, init, true);
  return { status, messages: queue.sent };
}

/** The activity hours of the messages, in one list. */
const hours = (messages: UsageMessage[]): ActivityHour[] => messages.flatMap((m) => m.activity?.hours ?? []);
const kinds = (messages: UsageMessage[]) => hours(messages).map(({ hour: _hour, ...counts }) => counts);

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

describe("activity in the usage messages", () => {
  it("metering off: an accepted export still sends one message, with empty counts and the request in this hour", async () => {
    const before = Date.now();
    const { status, messages } = await sent({ USAGE_FEATURES: "" }, "/v1/traces", key);
    expect(status).toBe(200);
    expect(messages).toEqual([{ org_id: org, stream: expect.any(String), seq: 1, counts: {}, first_at: expect.any(Number), last_at: expect.any(Number), activity: { unit: "requests", hours: [{ hour: expect.any(Number), accepted: 1 }] } }]);
    expect(hours(messages)[0]!.hour).toBeGreaterThanOrEqual(hourOf(before));
    expect(hours(messages)[0]!.hour).toBeLessThanOrEqual(hourOf(Date.now()));
    expect(UsageMessage.safeParse(messages[0]).success).toBe(true);
  });

  it("metering on: the same message carries the counts and the activity", async () => {
    const { messages } = await sent({ USAGE_FEATURES: ALL }, "/v1/traces", key);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.counts).toMatchObject({ traces: 1 });
    // The accepted request's items, as metered, in its hour too (the chart's items).
    expect(kinds(messages)).toEqual([{ accepted: 1, items: { accepted: 1 } }]);
  });

  it("metering on for another signal only: the traces request's items are not counted (no items), only its request", async () => {
    const { messages } = await sent({ USAGE_FEATURES: "logs=log_records" }, "/v1/traces", key);
    expect(kinds(messages)).toEqual([{ accepted: 1 }]);
  });

  it("a suspended org: the plain 402 counts refused; with parking on, the kept batch counts parked (OTLP and Logpush)", async () => {
    await override(org, "suspend");
    const plain = await sent({}, "/v1/traces", key);
    expect(plain.status).toBe(402);
    expect(kinds(plain.messages)).toEqual([{ refused: 1 }]);
    expect(plain.messages[0]!.counts).toEqual({});
    const parking = { PARKING: parkingBucket, DELIVERIES: noDeliveries };
    const parked = await sent(parking, "/v1/traces", key);
    expect(parked.status).toBe(402);
    expect(kinds(parked.messages)).toEqual([{ parked: 1 }]);
    // Metering on: a refusal's body is never read, so no items for it (nor for the kept batch, metered at delivery).
    const meteredPlain = await sent({ USAGE_FEATURES: ALL }, "/v1/traces", key);
    expect(kinds(meteredPlain.messages)).toEqual([{ refused: 1 }]);
    expect(meteredPlain.messages[0]!.counts).toEqual({});
    const logpushPlain = await sent({}, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n' });
    expect(logpushPlain.status).toBe(402);
    expect(kinds(logpushPlain.messages)).toEqual([{ refused: 1 }]);
    // Another org: a second park of the same org within 10 s holds the test for its trailing report.
    const other = uniqueOrg("activity-lp");
    const otherKey = (await mintKey(other)).key;
    await override(other, "suspend");
    const logpushParked = await sent(parking, "/v1/logpush/http_requests", otherKey, { body: '{"EdgeStartTimestamp":1700000000}\n' });
    expect(logpushParked.status).toBe(402);
    expect(logpushParked.messages.map((m) => [m.org_id, m.activity?.hours.map(({ hour: _h, ...c }) => c)])).toEqual([[other, [{ parked: 1 }]]]);
  });

  it("observe mode: the suspended org's export is accepted and counts would_refuse under 402's code, not accepted", async () => {
    await override(org, "suspend");
    const observed = await sent({ ENFORCEMENT: "observe" }, "/v1/traces", key);
    expect(observed.status).toBe(200);
    expect(kinds(observed.messages)).toEqual([{ would_refuse: 1, would_refuse_codes: { billing_suspended: 1 } }]);
    const logpush = await sent({ ENFORCEMENT: "observe" }, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n' });
    expect(logpush.status).toBe(200);
    expect(kinds(logpush.messages)).toEqual([{ would_refuse: 1, would_refuse_codes: { billing_suspended: 1 } }]);
    // Metering on: its items are metered (it went upstream), and counted as would-be-refused items.
    const metered = await sent({ ENFORCEMENT: "observe", USAGE_FEATURES: ALL }, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n{"EdgeStartTimestamp":1700000001}\n' });
    expect(kinds(metered.messages)).toEqual([{ would_refuse: 1, would_refuse_codes: { billing_suspended: 1 }, items: { would_refuse: 2 } }]);
  });

  it("observe mode: a plan limit's export is accepted and counts would_refuse under 429's code", async () => {
    await limitTraces(org, key);
    const observed = await sent({ ENFORCE_LIMITS: "true", ENFORCEMENT: "observe", USAGE_FEATURES: ALL }, "/v1/traces", key);
    expect(observed.status).toBe(200);
    expect(kinds(observed.messages)).toEqual([{ would_refuse: 1, would_refuse_codes: { plan_limit_reached: 1 }, items: { would_refuse: 1 } }]);
  });

  it("a plan limit's 429 counts refused", async () => {
    await limitTraces(org, key);
    const limited = await sent({ ENFORCE_LIMITS: "true" }, "/v1/traces", key);
    expect(limited.status).toBe(429);
    expect(kinds(limited.messages)).toEqual([{ refused: 1 }]);
  });

  it("an outage's batch parked (the client got its 2xx) counts parked; the upstream's own refusals and a bad key count nothing", async () => {
    await sink.fault({ mode: "status", status: 503, tenant: org, count: 1 });
    const parked = await sent({ PARKING: parkingBucket, DELIVERIES: noDeliveries }, "/v1/logs", key, { headers: json, body: OTLP_JSON["/v1/logs"] });
    expect(parked.status).toBe(200);
    expect(kinds(parked.messages)).toEqual([{ parked: 1 }]);
    // Metering on: the parked batch's items are metered (its client got a 2xx), but the chart counts parked data in requests (docs/metering.md, "Activity").
    await sink.fault({ mode: "status", status: 503, tenant: org, count: 1 });
    const meteredPark = await sent({ PARKING: parkingBucket, DELIVERIES: noDeliveries, USAGE_FEATURES: ALL }, "/v1/logs", key, { headers: json, body: OTLP_JSON["/v1/logs"] });
    expect(meteredPark.status).toBe(200);
    expect(meteredPark.messages[0]!.counts).toMatchObject({ logs: 1 });
    expect(kinds(meteredPark.messages)).toEqual([{ parked: 1 }]);
    await sink.fault({ mode: "status", status: 400, tenant: org, count: 1 });
    expect((await sent({}, "/v1/traces", key)).messages).toEqual([]);
    expect((await sent({}, "/v1/traces", "tg_ik_unknownunknownunknownunknown")).messages).toEqual([]);
  });

  it("a Logpush batch accepted counts one request", async () => {
    const { status, messages } = await sent({}, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n{"EdgeStartTimestamp":1700000001}\n' });
    expect(status).toBe(200);
    expect(kinds(messages)).toEqual([{ accepted: 1 }]);
  });
});

describe("the batcher's activity", () => {
  it("adds per org and hour, one message per org per window; a window across an hour boundary carries both hours, in order", async () => {
    const queue = recordingQueue();
    const timers: (() => void)[] = [];
    const batcher = new UsageBatcher(queue, { wait: () => new Promise((resolve) => timers.push(resolve)), now: () => 0 });
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
    timers.shift()!();
    await first.done;
    expect(queue.sent).toEqual([
      { org_id: "org_a", stream: batcher.stream, seq: 1, counts: { traces: 5 }, first_at: hour + 1, last_at: hour + 3_600_000, activity: { unit: "requests", hours: [{ hour, accepted: 2 }, { hour: hour + 3_600_000, refused: 1 }] } },
      // A would-be refusal without its code (no caller leaves it out) still counts in the total.
      {
        org_id: "org_b",
        stream: batcher.stream,
        seq: 1,
        counts: { logs: 7 },
        first_at: hour,
        last_at: hour + 6,
        activity: { unit: "requests", hours: [{ hour, would_refuse: 4, would_refuse_codes: { plan_limit_reached: 2, billing_suspended: 1 }, items: { would_refuse: 7, accepted: 0 } }] },
      },
    ]);
    for (const message of queue.sent) expect(UsageMessage.safeParse(message).success).toBe(true);
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
