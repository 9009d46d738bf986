import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { afterPark, ParkedReports } from "../../src/ingest/parking/after-park.ts";
import { parkingSettings } from "../../src/ingest/parking/store.ts";
import { billingAdmin } from "../support/ingest.ts";

describe("after a batch is parked", () => {
  it("reports to the org's object at most once per interval per isolate, with the batches in between riding along", () => {
    const reports = new ParkedReports({ intervalMs: 10_000 });
    expect(reports.add("org_r", 100, 0)).toEqual({ parked_batches: 1, parked_bytes: 100, parked_until: 0 });
    expect(reports.add("org_r", 200, 1_000)).toBeNull();
    expect(reports.add("org_r", 300, 9_999)).toBeNull();
    expect(reports.add("org_r", 400, 10_000)).toEqual({ parked_batches: 3, parked_bytes: 900, parked_until: 10_000 });
    expect(reports.add("org_other", 5, 10_001)).toEqual({ parked_batches: 1, parked_bytes: 5, parked_until: 10_001 });
  });

  it("keeps bounded memory", () => {
    const reports = new ParkedReports({ capacity: 20 });
    for (let i = 0; i < 500; i++) reports.add(`org_${i}`, 1, i);
    expect(reports.size).toBeLessThanOrEqual(20);
  });

  it("an outage park queues one delivery per org per 10 s with a short delay; a suspended park queues none; the object hears of the parked batch", async () => {
    const org = `after-park-${Date.now().toString(36)}`;
    const sent: { body: unknown; options: unknown }[] = [];
    const workerEnv = { ...env, PARKING: (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST, DELIVERIES: { send: async (body: unknown, options: unknown) => void sent.push({ body, options }) } };
    const parking = parkingSettings(workerEnv as never)!;
    const waits: Promise<unknown>[] = [];
    const ctx = { waitUntil: (p: Promise<unknown>) => void waits.push(p) };
    const now = Date.now();
    // A short report interval, so the trailing report of the two held-back batches is quick.
    const reports = new ParkedReports({ intervalMs: 20 });
    afterPark(workerEnv as never, ctx, parking, org, 100, "suspended", now, reports);
    afterPark(workerEnv as never, ctx, parking, org, 100, "upstream_unavailable", now + 1, reports);
    afterPark(workerEnv as never, ctx, parking, org, 100, "upstream_unavailable", now + 2, reports);
    await Promise.all(waits);
    expect(sent).toEqual([{ body: { org_id: org }, options: { delaySeconds: 5 } }]);
    const view = (await (await billingAdmin(`/orgs/${org}`)).json()) as { parking: Record<string, number> };
    expect(view.parking).toMatchObject({ parked_batches: 3, parked_bytes: 300 });
  });

  it("batches held back by the throttle are reported at the end of the interval, not only with the next park", async () => {
    const org = `after-park-trailing-${Date.now().toString(36)}`;
    const workerEnv = { ...env, PARKING: (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST };
    const parking = parkingSettings(workerEnv as never)!;
    const waits: Promise<unknown>[] = [];
    const ctx = { waitUntil: (p: Promise<unknown>) => void waits.push(p) };
    const reports = new ParkedReports({ intervalMs: 50 });
    const now = Date.now();
    for (let i = 0; i < 3; i++) afterPark(workerEnv as never, ctx, parking, org, 100, "suspended", now + i, reports);
    await Promise.all(waits);
    const view = (await (await billingAdmin(`/orgs/${org}`)).json()) as { parking: Record<string, number> };
    expect(view.parking).toMatchObject({ parked_batches: 3, parked_bytes: 300 });
  });
});
