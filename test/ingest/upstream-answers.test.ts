import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { ingest, ingestWithEnv, mintKey, sink } from "../support/ingest.ts";
import { decodeRpcStatus } from "../support/rpc-status-decode.ts";
import { OTLP_JSON, OTLP_PROTOBUF } from "./fixtures/otlp.ts";
import { gzip } from "../support/ingest.ts";

/**
 * What the client hears when the upstream answers something other than 2xx (issue 10, item 1):
 * configuration trouble is retryable, trouble with the data is final, nothing is followed.
 */
let org: string;
let key: string;

beforeEach(async () => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("upstream");
  key = (await mintKey(org)).key;
});

afterEach(async () => {
  vi.restoreAllMocks();
  await sink.clearFaults();
  await deleteAllAlarms();
});

type Line = { event?: string; [field: string]: unknown };

/** Captures structured log lines by level while `run` executes. */
async function captureLogs<T>(run: () => Promise<T>): Promise<{ result: T; lines: { level: string; line: Line }[] }> {
  const lines: { level: string; line: Line }[] = [];
  const spies = (["log", "warn", "error"] as const).map((level) =>
    vi.spyOn(console, level).mockImplementation((entry) => void lines.push({ level, line: entry as Line })),
  );
  try {
    return { result: await run(), lines };
  } finally {
    spies.forEach((spy) => spy.mockRestore());
  }
}

const sendJson = () => ingest("/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });
const sendProto = () => ingest("/v1/traces", { key, headers: { "content-type": "application/x-protobuf" }, body: OTLP_PROTOBUF["/v1/traces"] });
const sendLogpush = async () =>
  ingest("/v1/logpush/http_requests", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: await gzip('{"ClientIP":"192.0.2.1","EdgeResponseStatus":200}') });

describe("an upstream answer that says our configuration is wrong", () => {
  it.each([301, 302, 307, 308, 401, 403, 404, 405, 409, 410, 411, 415, 422])(
    "upstream %i → retryable 503 upstream_misconfigured with Retry-After, logged at error level",
    async (status) => {
      await sink.fault({ mode: "status", status, tenant: org });
      const { result: response, lines } = await captureLogs(sendJson);
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(await response.json()).toMatchObject({ error: "upstream_misconfigured", message: expect.stringContaining(String(status)) });
      expect(lines).toContainEqual({ level: "error", line: expect.objectContaining({ event: "ingest_upstream_failed", org_id: org, upstream_status: status }) });
    },
  );

  it("answers protobuf clients with a google.rpc.Status UNAVAILABLE", async () => {
    await sink.fault({ mode: "status", status: 401, tenant: org });
    const response = await sendProto();
    expect(response.status).toBe(503);
    expect(response.headers.get("content-type")).toBe("application/x-protobuf");
    expect(response.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(decodeRpcStatus(new Uint8Array(await response.arrayBuffer()))).toMatchObject({ code: 14, details: [{ reason: "upstream_misconfigured" }] });
  });

  it("answers Logpush with a retryable 503 too, never with accepted", async () => {
    await sink.fault({ mode: "status", status: 403, tenant: org });
    const response = await sendLogpush();
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await response.json()).toMatchObject({ error: "upstream_misconfigured" });
  });

  it("is never confused with the client's own key being refused", async () => {
    await sink.fault({ mode: "status", status: 401, tenant: org });
    const response = await sendJson();
    expect(response.status).not.toBe(401);
  });
});

describe("redirects are never followed", () => {
  const UPSTREAM = "http://redirecting-upstream.test";

  /**
   * The runtime's fetch, emulated for one host that answers `status` with a Location: it
   * follows unless told `redirect: "manual"`, as fetch does (a 302 turns the POST into a
   * GET without body, a 307 re-POSTs), and the redirect target answers 200.
   */
  function redirectingUpstream(status: number) {
    const real = globalThis.fetch;
    const followed: { method: string; url: string }[] = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const request = new Request(input, init);
      if (!request.url.startsWith(UPSTREAM)) return real(input, init);
      if (request.redirect === "manual") return new Response(null, { status, headers: { location: `${UPSTREAM}/elsewhere` } });
      followed.push({ method: status === 307 || status === 308 ? request.method : "GET", url: `${UPSTREAM}/elsewhere` });
      return new Response("{}", { status: 200, headers: { "content-type": "application/json" } });
    });
    return followed;
  }

  it.each([302, 307])("an upstream %i reaches the client as a retryable 503, and nothing is re-sent elsewhere", async (status) => {
    const followed = redirectingUpstream(status);
    const redirecting = { ...env, UPSTREAM_OTLP_URL: UPSTREAM };
    const { result: response, lines } = await captureLogs(() =>
      ingestWithEnv(redirecting, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] }),
    );
    expect(followed).toEqual([]);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: "upstream_misconfigured" });
    expect(lines).toContainEqual({ level: "error", line: expect.objectContaining({ event: "ingest_upstream_failed", upstream_status: status }) });
  });

  it("a Logpush batch answered 302 is not reported accepted", async () => {
    const followed = redirectingUpstream(302);
    const redirecting = { ...env, UPSTREAM_OTLP_URL: UPSTREAM };
    const response = await ingestWithEnv(redirecting, "/v1/logpush/http_requests", {
      key,
      headers: { "content-type": "application/json" },
      body: '{"ClientIP":"192.0.2.1","EdgeResponseStatus":200}',
    });
    expect(followed).toEqual([]);
    expect(response.status).toBe(503);
  });
});

describe("an upstream answer about the data itself stays final", () => {
  it.each([
    [400, "upstream_rejected_payload"],
    [413, "payload_too_large"],
  ] as const)("upstream %i → %s for the client, logged as ingest_upstream_refused", async (status, error) => {
    await sink.fault({ mode: "status", status, tenant: org });
    const { result: response, lines } = await captureLogs(sendJson);
    expect(response.status).toBe(status);
    expect(response.headers.get("retry-after")).toBeNull();
    expect(await response.json()).toMatchObject({ error, message: expect.any(String) });
    expect(lines).toContainEqual({ level: "warn", line: expect.objectContaining({ event: "ingest_upstream_refused", org_id: org, upstream_status: status }) });
    expect(lines.map((l) => l.line.event)).not.toContain("ingest_upstream_failed");
  });

  it("in the client's encoding", async () => {
    await sink.fault({ mode: "status", status: 413, tenant: org });
    const response = await sendProto();
    expect(response.status).toBe(413);
    expect(decodeRpcStatus(new Uint8Array(await response.arrayBuffer()))).toMatchObject({ code: 3, details: [{ reason: "payload_too_large" }] });
  });
});

describe("upstream back-pressure", () => {
  it("429 stays 429, with a sane Retry-After even when the upstream sends none", async () => {
    await sink.fault({ mode: "status", status: 429, tenant: org });
    const response = await sendJson();
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("5");
    expect(await response.json()).toMatchObject({ error: "upstream_rate_limited" });
  });

  it("a 5xx is logged at error level with the upstream status", async () => {
    await sink.fault({ mode: "status", status: 502, tenant: org });
    const { result: response, lines } = await captureLogs(sendJson);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: "upstream_unavailable" });
    expect(lines).toContainEqual({ level: "error", line: expect.objectContaining({ event: "ingest_upstream_failed", upstream_status: 502 }) });
  });
});
