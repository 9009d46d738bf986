import { createMessageBatch, getQueueResult, createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { cleanupParked, deliverOrg, deliveryBackoffSeconds, handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { orgPrefix, park, ParkedBytes, parkingSettings, receivedAtOfKey, type ParkingSettings } from "../../src/ingest/parking/store.ts";
import { billingAdmin, bodyOf, override, sink } from "../support/ingest.ts";
import { parkingBucket as bucket } from "../support/parking.ts";

let counter = 0;
const uniqueOrg = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${counter++}`;
const parkingEnv = (extra: Record<string, unknown> = {}) => ({ ...env, PARKING: bucket, PARK_MAX_BYTES: "1KiB", PARK_RETENTION: "72h", ...extra }) as unknown as IngestEnv;
const settingsOf = (e: object) => parkingSettings(e as never)!;
const HOUR = 3_600_000;

afterEach(() => sink.clearFaults());

async function parkSome(settings: ParkingSettings, orgId: string, bodies: Uint8Array[], receivedAt: number, ledger = new ParkedBytes()) {
  const keys: string[] = [];
  for (const [i, body] of bodies.entries()) {
    const outcome = await park(settings, { orgId, route: "/v1/traces", contentType: "application/x-protobuf", contentEncoding: "gzip", receivedAt: receivedAt + i, why: "suspended" }, body, receivedAt + i, ledger);
    if (!outcome.parked) throw new Error(`not parked: ${outcome.why}`);
    keys.push(outcome.key);
  }
  return keys;
}

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);
const listed = async (orgId: string) => (await bucket.list({ prefix: orgPrefix(orgId) })).objects.map((o) => o.key);

describe("parking", () => {
  it("is off without a PARKING binding", () => {
    expect(parkingSettings(env as never)).toBeNull();
    expect(parkingSettings(parkingEnv() as never)).toMatchObject({ maxBytes: 1024, retentionMs: 72 * HOUR });
  });

  it("keeps the body as sent with where it goes and why, under keys that list in receive order", async () => {
    const org = uniqueOrg("park-keep");
    const now = Date.now();
    const keys = await parkSome(settingsOf(parkingEnv()), org, [bytes(10, 1), bytes(20, 2), bytes(30, 3)], now);
    expect(await listed(org)).toEqual(keys);
    expect(keys.map(receivedAtOfKey)).toEqual([now, now + 1, now + 2]);
    const object = await bucket.get(keys[1]!);
    expect(new Uint8Array(await object!.arrayBuffer())).toEqual(bytes(20, 2));
    expect(object!.customMetadata).toEqual({ route: "/v1/traces", content_type: "application/x-protobuf", content_encoding: "gzip", received_at: String(now + 1), why: "suspended", counted: "none" });
  });

  it("stops at the per-org cap and keeps the oldest; the cap counts other isolates' writes once the org's object reports them", async () => {
    const org = uniqueOrg("park-cap");
    const settings = settingsOf(parkingEnv());
    const now = Date.now();
    const isolateA = new ParkedBytes();
    await parkSome(settings, org, [bytes(400, 1), bytes(400, 2)], now, isolateA);
    const over = await park(settings, { orgId: org, route: "/v1/logs", contentType: "application/json", contentEncoding: null, receivedAt: now + 5, why: "suspended" }, bytes(400, 3), now + 5, isolateA);
    expect(over).toEqual({ parked: false, why: "over_cap" });
    // Another isolate, which never wrote for this org, counts what the org's object says is there.
    const isolateB = new ParkedBytes();
    isolateB.heard(org, 800, 0, now + 6);
    expect((await park(settings, { orgId: org, route: "/v1/logs", contentType: "application/json", contentEncoding: null, receivedAt: now + 6, why: "suspended" }, bytes(400, 4), now + 6, isolateB)).parked).toBe(false);
    expect((await listed(org)).length).toBe(2);
    // A small batch still fits under the cap.
    expect((await park(settings, { orgId: org, route: "/v1/logs", contentType: "application/json", contentEncoding: null, receivedAt: now + 7, why: "suspended" }, bytes(100, 5), now + 7, isolateB)).parked).toBe(true);
    // An answer that includes this isolate's reported writes does not count them twice; a stale one is forgotten.
    isolateA.heard(org, 900, 800, now + 8);
    expect(isolateA.estimate(org, now + 8)).toBe(900);
    expect(isolateA.estimate(org, now + 8 + 60_000)).toBe(0);
    expect(isolateA.shouldAsk(org, now + 9)).toBe(false);
    expect(isolateA.shouldAsk(org, now + 8 + 10_000)).toBe(true);
    expect(isolateA.shouldAsk(org, now + 8 + 10_001)).toBe(false);
  });
});

describe("delivery", () => {
  it("delivers an org's batches in order, byte for byte, with the tenant header, deleting each, and reports it to the org's object", async () => {
    const org = uniqueOrg("deliver-order");
    const workerEnv = parkingEnv();
    const bodies = [bytes(100, 7), bytes(200, 8), bytes(300, 9)];
    await parkSome(settingsOf(workerEnv), org, bodies, Date.now() - 1_000);
    const batch = createMessageBatch("tollgate-deliveries", [{ id: "m1", timestamp: new Date(), attempts: 1, body: { org_id: org } }]);
    const ctx = createExecutionContext();
    const [result] = await handleDeliveries(batch, workerEnv as never);
    expect(result).toMatchObject({ outcome: "done", delivered: 3, deliveredBytes: 600 });
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["m1"]);
    const received = await sink.requests(org);
    expect(received.map((r) => r.path)).toEqual(["/v1/traces", "/v1/traces", "/v1/traces"]);
    expect(received.map((r) => bodyOf(r))).toEqual(bodies);
    expect(received.every((r) => r.tenant === org && r.content_encoding === "gzip" && r.content_type === "application/x-protobuf")).toBe(true);
    expect(await listed(org)).toEqual([]);
    const view = (await (await billingAdmin(`/orgs/${org}`)).json()) as { parking: Record<string, number> };
    expect(view.parking).toMatchObject({ delivered_batches: 3, delivered_bytes: 600 });
  });

  it("an upstream failing during delivery stops the run (later batches never overtake) and the message is retried with backoff; the retry delivers the rest in order", async () => {
    const org = uniqueOrg("deliver-retry");
    const workerEnv = parkingEnv();
    const bodies = [bytes(10, 1), bytes(10, 2), bytes(10, 3)];
    await parkSome(settingsOf(workerEnv), org, bodies, Date.now() - 1_000);
    await sink.fault({ mode: "status", status: 503, count: 1, tenant: org });
    const first = createMessageBatch("tollgate-deliveries", [{ id: "r1", timestamp: new Date(), attempts: 1, body: { org_id: org } }]);
    const ctx = createExecutionContext();
    const [failed] = await handleDeliveries(first, workerEnv as never);
    expect(failed).toMatchObject({ outcome: "failed", delivered: 0 });
    const queued = await getQueueResult(first, ctx);
    expect(queued.retryMessages).toEqual([expect.objectContaining({ msgId: "r1" })]);
    expect([1, 2, 3, 8, 20].map(deliveryBackoffSeconds)).toEqual([5, 10, 20, 600, 600]);
    expect((await listed(org)).length).toBe(3);
    const second = createMessageBatch("tollgate-deliveries", [{ id: "r1", timestamp: new Date(), attempts: 2, body: { org_id: org } }]);
    const [done] = await handleDeliveries(second, workerEnv as never);
    expect(done).toMatchObject({ outcome: "done", delivered: 3 });
    const delivered = (await sink.requests(org)).filter((r) => r.bytes === 10);
    expect(delivered.slice(-3).map((r) => bodyOf(r))).toEqual(bodies);
  });

  it("deletes expired batches instead of delivering them, and counts them", async () => {
    const org = uniqueOrg("deliver-expired");
    const workerEnv = parkingEnv({ PARK_RETENTION: "1h" });
    await parkSome(settingsOf(workerEnv), org, [bytes(50, 1)], Date.now() - 2 * HOUR);
    await parkSome(settingsOf(workerEnv), org, [bytes(60, 2)], Date.now() - 1_000);
    const result = await deliverOrg(workerEnv as never, settingsOf(workerEnv), org);
    expect(result).toMatchObject({ outcome: "done", delivered: 1, expired: 1, expiredBytes: 50 });
    expect((await sink.requests(org)).map((r) => bodyOf(r))).toEqual([bytes(60, 2)]);
  });

  it("a parking store failing mid-run fails the run (retried) and keeps what it delivered before", async () => {
    const org = uniqueOrg("deliver-r2-fails");
    const workerEnv = parkingEnv();
    await parkSome(settingsOf(workerEnv), org, [bytes(10, 1), bytes(20, 2)], Date.now());
    let gets = 0;
    const flaky = { list: bucket.list.bind(bucket), delete: bucket.delete.bind(bucket), get: async (key: string) => (++gets === 2 ? Promise.reject(new Error("R2 down")) : bucket.get(key)) };
    const settings = { ...settingsOf(workerEnv), bucket: flaky as unknown as R2Bucket };
    const result = await deliverOrg(workerEnv as never, settings, org);
    expect(result).toMatchObject({ outcome: "failed", delivered: 1, failure: expect.stringContaining("R2 down") });
    expect((await sink.requests(org)).map((r) => bodyOf(r))).toEqual([bytes(10, 1)]);
    expect((await listed(org)).length).toBe(1);
  });

  it("waits while the org is suspended", async () => {
    const org = uniqueOrg("deliver-suspended");
    await override(org, "suspend");
    const workerEnv = parkingEnv();
    await parkSome(settingsOf(workerEnv), org, [bytes(10, 1)], Date.now());
    expect(await deliverOrg(workerEnv as never, settingsOf(workerEnv), org)).toMatchObject({ outcome: "suspended", delivered: 0 });
    expect((await listed(org)).length).toBe(1);
    expect(await sink.requests(org)).toEqual([]);
  });

  it("with parking off, messages are acknowledged and nothing is read or sent", async () => {
    const batch = createMessageBatch("tollgate-deliveries", [{ id: "off1", timestamp: new Date(), attempts: 1, body: { org_id: "org-off" } }]);
    const ctx = createExecutionContext();
    expect(await handleDeliveries(batch, env as never)).toMatchObject([{ outcome: "off", delivered: 0 }]);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["off1"]);
  });
});

describe("cleanup", () => {
  it("deletes expired batches of every org, reports them, and queues a delivery for every org with batches waiting", async () => {
    const expiredOrg = uniqueOrg("cleanup-expired");
    const waitingOrg = uniqueOrg("cleanup-waiting");
    const sent: unknown[] = [];
    const workerEnv = parkingEnv({ PARK_RETENTION: "1h", DELIVERIES: { sendBatch: async (messages: { body: unknown }[]) => void sent.push(...messages.map((m) => m.body)) } });
    await parkSome(settingsOf(workerEnv), expiredOrg, [bytes(10, 1), bytes(10, 2)], Date.now() - 3 * HOUR);
    await parkSome(settingsOf(workerEnv), waitingOrg, [bytes(10, 3)], Date.now());
    const result = await cleanupParked(workerEnv as never, Date.now());
    expect(result!.expired).toBeGreaterThanOrEqual(2);
    expect(await listed(expiredOrg)).toEqual([]);
    expect((await listed(waitingOrg)).length).toBe(1);
    expect(sent).toContainEqual({ org_id: waitingOrg });
    expect(sent).not.toContainEqual({ org_id: expiredOrg });
    const view = (await (await billingAdmin(`/orgs/${expiredOrg}`)).json()) as { parking: Record<string, number> };
    expect(view.parking).toMatchObject({ expired_batches: 2, expired_bytes: 20 });
  });

  it("does nothing with parking off", async () => {
    expect(await cleanupParked(env as never, Date.now())).toBeNull();
  });
});

describe("the ingest Worker's handlers", () => {
  it("its queue handler delivers parked batches, and its scheduled handler cleans up", async () => {
    const { default: worker } = await import("../../src/ingest/worker.ts");
    const { createScheduledController } = await import("cloudflare:test");
    const org = uniqueOrg("worker-queue");
    const workerEnv = parkingEnv({ PARK_RETENTION: "1h" });
    await parkSome(settingsOf(workerEnv), org, [bytes(10, 4)], Date.now() - 1_000);
    const batch = createMessageBatch("tollgate-deliveries", [{ id: "w1", timestamp: new Date(), attempts: 1, body: { org_id: org } }]);
    const ctx = createExecutionContext();
    await worker.queue!(batch as never, workerEnv, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["w1"]);
    expect((await sink.requests(org)).map((r) => bodyOf(r))).toEqual([bytes(10, 4)]);

    const old = uniqueOrg("worker-cron");
    await parkSome(settingsOf(workerEnv), old, [bytes(10, 5)], Date.now() - 2 * HOUR);
    await worker.scheduled!(createScheduledController({ cron: "*/30 * * * *", scheduledTime: Date.now() }), workerEnv, createExecutionContext());
    expect(await listed(old)).toEqual([]);
  });
});
