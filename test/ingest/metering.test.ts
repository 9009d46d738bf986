import { gunzipSync } from "node:zlib";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ActivityMessage, UsageMessage } from "../../src/shared/usage.ts";
import type { QueuedMessage } from "../../src/ingest/usage/batcher.ts";
import { ingestSettings } from "../../src/ingest/config.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { counterFor } from "../../src/ingest/usage/meter.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { createMessageBatch } from "cloudflare:test";
import { handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { gzip, INGEST, ingestWithEnv, mintKey, override, sink } from "../support/ingest.ts";
import { ALL } from "../support/parking.ts";
import { OTLP_JSON, OTLP_PROTOBUF } from "./fixtures/otlp.ts";

/** A USAGE queue that records what it is sent: usage messages in `sent` (activity messages, the chart's, in `activity`: test/ingest/activity.test.ts). */
function recordingQueue() {
  const sent: UsageMessage[] = [];
  const activity: ActivityMessage[] = [];
  let calls = 0;
  return {
    sent,
    activity,
    get calls() {
      return calls;
    },
    sendBatch: async (messages: Iterable<{ body: QueuedMessage }>) => {
      calls++;
      for (const { body } of messages) {
        if ("kind" in body) activity.push(body);
        else sent.push(body);
      }
    },
  };
}

/**
 * One request to the ingest Worker with metering configured; resolves once its waitUntil work
 * (the flush carrying its usage) has settled. A fresh queue (so a fresh batcher) per call: its
 * first flush runs at once, no waiting on the 1 s interval.
 */
async function metered(path: string, init: RequestInit & { key?: string }, extra: Record<string, unknown> = {}) {
  const queue = recordingQueue();
  const workerEnv = { ...env, USAGE_FEATURES: ALL, USAGE: queue, ...extra } as unknown as IngestEnv;
  const { default: worker } = await import("../../src/ingest/worker.ts");
  const headers = new Headers(init.headers);
  if (init.key) headers.set("authorization", `Bearer ${init.key}`);
  const ctx = createExecutionContext();
  const request = new Request(`${INGEST}${path}`, { method: "POST", ...init, headers }) as Request<unknown, IncomingRequestCfProperties>;
  const response = await worker.fetch(request, workerEnv, ctx);
  // Decoded rather than .text(): an upstream answer passed through may be protobuf, and workerd warns on .text() of one.
  const text = new TextDecoder().decode(await response.arrayBuffer());
  await waitOnExecutionContext(ctx);
  return { response, text, sent: queue.sent, activity: queue.activity, calls: queue.calls };
}

let org: string;
let key: string;

beforeEach(async () => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("meter");
  key = (await mintKey(org)).key;
});

afterEach(async () => {
  vi.restoreAllMocks();
  await sink.clearFaults();
  await deleteAllAlarms();
});

/** An OTLP JSON traces request with `n` spans, in `resources` resources. */
function tracesJson(n: number, resources = 3): string {
  const spansOf = (r: number) =>
    Array.from({ length: Math.ceil(n / resources) }, (_, i) => r * Math.ceil(n / resources) + i)
      .filter((i) => i < n)
      .map((i) => ({ traceId: "5b8efff798038103d269b633813fc60c", spanId: i.toString(16).padStart(16, "0"), name: `op-${i}-${Math.random()}`, kind: 2, startTimeUnixNano: "1544712660000000000", endTimeUnixNano: "1544712661000000000" }));
  return JSON.stringify({ resourceSpans: Array.from({ length: resources }, (_, r) => ({ resource: {}, scopeSpans: [{ scope: { name: "s" }, spans: spansOf(r) }] })) });
}

/** A client stream with no declared length. */
function chunked(bytes: Uint8Array, chunk = 4096): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunk));
      offset += chunk;
    },
  });
}

describe("usage metering: accepted data is counted per org and handed to the queue", () => {
  it("protobuf traces: one span, bytes as sent", async () => {
    const body = OTLP_PROTOBUF["/v1/traces"];
    const { response, sent, calls } = await metered("/v1/traces", { key, headers: { "content-type": "application/x-protobuf" }, body });
    expect(response.status).toBe(200);
    expect(calls).toBe(1);
    expect(sent).toEqual([
      { org_id: org, stream: expect.stringMatching(/^[a-f0-9]{32}$/), seq: 1, counts: { traces: 1, bytes: body.byteLength }, first_at: expect.any(Number), last_at: expect.any(Number) },
    ]);
  });

  it("JSON logs and JSON metrics: their own signals", async () => {
    const logs = await metered("/v1/logs", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/logs"] });
    expect(logs.sent.map((m) => m.counts)).toEqual([{ logs: 1, bytes: new TextEncoder().encode(OTLP_JSON["/v1/logs"]).byteLength }]);
    const metrics = await metered("/v1/metrics", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/metrics"] });
    expect(metrics.sent.map((m) => m.counts)).toEqual([{ metrics: 1, bytes: new TextEncoder().encode(OTLP_JSON["/v1/metrics"]).byteLength }]);
  });

  it("gzip: items of the decompressed body, bytes as sent (compressed), small (read whole) and streamed", async () => {
    const small = await gzip(OTLP_PROTOBUF["/v1/traces"]);
    const first = await metered("/v1/traces", { key, headers: { "content-type": "application/x-protobuf", "content-encoding": "gzip" }, body: small });
    expect(first.sent.map((m) => m.counts)).toEqual([{ traces: 1, bytes: small.byteLength }]);
    // A metric without data points is no item: only its bytes.
    const noPoints = await gzip(OTLP_PROTOBUF["/v1/metrics"]);
    const second = await metered("/v1/metrics", { key, headers: { "content-type": "application/x-protobuf", "content-encoding": "gzip" }, body: noPoints });
    expect(second.sent.map((m) => m.counts)).toEqual([{ bytes: noPoints.byteLength }]);

    const big = await gzip(tracesJson(5_000));
    expect(big.byteLength * 1032).toBeGreaterThan(4 * 1024 * 1024); // too large to be waved through: checked as it streams
    const declared = await metered("/v1/traces", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: big });
    expect(declared.response.status).toBe(200);
    expect(declared.sent.map((m) => m.counts)).toEqual([{ traces: 5_000, bytes: big.byteLength }]);

    const streamed = await metered("/v1/traces", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: chunked(big, 1000) });
    expect(streamed.sent.map((m) => m.counts)).toEqual([{ traces: 5_000, bytes: big.byteLength }]);
  });

  it("gzip with the bomb check off (MAX_DECOMPRESSED_BYTES=0): still inflated to count its items, exactly, and forwarded as it came", async () => {
    const off = { MAX_DECOMPRESSED_BYTES: "0" };
    const big = await gzip(tracesJson(5_000));
    const declared = await metered("/v1/traces", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: big }, off);
    expect(declared.response.status).toBe(200);
    expect(declared.sent.map((m) => m.counts)).toEqual([{ traces: 5_000, bytes: big.byteLength }]);
    const streamed = await metered("/v1/traces", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: chunked(big, 1000) }, off);
    expect(streamed.sent.map((m) => m.counts)).toEqual([{ traces: 5_000, bytes: big.byteLength }]);
    // Past the 4 MiB cap the check would enforce: counted all the same.
    const many = await gzip(tracesJson(40_000, 1));
    expect(gunzipSync(many).byteLength).toBeGreaterThan(4 * 1024 * 1024);
    const uncapped = await metered("/v1/traces", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: many }, off);
    expect(uncapped.sent.map((m) => m.counts)).toEqual([{ traces: 40_000, bytes: many.byteLength }]);
    expect((await sink.requests(org)).map((r) => r.bytes)).toEqual([big.byteLength, big.byteLength, many.byteLength]);
  });

  it("identity bodies: declared length (the request's own stream) and streamed without a length", async () => {
    const text = new TextEncoder().encode(tracesJson(1_234));
    const declared = await metered("/v1/traces", { key, headers: { "content-type": "application/json" }, body: text });
    expect(declared.sent.map((m) => m.counts)).toEqual([{ traces: 1_234, bytes: text.byteLength }]);
    const streamed = await metered("/v1/traces", { key, headers: { "content-type": "application/json" }, body: chunked(text, 777) });
    expect(streamed.sent.map((m) => m.counts)).toEqual([{ traces: 1_234, bytes: text.byteLength }]);
    // The upstream got the body byte for byte all the same.
    const received = await sink.requests(org);
    expect(received.map((r) => r.bytes)).toEqual([text.byteLength, text.byteLength]);
  });

  it("Logpush: the batch's records and its bytes as received", async () => {
    const lines = Array.from({ length: 37 }, (_, i) => JSON.stringify({ EdgeStartTimestamp: 1_700_000_000 + i, ClientIP: "192.0.2.1", EdgeResponseStatus: 200 })).join("\n");
    const body = await gzip(lines);
    const { response, text, sent } = await metered("/v1/logpush/http_requests", { key, headers: { "content-encoding": "gzip" }, body });
    expect(response.status).toBe(200);
    expect(JSON.parse(text)).toEqual({ status: "accepted", records: 37 });
    expect(sent.map((m) => m.counts)).toEqual([{ logpush: 37, bytes: body.byteLength }]);
  });

  it("only mapped signals are counted; bytes only when mapped", async () => {
    const extra = { USAGE_FEATURES: "traces=spans" };
    const traces = await metered("/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] }, extra);
    expect(traces.sent.map((m) => m.counts)).toEqual([{ traces: 1 }]);
    const logs = await metered("/v1/logs", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/logs"] }, extra);
    expect(logs.sent).toEqual([]); // only the chart's activity goes
    expect(logs.activity).toHaveLength(1);
    const bytesOnly = await metered("/v1/logs", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/logs"] }, { USAGE_FEATURES: "bytes=ingest_bytes" });
    expect(bytesOnly.sent.map((m) => m.counts)).toEqual([{ bytes: new TextEncoder().encode(OTLP_JSON["/v1/logs"]).byteLength }]);
  });

  it("a body whose items cannot be counted still counts its bytes, and is logged once per org per window", async () => {
    const warn = vi.spyOn(console, "warn");
    const junk = new Uint8Array([0x0a, 0xff, 0xff, 0xff]); // a field claiming more bytes than there are
    const first = await metered("/v1/traces", { key, headers: { "content-type": "application/x-protobuf" }, body: junk });
    expect(first.response.status).toBe(200); // the backend's call: this sink takes anything
    expect(first.sent.map((m) => m.counts)).toEqual([{ bytes: 4 }]);
    await metered("/v1/traces", { key, headers: { "content-type": "application/x-protobuf" }, body: junk });
    const lines = warn.mock.calls.map(([line]) => line as { event?: string }).filter((line) => line.event === "usage_items_uncounted");
    expect(lines).toEqual([expect.objectContaining({ event: "usage_items_uncounted", org_id: org, signal: "traces", bytes: 4 })]);
  });

  it("a batch parked because the upstream was down (the client got its 2xx) is counted", async () => {
    await sink.fault({ mode: "status", status: 503, tenant: org, count: 1 });
    const parking = { PARKING: (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST, DELIVERIES: { send: async () => {} } };
    const body = OTLP_PROTOBUF["/v1/logs"];
    const { response, sent } = await metered("/v1/logs", { key, headers: { "content-type": "application/x-protobuf" }, body }, parking);
    expect(response.status).toBe(200);
    expect(sent.map((m) => m.counts)).toEqual([{ logs: 1, bytes: body.byteLength }]);
  });
});

describe("usage metering: refused data is never counted", () => {
  const json = { "content-type": "application/json" };

  it("401, 413, 415 and the backend's 400, 413, 429 and 503: nothing is sent", async () => {
    expect((await metered("/v1/traces", { headers: json, body: OTLP_JSON["/v1/traces"] })).calls).toBe(0);
    expect((await metered("/v1/traces", { key: "tg_ik_unknownunknownunknownunknown", headers: json, body: OTLP_JSON["/v1/traces"] })).calls).toBe(0);
    const tooLarge = await metered("/v1/traces", { key, headers: json, body: new Uint8Array(1024 * 1024 + 1) });
    expect(tooLarge.response.status).toBe(413);
    expect(tooLarge.calls).toBe(0);
    expect((await metered("/v1/traces", { key, headers: { "content-type": "text/plain" }, body: "x" })).calls).toBe(0);
    for (const status of [400, 413, 429, 503]) {
      await sink.fault({ mode: "status", status, tenant: org, count: 1 });
      const refused = await metered("/v1/traces", { key, headers: json, body: OTLP_JSON["/v1/traces"] });
      expect(refused.response.status).toBe(status);
      expect(refused.calls).toBe(0);
    }
  });

  // Only the chart's activity goes (refused or parked, test/ingest/activity.test.ts): no usage message.
  it("a suspended org's 402 (parked or not) is not counted at acceptance", async () => {
    await override(org, "suspend");
    const plain = await metered("/v1/traces", { key, headers: json, body: OTLP_JSON["/v1/traces"] });
    expect(plain.response.status).toBe(402);
    expect(plain.sent).toEqual([]);
    const parking = { PARKING: (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST, DELIVERIES: { send: async () => {} } };
    const parked = await metered("/v1/traces", { key, headers: json, body: OTLP_JSON["/v1/traces"] }, parking);
    expect(parked.response.status).toBe(402);
    expect(parked.sent).toEqual([]);
    // Another org: a second park of the same org within 10 s holds the test for its trailing report.
    const other = uniqueOrg("meter-lp");
    const otherKey = (await mintKey(other)).key;
    await override(other, "suspend");
    const logpush = await metered("/v1/logpush/http_requests", { key: otherKey, body: '{"EdgeStartTimestamp":1700000000}\n' }, parking);
    expect(logpush.response.status).toBe(402);
    expect(logpush.sent).toEqual([]);
  });

  it("a Logpush batch the backend fails after part of it went upstream is not counted (the job resends all of it)", async () => {
    await sink.fault({ mode: "status", status: 400, tenant: org, count: 1 });
    const refused = await metered("/v1/logpush/http_requests", { key, body: '{"EdgeStartTimestamp":1700000000}\n' });
    expect(refused.response.status).toBe(400);
    expect(refused.calls).toBe(0);
    const validation = await metered("/v1/logpush/http_requests", { key, body: '{"content":"tests"}' });
    expect(validation.response.status).toBe(200);
    expect(validation.calls).toBe(0);
  });
});

describe("usage metering off", () => {
  // Only the chart's activity goes (issue 21; test/ingest/activity.test.ts).
  it("with USAGE_FEATURES empty: no counter, no usage counts sent", async () => {
    const offEnv = { ...env, USAGE_FEATURES: "" } as unknown as IngestEnv;
    expect(ingestSettings(offEnv).metering).toBe(false);
    expect(counterFor(ingestSettings(offEnv), "traces", "protobuf")).toBeNull();
    const off = await metered("/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] }, { USAGE_FEATURES: "" });
    expect(off.response.status).toBe(200);
    expect(off.sent).toEqual([]);
    expect(off.activity).toHaveLength(1);
    const onEnv = { ...env, USAGE_FEATURES: "logs=log_records" } as unknown as IngestEnv;
    expect(counterFor(ingestSettings(onEnv), "traces", "protobuf")).toBeNull(); // an unmapped signal is not counted either
    expect(counterFor(ingestSettings(onEnv), "logs", "protobuf")).not.toBeNull();
  });

  it("USAGE_FEATURES set without the USAGE queue is a configuration error naming it", async () => {
    const response = await metered("/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] }, { USAGE: undefined });
    expect(response.response.status).toBe(503);
    expect(JSON.parse(response.text)).toMatchObject({ error: "not_configured", message: expect.stringContaining("USAGE") });
  });
});

describe("usage metering of batches parked while suspended", () => {
  it("is done when they are delivered after payment: OTLP items from the decompressed body, Logpush records, bytes as received; outage-parked batches are not counted twice", async () => {
    const parking = { PARKING: (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST, DELIVERIES: { send: async () => {} } };
    const parkingEnv = { ...env, ...parking };
    await override(org, "suspend");
    const otlp = await gzip(tracesJson(321));
    const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({ EdgeStartTimestamp: 1_700_000_000 + i, ClientIP: "192.0.2.1" })).join("\n");
    const logpush = await gzip(lines);
    const answers = [
      await ingestWithEnv(parkingEnv, "/v1/traces", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: otlp }),
      await ingestWithEnv(parkingEnv, "/v1/logpush/http_requests", { key, headers: { "content-encoding": "gzip" }, body: logpush }),
    ];
    expect(answers.map((r) => r.status)).toEqual([402, 402]);
    await override(org, "clear");

    const queue = recordingQueue();
    const deliveryEnv = { ...parkingEnv, USAGE_FEATURES: ALL, USAGE: queue } as unknown as IngestEnv;
    const batch = createMessageBatch("tollgate-deliveries", [{ id: `d-${org}`, timestamp: new Date(), attempts: 1, body: { org_id: org } }]);
    const [run] = await handleDeliveries(batch, deliveryEnv as never);
    expect(run).toMatchObject({ outcome: "done", delivered: 2 });
    expect(queue.sent).toEqual([{ org_id: org, stream: expect.any(String), seq: 1, counts: { traces: 321, logpush: 12, bytes: otlp.byteLength + logpush.byteLength }, first_at: expect.any(Number), last_at: expect.any(Number) }]);

    // A batch parked during an outage was metered when the client got its 2xx: its delivery adds nothing.
    gate.reset(); // the suspension this isolate confirmed a moment ago
    await sink.fault({ mode: "status", status: 503, tenant: org, count: 1 });
    const outage = await metered("/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] }, parking);
    expect(outage.response.status).toBe(200);
    expect(outage.sent.map((m) => m.counts)).toEqual([{ traces: 1, bytes: new TextEncoder().encode(OTLP_JSON["/v1/traces"]).byteLength }]);
    const again = recordingQueue();
    const second = createMessageBatch("tollgate-deliveries", [{ id: `d2-${org}`, timestamp: new Date(), attempts: 1, body: { org_id: org } }]);
    const [rerun] = await handleDeliveries(second, { ...parkingEnv, USAGE_FEATURES: ALL, USAGE: again } as never);
    expect(rerun).toMatchObject({ outcome: "done", delivered: 1 });
    expect(again.calls).toBe(0);
  });
});
