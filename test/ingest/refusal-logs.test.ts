import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { DECISION_LOG_WINDOW_MS, logThrottle, LogThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { ingestWithEnv, mintKey, override } from "../support/ingest.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

const clock = fakeClock();

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await deleteAllAlarms();
});

type Line = { event?: string; org_id?: string | null; refused?: number; code?: string };

function captureWarnings(): Line[] {
  const lines: Line[] = [];
  vi.spyOn(console, "warn").mockImplementation((entry) => void lines.push(entry as Line));
  return lines;
}

describe("refusal logs (issue 10, item 5)", () => {
  it("a flood of refusals from one org is one line per window, then a count; the counters stay exact", async () => {
    const org = uniqueOrg("flood");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const points: AnalyticsEngineDataPoint[] = [];
    const workerEnv = { ...env, INGEST_ANALYTICS: { writeDataPoint: (p: AnalyticsEngineDataPoint) => void points.push(p) } };
    const send = () => ingestWithEnv(workerEnv, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });
    const lines = captureWarnings();

    for (let i = 0; i < 300; i++) expect((await send()).status).toBe(402);
    const refused = () => lines.filter((line) => line.event === "ingest_refused" && line.org_id === org);
    expect(refused()).toEqual([expect.objectContaining({ code: "billing_suspended", refused: 1 })]);
    expect(points.filter((p) => p.blobs?.[2] === "billing_suspended")).toHaveLength(300);

    clock.set(clock.now + DECISION_LOG_WINDOW_MS - 1);
    expect((await send()).status).toBe(402);
    expect(refused()).toHaveLength(1);

    clock.set(clock.now + 1);
    expect((await send()).status).toBe(402);
    expect(refused()).toEqual([expect.objectContaining({ refused: 1 }), expect.objectContaining({ refused: 301 })]);
    expect(points.filter((p) => p.blobs?.[2] === "billing_suspended")).toHaveLength(302);
  });

  it("each org and each kind of refusal gets its own first line", async () => {
    const lines = captureWarnings();
    const orgs = [uniqueOrg("first_a"), uniqueOrg("first_b")];
    for (const org of orgs) {
      const { key } = await mintKey(org);
      for (let i = 0; i < 5; i++) await ingestWithEnv(env, "/v1/traces", { key, headers: { "content-type": "text/plain" }, body: "x" });
      await ingestWithEnv(env, "/v1/traces", { key, headers: { "content-type": "application/json", "content-encoding": "br" }, body: "x" });
    }
    const refused = lines.filter((line) => line.event === "ingest_refused");
    expect(refused.map((line) => [line.org_id, line.code])).toEqual([
      [orgs[0], "unsupported_media_type"],
      [orgs[0], "unsupported_encoding"],
      [orgs[1], "unsupported_media_type"],
      [orgs[1], "unsupported_encoding"],
    ]);
  });

  it("unauthenticated refusals are throttled too", async () => {
    const lines = captureWarnings();
    for (let i = 0; i < 50; i++) await ingestWithEnv(env, "/v1/traces", { body: "x" });
    expect(lines.filter((line) => line.event === "ingest_refused" && line.code === "missing_ingest_key")).toHaveLength(1);
  });
});

describe("the log throttle", () => {
  it("logs the first event per key and window, then the count since the last line", () => {
    const throttle = new LogThrottle({ windowMs: 10, capacity: 10 });
    expect(throttle.hit("a", 0)).toBe(1);
    expect(throttle.hit("a", 5)).toBeNull();
    expect(throttle.hit("a", 9)).toBeNull();
    expect(throttle.hit("b", 9)).toBe(1);
    expect(throttle.hit("a", 10)).toBe(3);
    expect(throttle.hit("a", 100)).toBe(1);
  });

  it("keeps at most `capacity` keys", () => {
    const throttle = new LogThrottle({ windowMs: 10_000, capacity: 100 });
    for (let i = 0; i < 10_000; i++) throttle.hit(`org_${i}`, i);
    expect(throttle.size).toBe(100);
  });
});
