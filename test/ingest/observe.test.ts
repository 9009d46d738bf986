import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import type { FeatureLimit } from "../../src/shared/usage.ts";
import { orgPrefix } from "../../src/ingest/parking/store.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { DECISION_LOG_WINDOW_MS, logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { gzip, ingestWithEnv, keyWithVerdict, sink } from "../support/ingest.ts";
import { parkingBucket } from "../support/parking.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

/**
 * Issue 21, observe mode at the edge: with ENFORCEMENT=observe (or an org's own `observe` override)
 * what would be refused 402 or 429 is accepted and forwarded byte for byte, counted in Analytics
 * Engine as `would_refuse` with its code, and logged as `ingest_would_refuse` once per org and
 * code per 10 s. An org's `enforce` override refuses while the Worker observes. 401s stay 401.
 */

const clock = fakeClock();
const PAY = "https://invoice.stripe.com/i/acct_1/test_observe";

type Line = { event?: string; org_id?: string | null; code?: string; status?: number; would_refuse?: number; enforcement?: string };

function recordingDataset() {
  const points: AnalyticsEngineDataPoint[] = [];
  return { points, writeDataPoint: (point: AnalyticsEngineDataPoint = {}) => void points.push(point) };
}

/** An observing (or enforcing) ingest Worker with its own Analytics dataset, its org objects answering `verdict`. */
function workerEnv(enforcement: "observe" | "enforce" | undefined, verdict: MirrorEntry | null, extra: Record<string, unknown> = {}) {
  const dataset = recordingDataset();
  const stub = { verdict: async () => verdict, recordParking: async () => ({ ok: true }) };
  const base: Record<string, unknown> = { ...env, INGEST_ANALYTICS: dataset, ENFORCE_LIMITS: "true", ...extra };
  if (enforcement !== undefined) base.ENFORCEMENT = enforcement;
  if (verdict !== null) base.ORG_BILLING = { getByName: () => stub };
  return { env: base as unknown as IngestEnv, points: dataset.points };
}

function entry(state: MirrorEntry["state"], enforcement: MirrorEntry["enforcement"], limits: FeatureLimit[] = []): MirrorEntry {
  return { state, since: clock.now, version: 1_000, suspend_at: null, suspended_at: state === "suspended" ? clock.now : null, pay_url: state === "ok" ? null : PAY, limits, enforcement };
}

/** An org whose mirror entry is `verdict`, and whose key's KV entry carries it, as the object's publication writes both. */
async function orgWith(prefix: string, verdict: MirrorEntry) {
  const org = uniqueOrg(prefix);
  const key = await keyWithVerdict(org, verdict);
  await env.BILLING_STATE.put(billingStateKey(org), JSON.stringify(verdict));
  return { org, key };
}

const spans: FeatureLimit = { feature_id: "spans", signals: ["traces"], reset_at: null };
const sendJson = (workerEnv: IngestEnv, key: string) => ingestWithEnv(workerEnv, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });
const LOGPUSH = '{"ClientIP":"192.0.2.1","EdgeResponseStatus":200}';
const sendLogpush = async (workerEnv: IngestEnv, key: string) =>
  ingestWithEnv(workerEnv, "/v1/logpush/http_requests", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: await gzip(LOGPUSH) });

function captureLines(): Line[] {
  const lines: Line[] = [];
  const push = (entry: unknown) => void lines.push((typeof entry === "string" ? JSON.parse(entry) : entry) as Line);
  vi.spyOn(console, "log").mockImplementation(push);
  vi.spyOn(console, "warn").mockImplementation(push);
  return lines;
}

const bytesOf = (record: { body_base64: string }) => Uint8Array.from(atob(record.body_base64), (c) => c.charCodeAt(0));

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await sink.clearFaults();
  await deleteAllAlarms();
});

describe("observe mode (ENFORCEMENT=observe)", () => {
  it("a suspended org's batch is accepted and forwarded byte for byte, with the warning instead of a 402 body; counted and logged as a would-be refusal", async () => {
    const suspended = entry("suspended", null);
    const { org, key } = await orgWith("obs-susp", suspended);
    const observing = workerEnv("observe", suspended);
    const lines = captureLines();

    const response = await sendJson(observing.env, key);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { partialSuccess?: { errorMessage?: string }; error?: string };
    expect(body.error).toBeUndefined();
    expect(body.partialSuccess?.errorMessage).toMatch(/^Billing: an invoice is overdue/);
    expect(body.partialSuccess?.errorMessage).toContain(PAY);

    const forwarded = await sink.requests(org);
    expect(forwarded).toHaveLength(1);
    expect(bytesOf(forwarded[0]!)).toEqual(new TextEncoder().encode(OTLP_JSON["/v1/traces"]));

    expect(observing.points.map((p) => p.blobs)).toEqual([
      ["/v1/traces", "would_refuse", "billing_suspended", org],
      ["/v1/traces", "accepted", "200", org],
    ]);
    const wouldRefuse = () => lines.filter((line) => line.event === "ingest_would_refuse" && line.org_id === org);
    expect(wouldRefuse()).toEqual([expect.objectContaining({ code: "billing_suspended", status: 402, would_refuse: 1, enforcement: "observe" })]);
    expect(lines.filter((line) => line.event === "ingest_refused")).toEqual([]);
  });

  it("logs ingest_would_refuse at most once per org and code per 10 s, then with the count; every one is counted", async () => {
    const suspended = entry("suspended", null);
    const { org, key } = await orgWith("obs-flood", suspended);
    const observing = workerEnv("observe", suspended);
    const lines = captureLines();
    const wouldRefuse = () => lines.filter((line) => line.event === "ingest_would_refuse" && line.org_id === org);

    for (let i = 0; i < 5; i++) expect((await sendJson(observing.env, key)).status).toBe(200);
    expect(wouldRefuse()).toHaveLength(1);
    clock.set(clock.now + DECISION_LOG_WINDOW_MS - 1);
    expect((await sendJson(observing.env, key)).status).toBe(200);
    expect(wouldRefuse()).toHaveLength(1);
    clock.set(clock.now + 1);
    expect((await sendJson(observing.env, key)).status).toBe(200);
    expect(wouldRefuse()).toEqual([expect.objectContaining({ would_refuse: 1 }), expect.objectContaining({ would_refuse: 6 })]);
    expect(observing.points.filter((p) => p.blobs?.[1] === "would_refuse" && p.blobs?.[2] === "billing_suspended")).toHaveLength(7);
    expect(await sink.requests(org)).toHaveLength(7);
  });

  it("a used-up plan feature is accepted and forwarded instead of 429, counted as would_refuse plan_limit_reached", async () => {
    const limited = entry("ok", null, [spans]);
    const { org, key } = await orgWith("obs-limit", limited);
    const observing = workerEnv("observe", limited);
    const lines = captureLines();

    const response = await sendJson(observing.env, key);
    expect(response.status).toBe(200);
    expect(response.headers.get("retry-after")).toBeNull();
    expect(await sink.requests(org)).toHaveLength(1);
    expect(observing.points.map((p) => p.blobs?.slice(1, 3))).toEqual([
      ["would_refuse", "plan_limit_reached"],
      ["accepted", "200"],
    ]);
    expect(lines.filter((line) => line.event === "ingest_would_refuse" && line.org_id === org)).toEqual([expect.objectContaining({ code: "plan_limit_reached", status: 429 })]);
  });

  it("the Logpush route: a suspended org's batch goes upstream (nothing parked, even with parking on)", async () => {
    const suspended = entry("suspended", null);
    const { org, key } = await orgWith("obs-logpush", suspended);
    const observing = workerEnv("observe", suspended, { PARKING: parkingBucket, PARK_MAX_BYTES: "4MiB", PARK_RETENTION: "72h" });

    const response = await sendLogpush(observing.env, key);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "accepted", records: 1 });
    expect(await sink.requests(org)).toHaveLength(1);
    expect((await parkingBucket.list({ prefix: orgPrefix(org) })).objects).toEqual([]);
    expect(observing.points.map((p) => p.blobs?.slice(0, 3))).toContainEqual(["/v1/logpush", "would_refuse", "billing_suspended"]);
  });

  it("an OTLP batch of a suspended org is not parked either, with parking on", async () => {
    const suspended = entry("suspended", null);
    const { org, key } = await orgWith("obs-nopark", suspended);
    const observing = workerEnv("observe", suspended, { PARKING: parkingBucket, PARK_MAX_BYTES: "4MiB", PARK_RETENTION: "72h" });
    expect((await sendJson(observing.env, key)).status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(1);
    expect((await parkingBucket.list({ prefix: orgPrefix(org) })).objects).toEqual([]);
  });

  it("401s stay 401: no key, or an unknown one", async () => {
    const observing = workerEnv("observe", null);
    expect((await ingestWithEnv(observing.env, "/v1/traces", { headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(401);
    expect((await ingestWithEnv(observing.env, "/v1/traces", { key: `tg_ik_${"a".repeat(43)}`, headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(401);
  });

  it("a bad ENFORCEMENT is a configuration error naming the variable (503 not_configured)", async () => {
    const { key } = await orgWith("obs-bad", entry("ok", null));
    const response = await sendJson(workerEnv("maybe" as "observe", null).env, key);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: "not_configured", message: expect.stringContaining("ENFORCEMENT") });
  });
});

describe("the per-org canary (the mirror entry's enforcement)", () => {
  it("an org's enforce override refuses 402 while the Worker observes", async () => {
    const suspended = entry("suspended", "enforce");
    const { org, key } = await orgWith("canary-enforce", suspended);
    const observing = workerEnv("observe", suspended);
    const response = await sendJson(observing.env, key);
    expect(response.status).toBe(402);
    expect(await response.json()).toMatchObject({ error: "billing_suspended", pay_url: PAY });
    expect(await sink.requests(org)).toHaveLength(0);
    expect(observing.points.map((p) => p.blobs?.[1])).toEqual(["refused"]);
  });

  it("an org's enforce override refuses 429 for a used-up feature while the Worker observes", async () => {
    const limited = entry("ok", "enforce", [spans]);
    const { org, key } = await orgWith("canary-limit", limited);
    expect((await sendJson(workerEnv("observe", limited).env, key)).status).toBe(429);
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("an org's observe override accepts (200, forwarded) while the Worker enforces (by default)", async () => {
    const suspended = entry("suspended", "observe");
    const { org, key } = await orgWith("canary-observe", suspended);
    const enforcing = workerEnv(undefined, suspended);
    expect((await sendJson(enforcing.env, key)).status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(1);
    expect(enforcing.points.map((p) => p.blobs?.[1])).toEqual(["would_refuse", "accepted"]);
  });

  it("without an override the Worker's enforce refuses as before", async () => {
    const suspended = entry("suspended", null);
    const { org, key } = await orgWith("canary-none", suspended);
    expect((await sendJson(workerEnv("enforce", suspended).env, key)).status).toBe(402);
    expect(await sink.requests(org)).toHaveLength(0);
  });
});
