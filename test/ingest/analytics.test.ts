import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms } from "../support/billing.ts";
import { ingestWithEnv, mintKey, sink } from "../support/ingest.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

/**
 * An Analytics Engine dataset that enforces the platform's limits the way workerd does, by
 * throwing: one index of at most 96 bytes, at most 20 blobs of at most 16 KiB together, at
 * most 20 doubles, all finite.
 */
function strictDataset() {
  const points: AnalyticsEngineDataPoint[] = [];
  const bytes = (value: unknown) => (value === null || value === undefined ? 0 : typeof value === "string" ? new TextEncoder().encode(value).byteLength : (value as ArrayBuffer).byteLength);
  return {
    points,
    writeDataPoint(point: AnalyticsEngineDataPoint = {}) {
      const indexes = point.indexes ?? [];
      if (indexes.length > 1) throw new TypeError("Maximum of 1 indexes supported");
      if (indexes.some((index) => bytes(index) > 96)) throw new TypeError("Index value must be at most 96 bytes");
      const blobs = point.blobs ?? [];
      if (blobs.length > 20) throw new TypeError("Maximum of 20 blobs supported");
      if (blobs.reduce((total, blob) => total + bytes(blob), 0) > 16 * 1024) throw new TypeError("Blobs must be at most 16 KiB in total");
      const doubles = point.doubles ?? [];
      if (doubles.length > 20) throw new TypeError("Maximum of 20 doubles supported");
      if (doubles.some((d) => !Number.isFinite(d))) throw new TypeError("Doubles must be finite");
      points.push(point);
    },
  };
}

const longOrg = (tail: string) => `${"a".repeat(128 - tail.length - 9)}${crypto.randomUUID().slice(0, 8)}_${tail}`;

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await deleteAllAlarms();
});

const send = (workerEnv: object, key: string, contentType = "application/json") =>
  ingestWithEnv(workerEnv, "/v1/traces", { key, headers: { "content-type": contentType }, body: OTLP_JSON["/v1/traces"] });

describe("Analytics Engine accounting", () => {
  it("a 128-character org id is accepted and counted under an index of at most 96 bytes", async () => {
    const dataset = strictDataset();
    const org = longOrg("x");
    expect(org).toHaveLength(128);
    const { key } = await mintKey(org);
    const response = await send({ ...env, INGEST_ANALYTICS: dataset }, key);
    expect(response.status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(1);
    expect(dataset.points).toHaveLength(1);
    const [point] = dataset.points;
    expect(new TextEncoder().encode(point!.indexes![0] as string).byteLength).toBeLessThanOrEqual(96);
    expect(point!.blobs).toEqual(["/v1/traces", "accepted", "200", org]);
  });

  it("long org ids that share a prefix keep distinct indexes", async () => {
    const dataset = strictDataset();
    const shared = "b".repeat(120);
    for (const org of [`${shared}_one_1`, `${shared}_two_2`]) {
      const { key } = await mintKey(org);
      expect((await send({ ...env, INGEST_ANALYTICS: dataset }, key, "text/plain")).status).toBe(415);
    }
    const [first, second] = dataset.points.map((p) => p.indexes![0]);
    expect(first).not.toBe(second);
  });

  it("short org ids are their own index", async () => {
    const dataset = strictDataset();
    const org = `short_${crypto.randomUUID().slice(0, 8)}`;
    const { key } = await mintKey(org);
    await send({ ...env, INGEST_ANALYTICS: dataset }, key);
    expect(dataset.points[0]!.indexes).toEqual([org]);
  });

  it("a dataset that throws never fails a forwarded request, and the failure is logged", async () => {
    const broken = { writeDataPoint: () => { throw new Error("analytics engine unavailable"); } };
    const org = `ae_down_${crypto.randomUUID().slice(0, 8)}`;
    const { key } = await mintKey(org);
    const errors: unknown[] = [];
    vi.spyOn(console, "error").mockImplementation((entry) => void errors.push(entry));
    const response = await send({ ...env, INGEST_ANALYTICS: broken }, key);
    expect(response.status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(1);
    expect((await send({ ...env, INGEST_ANALYTICS: broken }, key, "text/plain")).status).toBe(415);
    expect(errors).toContainEqual(expect.objectContaining({ event: "analytics_write_failed" }));
  });
});
