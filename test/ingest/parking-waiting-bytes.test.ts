import { createExecutionContext, createMessageBatch, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { afterPark, askParked, ParkedReports } from "../../src/ingest/parking/after-park.ts";
import { cleanupParked, handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { orgPrefix, park, ParkedBytes, parkingSettings } from "../../src/ingest/parking/store.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { billingAdmin, mintKey, sink } from "../support/ingest.ts";
import { noQueue, parkingBucket as bucket } from "../support/parking.ts";

/**
 * Promise: the object's waiting_bytes (the per-org cap's figure) stays in step with what R2 holds.
 * Found by a reviewer (issue 18): before the fix, a trailing parked report landing after the delivery run
 * added bytes back that were no longer parked; the cleanup never cleared them and the cap refused parks
 * on them. (Intervals shortened here; the order is what production produces.)
 */

let org: string;
beforeEach(async () => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("brkwait");
  await mintKey(org);
});
afterEach(async () => {
  await sink.clearFaults();
  await deleteAllAlarms();
});

describe("waiting_bytes stays in step with R2", () => {
  it("a trailing parked report landing after the delivery run leaves phantom waiting bytes that the cleanup never clears and the cap refuses on", async () => {
    const workerEnv = { ...env, PARKING: bucket, DELIVERIES: noQueue, PARK_MAX_BYTES: "1000B", PARK_RETENTION: "72h" } as unknown as IngestEnv;
    const settings = parkingSettings(workerEnv as never)!;
    const reports = new ParkedReports({ intervalMs: 300 });
    const ledger = new ParkedBytes();
    const now = Date.now();
    const batch = (n: number) => ({ orgId: org, route: "/v1/traces", contentType: "application/x-protobuf", contentEncoding: null, receivedAt: now + n, why: "upstream_unavailable" as const });

    // Two outage parks within one report interval.
    expect((await park(settings, batch(0), new Uint8Array(400).fill(1), now, ledger)).parked).toBe(true);
    const ctx1 = createExecutionContext();
    afterPark(workerEnv as never, ctx1, settings, org, 400, "upstream_unavailable", now, reports, ledger);
    await waitOnExecutionContext(ctx1);
    expect((await park(settings, batch(1), new Uint8Array(400).fill(2), now + 1, ledger)).parked).toBe(true);
    const ctx2 = createExecutionContext();
    afterPark(workerEnv as never, ctx2, settings, org, 400, "upstream_unavailable", now + 1, reports, ledger);

    // The delivery queued after the first park runs before the trailing report: the upstream is back.
    const run = (await handleDeliveries(createMessageBatch("tollgate-deliveries", [{ id: `d-${org}`, timestamp: new Date(), attempts: 1, body: { org_id: org } }]), workerEnv as never))[0]!;
    expect(run).toMatchObject({ outcome: "done", delivered: 2 });
    await waitOnExecutionContext(ctx2); // the trailing report
    expect((await bucket.list({ prefix: orgPrefix(org) })).objects).toHaveLength(0);

    // The cron's cleanup, which is to keep the figure in step with R2.
    await cleanupParked(workerEnv as never, Date.now());
    const view = (await (await billingAdmin(`/orgs/${org}`)).json()) as { parking: { waiting_bytes: number } };

    // A fresh isolate at the next outage: it asks the object, and parks a 700-byte batch under a 1000-byte cap with R2 empty.
    const fresh = new ParkedBytes();
    await askParked(workerEnv as never, org, fresh);
    const next = await park(settings, batch(2), new Uint8Array(700).fill(3), Date.now(), fresh);
    expect({ waiting_bytes: view.parking.waiting_bytes, next_parked: next.parked }).toEqual({ waiting_bytes: 0, next_parked: true });
  });
});
