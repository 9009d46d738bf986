import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import type { ActivityHour, ActivityMessage, FeatureLimit } from "../../src/shared/usage.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { ingestWithEnv, keyWithVerdict, mintKey, override, sink } from "../support/ingest.ts";
import { ALL, orgActivity, parkingBucket, recordingQueue, send } from "../support/parking.ts";
import { statusOf } from "../support/status.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

/**
 * Issue 21, third read (adversarial): observe mode where it meets an upstream outage (parking) and the
 * customer's GET /v1/status. A failing test here is a finding (see the report on branch h/break21-3).
 */

const json = { "content-type": "application/json" };
const traces = { headers: json, body: OTLP_JSON["/v1/traces"] };
const noDeliveries = { send: async () => {}, sendBatch: async () => {} };

function recordingDataset() {
  const points: AnalyticsEngineDataPoint[] = [];
  return { points, writeDataPoint: (point: AnalyticsEngineDataPoint = {}) => void points.push(point) };
}

const hours = (messages: ActivityMessage[]): ActivityHour[] => orgActivity(messages).flatMap((org) => org.hours);
/** The would-be refusals per code summed over the activity messages' hours: what the org's activity will count per code. */
function objectCodes(messages: ActivityMessage[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const hour of hours(messages)) for (const [code, n] of Object.entries(hour.would_refuse_codes ?? {})) sum[code] = (sum[code] ?? 0) + (n ?? 0);
  return sum;
}
/** The would-be refusals per code that Analytics Engine was told. */
function analyticsCodes(points: AnalyticsEngineDataPoint[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const point of points) if (point.blobs?.[1] === "would_refuse") sum[String(point.blobs[2])] = (sum[String(point.blobs[2])] ?? 0) + 1;
  return sum;
}

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});
afterEach(async () => {
  await sink.clearFaults();
  await deleteAllAlarms();
});

describe("observe mode meets an upstream outage: the would-be refusal's count", () => {
  it("an observed suspended org's batch parked during an outage (200 only because of observe mode) is counted under its code in the org's object, as in Analytics Engine", async () => {
    // The issue: "Each would-be refusal is counted per org and code in Analytics Engine and in the org's object";
    // docs/metering.md: the split per code is "as Analytics Engine counts it". Under enforce this client gets a 402;
    // observe mode let it through, the upstream was down, the batch was parked and answered 200. Analytics Engine
    // counts a would_refuse billing_suspended (request/admit.ts, at admission); the usage message counts it `parked`
    // alone (otlp/answer.ts answerParked), so the org's object, the console's chart and the overview's list of orgs
    // observe mode let through never see it. An observe week that overlaps an outage under-reports its would-be refusals.
    const org = uniqueOrg("brk2-obs-outage");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const dataset = recordingDataset();
    const queue = recordingQueue();
    const observing = { ...env, ENFORCEMENT: "observe", PARKING: parkingBucket, DELIVERIES: noDeliveries, PARK_MAX_BYTES: "4MiB", PARK_RETENTION: "72h", INGEST_ANALYTICS: dataset, USAGE: queue, USAGE_FEATURES: ALL };
    await sink.fault({ mode: "status", status: 503, count: 1, tenant: org });
    const { status } = await send(observing, "/v1/traces", key, traces, true);
    expect(status).toBe(200);
    expect(analyticsCodes(dataset.points)).toEqual({ billing_suspended: 1 });
    expect(objectCodes(queue.activity)).toEqual(analyticsCodes(dataset.points));
  });

  it("the same through Logpush: a parked upload of an observed suspended org is a would-be refusal under its code", async () => {
    const org = uniqueOrg("brk2-obs-lp-outage");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const dataset = recordingDataset();
    const queue = recordingQueue();
    const observing = { ...env, ENFORCEMENT: "observe", PARKING: parkingBucket, DELIVERIES: noDeliveries, PARK_MAX_BYTES: "4MiB", PARK_RETENTION: "72h", INGEST_ANALYTICS: dataset, USAGE: queue };
    await sink.fault({ mode: "status", status: 503, count: 1, tenant: org });
    const { status } = await send(observing, "/v1/logpush/http_requests", key, { body: '{"EdgeStartTimestamp":1700000000}\n' }, true);
    expect(status).toBe(200);
    expect(analyticsCodes(dataset.points)).toEqual({ billing_suspended: 1 });
    expect(objectCodes(queue.activity)).toEqual(analyticsCodes(dataset.points));
  });
});

describe("GET /v1/status under observe with a plan limit", () => {
  const spans: FeatureLimit = { feature_id: "spans", signals: ["traces"], reset_at: null };
  const limited = (enforcement: MirrorEntry["enforcement"]): MirrorEntry => ({ state: "ok", since: Date.now(), version: 1_000, suspend_at: null, suspended_at: null, pay_url: null, limits: [spans], enforcement });

  for (const [how, override, workerMode] of [
    ["the org's observe override while the Worker enforces", "observe", "enforce"],
    ["ENFORCEMENT=observe on the Worker", null, "observe"],
  ] as const) {
    it(`${how}: a limit the gate lets through (200) is not reported as enforced (docs: "whether ENFORCE_LIMITS refuses them (429)")`, async () => {
      // docs/ingest-api.md: `limits[].enforced` says "whether ENFORCE_LIMITS refuses them (429)"; the CLI prints it as
      // "refused (429)" (tools/cli/format.ts). Under observe the same signal's exports get 200, so a customer's engineer
      // reading the field (or `tollgate status`) is told traces are refused while they are accepted.
      const org = uniqueOrg("brk2-status-limit");
      const verdict = limited(override);
      const key = await keyWithVerdict(org, verdict);
      await env.BILLING_STATE.put(billingStateKey(org), JSON.stringify(verdict));
      const workerEnv = { ...env, ENFORCE_LIMITS: "true", ENFORCEMENT: workerMode };
      const exported = await ingestWithEnv(workerEnv, "/v1/traces", { key, ...traces });
      expect(exported.status).toBe(200);
      const body = await statusOf(workerEnv, key);
      expect(body.enforcement).toBe("observe");
      expect(body.reason).toContain("they are still accepted");
      expect(body.limits).toEqual([{ feature_id: "spans", signals: ["traces"], reset_at: null, enforced: false }]);
    });
  }

  it("held: the same limit under enforce is refused (429) and reported enforced", async () => {
    const org = uniqueOrg("brk2-status-enforced");
    const verdict = limited(null);
    const key = await keyWithVerdict(org, verdict);
    await env.BILLING_STATE.put(billingStateKey(org), JSON.stringify(verdict));
    const workerEnv = { ...env, ENFORCE_LIMITS: "true", ENFORCEMENT: "enforce" };
    expect((await ingestWithEnv(workerEnv, "/v1/traces", { key, ...traces })).status).toBe(429);
    const body = await statusOf(workerEnv, key);
    expect(body.enforcement).toBe("enforce");
    expect(body.limits).toEqual([{ feature_id: "spans", signals: ["traces"], reset_at: null, enforced: true }]);
  });
});
