import { createExecutionContext, createMessageBatch } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { UsageMessage } from "../../src/shared/usage.ts";
import { handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { orgPrefix, parkedBytes } from "../../src/ingest/parking/store.ts";
import { gate, logThrottle } from "../../src/ingest/request/isolate.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { gzip, INGEST, mintKey, override, sink } from "../support/ingest.ts";

/**
 * Break: a suspended org's Logpush batch is parked piece by piece (about 4 MiB of OTLP JSON each). When
 * a later piece cannot be parked (here a transient R2 put failure; the per-org cap does the same), the
 * job gets the plain 402 (not "kept"), no digest marker is written, but the pieces already parked stay
 * and are delivered and metered after payment. Logpush resends the refused upload; the resend is parked
 * whole. After payment the first piece reaches the upstream twice and its records are metered twice.
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

/** The bucket, with parked-batch puts failing from the `failFrom`-th on (one transient failure). */
function flakyBucket(failAt: number): R2Bucket {
  let puts = 0;
  return new Proxy(bucket, {
    get(target, name) {
      const value = Reflect.get(target, name);
      if (name === "put") {
        return async (key: string, ...rest: unknown[]) => {
          if (key.startsWith("parked/") && ++puts === failAt) throw new Error("R2: internal error (transient)");
          return (value as (...a: unknown[]) => unknown).call(target, key, ...rest);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function send(workerEnv: object, path: string, key: string, init: RequestInit = {}) {
  const { default: worker } = await import("../../src/ingest/worker.ts");
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${key}`);
  const response = await worker.fetch(new Request(`${INGEST}${path}`, { method: "POST", ...init, headers }) as never, workerEnv as IngestEnv, createExecutionContext());
  return { status: response.status, text: await response.text() };
}

let org: string;
beforeEach(() => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("brklppart");
});
afterEach(async () => {
  await sink.clearFaults();
  await deleteAllAlarms();
});

describe("break: a suspended org's Logpush batch reaches upstream at most once after payment", () => {
  it("a batch whose second piece failed to park (plain 402) and is then resent: its first piece is delivered and metered once", async () => {
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const pad = "x".repeat(300);
    const records = 12_000;
    const lines = Array.from({ length: records }, (_, i) => JSON.stringify({ EdgeStartTimestamp: 1_700_000_000 + i, ClientIP: "192.0.2.1", RayID: `ray${i}`, Pad: pad })).join("\n");
    const batch = await gzip(lines);
    const base = { ...env, DELIVERIES: noQueue, PARK_MAX_BYTES: "256MiB", PARK_RETENTION: "72h", MAX_DECOMPRESSED_BYTES: "16MiB" };
    const path = "/v1/logpush/http_requests";
    const headers = { "content-encoding": "gzip" };

    const first = await send({ ...base, PARKING: flakyBucket(2) }, path, key, { headers, body: batch });
    expect(first.status).toBe(402);
    expect(first.text).not.toContain("kept for");
    const afterFirst = (await bucket.list({ prefix: orgPrefix(org) })).objects.length;
    // Fixed (kept-once.ts): a park that stopped part way deletes the pieces it parked (the job was told
    // nothing was kept and resends the whole batch). This line asserted the defect (1: the piece stayed).
    expect(afterFirst).toBe(0);

    // Logpush resends the refused upload (R2 is fine again).
    parkedBytes.forget(org);
    const resend = await send({ ...base, PARKING: bucket }, path, key, { headers, body: batch });
    expect(resend.status).toBe(402);
    expect(resend.text).toContain("kept for");

    await override(org, "clear");
    const usage = recordingQueue();
    const deliveryEnv = { ...base, PARKING: bucket, USAGE_FEATURES: ALL, USAGE: usage };
    let run;
    do {
      run = (await handleDeliveries(createMessageBatch("tollgate-deliveries", [{ id: `d-${Math.random()}`, timestamp: new Date(), attempts: 1, body: { org_id: org } }]), deliveryEnv as never))[0]!;
    } while (run.outcome === "more");
    const pieces = (await sink.requests(org)).filter((r) => r.path === "/v1/logs");
    const resendPieces = (await bucket.list({ prefix: orgPrefix(org) })).objects.length;
    // The batch is two pieces: each should reach the upstream once, and its records be metered once.
    expect({ resendPieces, upstreamPieces: pieces.length, meteredRecords: total(usage.sent).logpush }).toEqual({ resendPieces: 0, upstreamPieces: 2, meteredRecords: records });
  });
});
