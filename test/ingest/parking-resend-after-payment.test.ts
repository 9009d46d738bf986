import { createExecutionContext, createMessageBatch, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { UsageMessage } from "../../src/shared/usage.ts";
import { handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { gate, logThrottle } from "../../src/ingest/request/isolate.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { gzip, INGEST, mintKey, override, sink } from "../support/ingest.ts";

/**
 * Break: "Kept once" meets delivery after payment. Logpush resends a refused upload (the README: about
 * 5 times, over a few minutes), and every 402 carries a pay link, so a customer paying within those
 * minutes is the expected path. The digest marker is consulted only while the org is suspended: the
 * resend that arrives after payment is forwarded as new data, while the parked copy is delivered too.
 * The same batch reaches the upstream twice, and is metered twice (parked copy at delivery, resend at
 * acceptance), against "a resend of one already kept ... is delivered once and metered once".
 */

const ALL = "traces=spans logs=log_records metrics=data_points logpush=log_records bytes=ingest_bytes";
const bucket = (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST;
const noQueue = { send: async () => {}, sendBatch: async () => {} };

function recordingQueue() {
  const sent: UsageMessage[] = [];
  return { sent, sendBatch: async (messages: Iterable<{ body: UsageMessage }>) => void sent.push(...[...messages].map((m) => m.body)) };
}
const total = (messages: UsageMessage[]) => {
  const sum: Record<string, number> = {};
  for (const m of messages) for (const [k, v] of Object.entries(m.counts)) sum[k] = (sum[k] ?? 0) + (v ?? 0);
  return sum;
};

async function send(workerEnv: object, path: string, key: string, init: RequestInit = {}) {
  const { default: worker } = await import("../../src/ingest/worker.ts");
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${key}`);
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`${INGEST}${path}`, { method: "POST", ...init, headers }) as never, workerEnv as IngestEnv, ctx);
  const text = await response.text();
  await waitOnExecutionContext(ctx);
  return { status: response.status, text };
}

let org: string;
beforeEach(() => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("brkdigpay");
});
afterEach(async () => {
  await sink.clearFaults();
  await deleteAllAlarms();
});

describe("break: a batch parked while suspended reaches upstream at most once after payment", () => {
  it("a Logpush retry of a kept batch arriving after payment is not forwarded again (nor metered again)", async () => {
    const { key } = await mintKey(org);
    const usage = recordingQueue();
    const workerEnv = { ...env, PARKING: bucket, DELIVERIES: noQueue, PARK_MAX_BYTES: "4MiB", PARK_RETENTION: "72h", USAGE_FEATURES: ALL, USAGE: usage } as unknown as IngestEnv;
    await override(org, "suspend");
    const lines = Array.from({ length: 5 }, (_, i) => JSON.stringify({ EdgeStartTimestamp: 1_700_000_000 + i, ClientIP: "192.0.2.9" })).join("\n");
    const batch = await gzip(lines);
    const path = "/v1/logpush/http_requests";
    const headers = { "content-encoding": "gzip" };

    const first = await send(workerEnv, path, key, { headers, body: batch });
    expect(first.status).toBe(402);
    expect(first.text).toContain("kept for");

    // The customer follows the pay link; the object queues the delivery, which runs.
    await override(org, "clear");
    gate.reset();
    const batchMsg = createMessageBatch("tollgate-deliveries", [{ id: `d-${org}`, timestamp: new Date(), attempts: 1, body: { org_id: org } }]);
    expect((await handleDeliveries(batchMsg, workerEnv as never))[0]).toMatchObject({ delivered: 1 });

    // Logpush's next scheduled retry of the upload it was refused.
    const retry = await send(workerEnv, path, key, { headers, body: batch });
    expect(retry.status).toBe(200);

    const logs = (await sink.requests(org)).filter((r) => r.path === "/v1/logs");
    expect({ upstreamCopies: logs.length, meteredRecords: total(usage.sent).logpush }).toEqual({ upstreamCopies: 1, meteredRecords: 5 });
  });
});
