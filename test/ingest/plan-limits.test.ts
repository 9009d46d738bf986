import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";
import type { FeatureLimit } from "../../src/shared/usage.ts";
import { planLimitRetryAfter, UPGRADE_LINK_DESCRIPTION } from "../../src/ingest/customer/plan-limit.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { decodeStatusWithHelp } from "../support/customer-decode.ts";
import { ingestWithEnv, keyWithVerdict, sink } from "../support/ingest.ts";
import { OTLP_JSON, OTLP_PROTOBUF } from "./fixtures/otlp.ts";

const clock = fakeClock();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const UPGRADE = "https://billing.example.com/upgrade?org={org_id}";

/** Settings are cached per env object: one object per configuration. */
const enforcing = { ...env, ENFORCE_LIMITS: "true", UPGRADE_URL: UPGRADE } as unknown as IngestEnv;
const notEnforcing = { ...env, ENFORCE_LIMITS: "false", UPGRADE_URL: UPGRADE } as unknown as IngestEnv;
const noUpgradeUrl = { ...env, ENFORCE_LIMITS: "true" } as unknown as IngestEnv;

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});

afterEach(async () => {
  await sink.clearFaults();
  await deleteAllAlarms();
});

function entry(limits: FeatureLimit[], state: MirrorEntry["state"] = "ok"): MirrorEntry {
  return { state, since: clock.now, version: 1_000, suspend_at: null, suspended_at: state === "suspended" ? clock.now : null, pay_url: null, limits, enforcement: null };
}

/** A paying org whose key's KV entry carries `verdict` (as the object's publication writes it). */
async function orgWith(prefix: string, verdict: MirrorEntry) {
  const org = uniqueOrg(prefix);
  return { org, key: await keyWithVerdict(org, verdict) };
}

const spans = (resetAt: number | null): FeatureLimit => ({ feature_id: "spans", signals: ["traces"], reset_at: resetAt });
const sendJson = (workerEnv: IngestEnv, key: string, path: "/v1/traces" | "/v1/logs" | "/v1/metrics" = "/v1/traces") =>
  ingestWithEnv(workerEnv, path, { key, headers: { "content-type": "application/json" }, body: OTLP_JSON[path] });
const sendProto = (workerEnv: IngestEnv, key: string, path: "/v1/traces" | "/v1/logs" | "/v1/metrics" = "/v1/traces") =>
  ingestWithEnv(workerEnv, path, { key, headers: { "content-type": "application/x-protobuf" }, body: OTLP_PROTOBUF[path] });
const sendLogpush = (workerEnv: IngestEnv, key: string) =>
  ingestWithEnv(workerEnv, "/v1/logpush/http_requests", { key, body: '{"EdgeStartTimestamp":1700000000,"ClientIP":"192.0.2.1","EdgeResponseStatus":200}\n' });

describe("plan limits at the edge", () => {
  it("refuses a used-up signal with 429 plan_limit_reached in JSON: the feature, the reset and where to upgrade, Retry-After until the reset", async () => {
    const resetAt = clock.now + 5 * DAY;
    const { org, key } = await orgWith("limit_json", entry([spans(resetAt)]));
    const response = await sendJson(enforcing, key);
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("3600");
    const upgradeUrl = `https://billing.example.com/upgrade?org=${encodeURIComponent(org)}`;
    const body = (await response.json()) as Record<string, string>;
    expect(body).toEqual({ error: "plan_limit_reached", message: expect.any(String), feature_id: "spans", reset_at: new Date(resetAt).toISOString(), upgrade_url: upgradeUrl });
    expect(body.message).toContain("allowance of spans is used up");
    expect(body.message).toContain(`resets ${new Date(resetAt).toISOString().replace(".000Z", "Z")} (in 5d)`);
    expect(body.message).toContain(`Upgrade the plan at ${upgradeUrl}`);
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("refuses protobuf clients with a google.rpc.Status: RESOURCE_EXHAUSTED, ErrorInfo plan_limit_reached with the same fields, a Help link to upgrade", async () => {
    const resetAt = clock.now + 90_500;
    const { org, key } = await orgWith("limit_pb", entry([spans(resetAt)]));
    const response = await sendProto(enforcing, key);
    expect(response.status).toBe(429);
    expect(response.headers.get("content-type")).toBe("application/x-protobuf");
    expect(response.headers.get("retry-after")).toBe("91");
    const status = decodeStatusWithHelp(new Uint8Array(await response.arrayBuffer()));
    const upgradeUrl = `https://billing.example.com/upgrade?org=${encodeURIComponent(org)}`;
    expect(status.code).toBe(8);
    expect(status.reason).toBe("plan_limit_reached");
    expect(status.metadata).toEqual({ feature_id: "spans", reset_at: new Date(resetAt).toISOString(), upgrade_url: upgradeUrl });
    expect(status.links).toEqual([{ description: UPGRADE_LINK_DESCRIPTION, url: upgradeUrl }]);
    expect(status.message).toContain("in 1m 30s");
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("Retry-After at the boundaries: reset in 1 ms is 1 s, a reset already passed is accepted, a balance that never resets is 3600", async () => {
    const soon = await orgWith("limit_1ms", entry([spans(clock.now + 1)]));
    const first = await sendJson(enforcing, soon.key);
    expect(first.status).toBe(429);
    expect(first.headers.get("retry-after")).toBe("1");

    const passed = await orgWith("limit_passed", entry([spans(clock.now)]));
    expect((await sendJson(enforcing, passed.key)).status).toBe(200);
    expect(await sink.requests(passed.org)).toHaveLength(1);

    const never = await orgWith("limit_never", entry([spans(null)]));
    const refused = await sendJson(enforcing, never.key);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("3600");
    const body = (await refused.json()) as { reset_at: string | null; message: string };
    expect(body.reset_at).toBeNull();
    expect(body.message).toContain("does not reset by itself");
  });

  it("lifts at the reset by itself: the cached verdict still carries the limit, the edge's clock decides", async () => {
    const { org, key } = await orgWith("limit_lifts", entry([spans(clock.now + 2_000)]));
    expect((await sendJson(enforcing, key)).status).toBe(429);
    clock.set(clock.now + 1_999);
    expect((await sendJson(enforcing, key)).headers.get("retry-after")).toBe("1");
    clock.set(clock.now + 1);
    expect((await sendJson(enforcing, key)).status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(1);
  });

  it("Retry-After is whole seconds rounded up, at least 1, at most an hour", () => {
    expect(planLimitRetryAfter(1_001, 0)).toBe(2);
    expect(planLimitRetryAfter(1_000, 0)).toBe(1);
    expect(planLimitRetryAfter(1, 0)).toBe(1);
    expect(planLimitRetryAfter(HOUR, 0)).toBe(3600);
    expect(planLimitRetryAfter(HOUR + 1, 0)).toBe(3600);
    expect(planLimitRetryAfter(null, 0)).toBe(3600);
  });

  it("with ENFORCE_LIMITS=false (the default) a used-up signal is accepted", async () => {
    const { org, key } = await orgWith("limit_off", entry([spans(clock.now + DAY)]));
    expect((await sendJson(notEnforcing, key)).status).toBe(200);
    expect((await sendJson(env as unknown as IngestEnv, key)).status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(2);
  });

  it("refuses only the signals the limit covers; the bytes feature covers every route, Logpush included", async () => {
    const traces = await orgWith("limit_traces_only", entry([spans(clock.now + DAY)]));
    expect((await sendJson(enforcing, traces.key, "/v1/traces")).status).toBe(429);
    expect((await sendJson(enforcing, traces.key, "/v1/logs")).status).toBe(200);
    expect((await sendJson(enforcing, traces.key, "/v1/metrics")).status).toBe(200);
    expect((await sendLogpush(enforcing, traces.key)).status).toBe(200);

    const bytes = await orgWith("limit_bytes", entry([{ feature_id: "ingest_bytes", signals: ["bytes"], reset_at: clock.now + DAY }]));
    for (const path of ["/v1/traces", "/v1/logs", "/v1/metrics"] as const) {
      const response = await sendProto(enforcing, bytes.key, path);
      expect(response.status).toBe(429);
      expect(decodeStatusWithHelp(new Uint8Array(await response.arrayBuffer())).metadata.feature_id).toBe("ingest_bytes");
    }
    const logpush = await sendLogpush(enforcing, bytes.key);
    expect(logpush.status).toBe(429);
    expect(logpush.headers.get("content-type")).toContain("application/json");
    const body = (await logpush.json()) as { error: string; feature_id: string; message: string };
    expect(body).toMatchObject({ error: "plan_limit_reached", feature_id: "ingest_bytes" });
    expect(body.message).toContain("Logpush retries a refused batch for a few minutes only");
    expect(await sink.requests(bytes.org)).toHaveLength(0);
  });

  it("a suspended org gets its 402 even when a limit is reached too: suspension wins", async () => {
    const verdict = entry([spans(clock.now + DAY)], "suspended");
    const { org, key } = await orgWith("limit_suspended", verdict);
    // The org's object confirms the suspension (with the same limits).
    const stub = { verdict: async () => verdict };
    const workerEnv = { ...enforcing, ORG_BILLING: { getByName: () => stub } } as unknown as IngestEnv;
    const response = await sendJson(workerEnv, key);
    expect(response.status).toBe(402);
    expect(((await response.json()) as { error: string }).error).toBe("billing_suspended");
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("without UPGRADE_URL the refusal names no URL and has no Help link", async () => {
    const { key } = await orgWith("limit_no_url", entry([spans(clock.now + DAY)]));
    const json = await sendJson(noUpgradeUrl, key);
    const body = (await json.json()) as { upgrade_url: string | null; message: string };
    expect(body.upgrade_url).toBeNull();
    expect(body.message).toContain("Upgrade the plan (or contact support)");
    const status = decodeStatusWithHelp(new Uint8Array(await (await sendProto(noUpgradeUrl, key)).arrayBuffer()));
    expect(status.links).toEqual([]);
    expect(status.metadata.upgrade_url).toBeUndefined();
  });

  it("an invalid UPGRADE_URL is a configuration error naming the variable", async () => {
    const { key } = await orgWith("limit_bad_url", entry([]));
    const response = await sendJson({ ...env, UPGRADE_URL: "http://billing.example.com/upgrade" } as unknown as IngestEnv, key);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: "not_configured", message: expect.stringContaining("UPGRADE_URL") });
  });
});
