import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { deleteAllAlarms } from "../support/billing.ts";
import { ingestWithEnv, mintKey } from "../support/ingest.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

/**
 * docs/scale.md's Analytics Engine formula, counted: one data point per ingest request (R points/s), so a Worker
 * invocation writes one, far under the platform's 250 per invocation, whatever the traffic.
 */
beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});
afterEach(() => deleteAllAlarms());

describe("Analytics Engine load", () => {
  it("writes exactly one data point per ingest request, warm or cold", async () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const dataset = { writeDataPoint: (point: AnalyticsEngineDataPoint = {}) => void points.push(point) };
    const org = `points_${crypto.randomUUID().slice(0, 8)}`;
    const { key } = await mintKey(org);
    const requests = 7;
    for (let i = 0; i < requests; i++) {
      const before = points.length;
      const response = await ingestWithEnv({ ...env, INGEST_ANALYTICS: dataset }, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });
      expect(response.status).toBe(200);
      expect(points.length - before).toBe(1);
    }
    expect(points).toHaveLength(requests);
    expect(points.every((point) => point.blobs?.[3] === org)).toBe(true);
  });
});
