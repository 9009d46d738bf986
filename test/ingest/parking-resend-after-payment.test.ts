import { createMessageBatch } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { gzip, mintKey, override, sink } from "../support/ingest.ts";
import { ALL, parkingEnv, recordingQueue, send, total } from "../support/parking.ts";

/**
 * Promise: a batch answered "kept" while suspended reaches the upstream and is metered once, even when
 * Logpush resends it after the customer has paid.
 * Found by a reviewer (issue 18): before the fix, the digest marker was consulted only while the org was
 * suspended, so a resend after payment was forwarded as new data as well as the parked copy delivered.
 */

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

describe("a batch parked while suspended reaches upstream at most once after payment", () => {
  it("a Logpush retry of a kept batch arriving after payment is not forwarded again (nor metered again)", async () => {
    const { key } = await mintKey(org);
    const usage = recordingQueue();
    const workerEnv = parkingEnv({ USAGE_FEATURES: ALL, USAGE: usage });
    await override(org, "suspend");
    const lines = Array.from({ length: 5 }, (_, i) => JSON.stringify({ EdgeStartTimestamp: 1_700_000_000 + i, ClientIP: "192.0.2.9" })).join("\n");
    const batch = await gzip(lines);
    const path = "/v1/logpush/http_requests";
    const headers = { "content-encoding": "gzip" };

    const first = await send(workerEnv, path, key, { headers, body: batch }, true);
    expect(first.status).toBe(402);
    expect(first.text).toContain("kept for");

    // The customer follows the pay link; the object queues the delivery, which runs.
    await override(org, "clear");
    gate.reset();
    const batchMsg = createMessageBatch("tollgate-deliveries", [{ id: `d-${org}`, timestamp: new Date(), attempts: 1, body: { org_id: org } }]);
    expect((await handleDeliveries(batchMsg, workerEnv as never))[0]).toMatchObject({ delivered: 1 });

    // Logpush's next scheduled retry of the upload it was refused.
    const retry = await send(workerEnv, path, key, { headers, body: batch }, true);
    expect(retry.status).toBe(200);

    const logs = (await sink.requests(org)).filter((r) => r.path === "/v1/logs");
    expect({ upstreamCopies: logs.length, meteredRecords: total(usage.sent).logpush }).toEqual({ upstreamCopies: 1, meteredRecords: 5 });
  });
});
