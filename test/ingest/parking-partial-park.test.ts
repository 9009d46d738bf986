import { createMessageBatch } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { orgPrefix, parkedBytes } from "../../src/ingest/parking/store.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { gzip, mintKey, override, sink } from "../support/ingest.ts";
import { ALL, noQueue, parkingBucket as bucket, recordingQueue, send, total } from "../support/parking.ts";

/**
 * Promise: a suspended org's Logpush batch, parked in pieces, reaches the upstream and is metered once
 * after payment, even when a piece failed to park and Logpush resent the batch.
 * Found by a reviewer (issue 18): before the fix, a park that stopped part way left the pieces already
 * parked; the resend was parked whole, so the first piece was delivered and metered twice.
 */

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

describe("a suspended org's Logpush batch reaches upstream at most once after payment", () => {
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
