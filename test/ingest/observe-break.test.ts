import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { orgPrefix } from "../../src/ingest/parking/store.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { billingAdmin, gzip, mintKey, override, sink } from "../support/ingest.ts";
import { ALL, deliver, parkingBucket, parkingEnv, recordingQueue, send, total } from "../support/parking.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

/**
 * Issue 21, second read (adversarial): observe mode and the per-org canary where they meet parking,
 * metering, the gate's caches and the decision log, driven end to end through the real OrgBilling
 * object, KV, R2 and the sink. Three defects found this way
 * (kept batches held after a switch to observe, a silent cut-off, the timing promise) failed at d1c5278 and
 * are fixed; the others pin behaviour that held.
 */

const clock = fakeClock();

type Line = Record<string, unknown> & { event?: string; org_id?: string | null };

function captureLines(): { lines: Line[]; raw: string[] } {
  const lines: Line[] = [];
  const raw: string[] = [];
  const push = (entry: unknown) => {
    raw.push(typeof entry === "string" ? entry : JSON.stringify(entry));
    lines.push((typeof entry === "string" ? JSON.parse(entry) : entry) as Line);
  };
  vi.spyOn(console, "log").mockImplementation(push);
  vi.spyOn(console, "warn").mockImplementation(push);
  vi.spyOn(console, "error").mockImplementation(push);
  return { lines, raw };
}

async function setEnforcement(org: string, mode: "enforce" | "observe" | "default", note = "canary (break test)") {
  const response = await billingAdmin(`/orgs/${encodeURIComponent(org)}/enforcement`, { method: "POST", body: JSON.stringify({ mode, note }) });
  if (response.status !== 200) throw new Error(`enforcement answered ${response.status}: ${await response.text()}`);
}

const traces = (workerEnv: object, key: string) => send(workerEnv, "/v1/traces", key, { headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] }, true);
const LOGPUSH = Array.from({ length: 3 }, (_, i) => JSON.stringify({ EdgeStartTimestamp: 1_700_000_000 + i, ClientIP: "192.0.2.7" })).join("\n");

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await sink.clearFaults();
  await deleteAllAlarms();
});

describe("parking meets observe mode", () => {
  it("a batch parked while the org was enforced is delivered once the operator switches the org to observe", async () => {
    // The canary's opposite (docs/deploying.md step 3): an org suspended under enforce has its batch kept (402 "kept"),
    // then the operator decides it must not be refused and sets `observe`. Its new exports now go upstream, but the batch
    // it was told is kept stays held "until the invoice is paid" and expires after PARK_RETENTION if it never is.
    const org = uniqueOrg("brk-obs-parked");
    const { key } = await mintKey(org);
    const workerEnv = parkingEnv();
    await override(org, "suspend");
    const refused = await traces(workerEnv, key);
    expect(refused.status).toBe(402);
    expect(refused.text).toContain("kept for");
    expect((await parkingBucket.list({ prefix: orgPrefix(org) })).objects).toHaveLength(1);

    await setEnforcement(org, "observe", "not to be refused after all (ops-7)");
    gate.reset();
    // Observed now: new data goes straight upstream.
    expect((await traces(workerEnv, key)).status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(1);

    // A delivery run (as the cron's cleanup starts one for every org with batches waiting): the kept batch should go too.
    const run = await deliver(workerEnv, org);
    expect({ delivered: run.delivered, held: run.held }).toEqual({ delivered: 1, held: 0 });
    expect(await sink.requests(org)).toHaveLength(2);
  });

  it("after a deploy with ENFORCEMENT=observe, batches kept while the org was enforced are delivered", async () => {
    // Same, for the whole Worker switched to observe: every suspended org's kept batches stay held.
    const org = uniqueOrg("brk-obs-deploy");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    expect((await traces(parkingEnv(), key)).status).toBe(402);

    const observing = parkingEnv({ ENFORCEMENT: "observe" });
    gate.reset();
    expect((await traces(observing, key)).status).toBe(200);
    const run = await deliver(observing, org);
    expect({ delivered: run.delivered, held: run.held }).toEqual({ delivered: 1, held: 0 });
  });

  it("held: an observed suspended org parks nothing new, and a batch parked during an upstream outage (answered 200) is delivered though the org is still suspended", async () => {
    const org = uniqueOrg("brk-obs-outage");
    const { key } = await mintKey(org);
    const observing = parkingEnv({ ENFORCEMENT: "observe" });
    await override(org, "suspend");
    await sink.fault({ mode: "status", status: 503, count: 1, tenant: org });
    const parked = await traces(observing, key);
    expect(parked.status).toBe(200);
    const objects = (await parkingBucket.list({ prefix: orgPrefix(org), include: ["customMetadata"] })).objects;
    expect(objects.map((o) => o.customMetadata?.why)).toEqual(["upstream_unavailable"]);
    const run = await deliver(observing, org);
    expect(run.delivered).toBe(1);
    // The sink records the refused attempt too; it accepted the batch once, at delivery.
    expect(await sink.accepted(org)).toBe(1);
  });

  it("held: a Logpush retry of a batch kept under enforce, arriving after the switch to observe, is answered as kept and not forwarded twice", async () => {
    const org = uniqueOrg("brk-obs-lpretry");
    const { key } = await mintKey(org);
    const workerEnv = parkingEnv();
    await override(org, "suspend");
    const batch = await gzip(LOGPUSH);
    const path = "/v1/logpush/http_requests";
    const first = await send(workerEnv, path, key, { headers: { "content-encoding": "gzip" }, body: batch }, true);
    expect(first.status).toBe(402);
    await setEnforcement(org, "observe");
    gate.reset();
    const retry = await send(workerEnv, path, key, { headers: { "content-encoding": "gzip" }, body: batch }, true);
    expect(retry.status).toBe(200);
    expect(JSON.parse(retry.text)).toMatchObject({ kept: true });
    expect(await sink.requests(org)).toHaveLength(0);
  });
});

describe("metering meets observe mode", () => {
  it("held: an observed suspended org's OTLP and Logpush batches are metered exactly once", async () => {
    const org = uniqueOrg("brk-obs-meter");
    const { key } = await mintKey(org);
    const usage = recordingQueue();
    const workerEnv = parkingEnv({ USAGE_FEATURES: ALL, USAGE: usage });
    await override(org, "suspend");
    await setEnforcement(org, "observe");
    gate.reset();
    expect((await traces(workerEnv, key)).status).toBe(200);
    const logpush = await send(workerEnv, "/v1/logpush/http_requests", key, { headers: { "content-encoding": "gzip" }, body: await gzip(LOGPUSH) }, true);
    expect(logpush.status).toBe(200);
    const counted = total(usage.sent);
    expect({ traces: counted.traces, logpush: counted.logpush }).toEqual({ traces: 1, logpush: 3 }) // the fixture holds one span;
    expect(await sink.requests(org)).toHaveLength(2);
  });
});

describe("the canary's timing bound and the decision log", () => {
  it("held: an enforce override on an observed suspended org refuses the next export after 1 s (docs: within 1 s)", async () => {
    const org = uniqueOrg("brk-obs-timing");
    const { key } = await mintKey(org);
    const observing = parkingEnv({ ENFORCEMENT: "observe" });
    await override(org, "suspend");
    expect((await traces(observing, key)).status).toBe(200);
    await setEnforcement(org, "enforce", "canary");
    // Same isolate, verdict cached: the object is re-asked once the 1 s confirmation window has passed.
    clock.set(clock.now + 1_000);
    expect((await traces(observing, key)).status).toBe(402);
  });

  it("held: ingest_would_refuse is one line per org and code per 10 s and never carries the key", async () => {
    const org = uniqueOrg("brk-obs-log");
    const { key } = await mintKey(org);
    const observing = parkingEnv({ ENFORCEMENT: "observe" });
    await override(org, "suspend");
    const { lines, raw } = captureLines();
    for (let i = 0; i < 4; i++) expect((await traces(observing, key)).status).toBe(200);
    const would = lines.filter((line) => line.event === "ingest_would_refuse" && line.org_id === org);
    expect(would).toHaveLength(1);
    expect(would[0]).toMatchObject({ code: "billing_suspended", status: 402, would_refuse: 1 });
    expect(raw.join("\n")).not.toContain(key);
    expect(raw.join("\n")).not.toContain(key.slice(6, 26));
  });
});
