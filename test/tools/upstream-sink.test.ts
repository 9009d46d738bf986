import { createHash } from "node:crypto";
import { Agent, request } from "node:http";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startUpstreamSink, type RequestRecordJson, type UpstreamSink } from "../../tools/upstream-sink/server.ts";
import { decodeRpcStatus } from "../support/rpc-status-decode.ts";

type SinkRecord = RequestRecordJson;
type Counter = { requests: number; bytes: number };
type Stats = { total: Counter; tenants: Record<string, Counter & { paths: Record<string, Counter> }> };

const sha256 = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");

/** A small but real ExportTraceServiceRequest-shaped protobuf payload (bytes only matter here). */
const PROTO_BODY = Uint8Array.from([0x0a, 0x0b, 0x0a, 0x00, 0x12, 0x07, 0x12, 0x05, 0x0a, 0x03, 0x66, 0x6f, 0x6f]);
const JSON_BODY = JSON.stringify({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [] }] });

let sink: UpstreamSink;

beforeAll(async () => {
  sink = await startUpstreamSink({});
});
afterAll(async () => {
  await sink.close();
});
beforeEach(async () => {
  await control("DELETE", "/faults");
  await control("DELETE", "/requests");
});

async function control<T = unknown>(method: string, path: string, body?: unknown, base = sink.url): Promise<T> {
  const response = await fetch(`${base}/_control${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!response.ok) throw new Error(`control ${method} ${path} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

const records = async (query = "", base = sink.url) => (await control<{ requests: SinkRecord[] }>("GET", `/requests${query}`, undefined, base)).requests;
const stats = async () => control<Stats>("GET", "/stats");

function post(path: string, body: Uint8Array<ArrayBuffer> | string, headers: Record<string, string>, base = sink.url): Promise<Response> {
  return fetch(`${base}${path}`, { method: "POST", headers, body });
}
const proto = (path: string, tenant: string | null, body: Uint8Array<ArrayBuffer> = PROTO_BODY) =>
  post(path, body, { "content-type": "application/x-protobuf", ...(tenant === null ? {} : { "X-Scope-OrgID": tenant }) });
const json = (path: string, tenant: string, body = JSON_BODY) => post(path, body, { "content-type": "application/json", "X-Scope-OrgID": tenant });

describe("accepting OTLP", () => {
  it("answers protobuf with an empty protobuf message and records the raw bytes", async () => {
    const response = await proto("/v1/traces", "org-a");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/x-protobuf");
    expect((await response.arrayBuffer()).byteLength).toBe(0);

    const [record, ...rest] = await records();
    expect(rest).toHaveLength(0);
    expect(record).toMatchObject({
      path: "/v1/traces",
      tenant: "org-a",
      content_type: "application/x-protobuf",
      content_encoding: null,
      bytes: PROTO_BODY.length,
      sha256: sha256(PROTO_BODY),
      status: 200,
    });
    expect(record!.fault).toBeUndefined();
    expect(Buffer.from(record!.body_base64, "base64")).toEqual(Buffer.from(PROTO_BODY));
    expect(record!.at).toBeGreaterThan(Date.now() - 10_000);
    expect(record!.at).toBeLessThanOrEqual(Date.now());
  });

  it("answers JSON with {} and keeps every header under its lowercased name", async () => {
    const response = await post("/v1/logs", JSON_BODY, { "Content-Type": "application/json; charset=utf-8", "X-Scope-OrgID": "org-j", "X-Custom-Thing": "Yes" });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.text()).toBe("{}");

    const [record] = await records();
    expect(record).toMatchObject({ path: "/v1/logs", tenant: "org-j", content_type: "application/json; charset=utf-8", bytes: Buffer.byteLength(JSON_BODY), sha256: sha256(JSON_BODY) });
    expect(record!.headers).toMatchObject({ "content-type": "application/json; charset=utf-8", "x-scope-orgid": "org-j", "x-custom-thing": "Yes" });
    expect(Object.keys(record!.headers).every((name) => name === name.toLowerCase())).toBe(true);
    expect(Buffer.from(record!.body_base64, "base64").toString("utf8")).toBe(JSON_BODY);
  });

  it("does not decompress gzip bodies: it records the compressed bytes as they arrived", async () => {
    const plain = Buffer.from(JSON_BODY.repeat(20));
    const gz = gzipSync(plain);
    const response = await post("/v1/metrics", gz, { "content-type": "application/x-protobuf", "content-encoding": "gzip", "x-scope-orgid": "org-z" });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/x-protobuf");

    const [record] = await records();
    expect(record).toMatchObject({ path: "/v1/metrics", content_encoding: "gzip", bytes: gz.length, sha256: sha256(gz) });
    expect(record!.sha256).not.toBe(sha256(plain));
    expect(Buffer.from(record!.body_base64, "base64")).toEqual(gz);
  });

  it("handles a large body split over many chunks", async () => {
    const big = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    expect((await proto("/v1/traces", "org-big", big)).status).toBe(200);
    const [record] = await records();
    expect(record).toMatchObject({ bytes: big.length, sha256: sha256(big) });
  });

  it("records a request without a tenant header with tenant null, counted under (none)", async () => {
    expect((await proto("/v1/logs", null)).status).toBe(200);
    const [record] = await records();
    expect(record!.tenant).toBeNull();
    expect((await stats()).tenants["(none)"]).toEqual({ requests: 1, bytes: PROTO_BODY.length, paths: { "/v1/logs": { requests: 1, bytes: PROTO_BODY.length } } });
    expect(await records("?tenant=(none)")).toHaveLength(1);
  });
});

describe("records, filters, stats and clearing", () => {
  it("filters by tenant and path, oldest first", async () => {
    await proto("/v1/traces", "a");
    await json("/v1/logs", "b");
    await proto("/v1/metrics", "a");
    await json("/v1/traces", "b");

    expect((await records()).map((r) => `${r.tenant}${r.path}`)).toEqual(["a/v1/traces", "b/v1/logs", "a/v1/metrics", "b/v1/traces"]);
    expect((await records("?tenant=a")).map((r) => r.path)).toEqual(["/v1/traces", "/v1/metrics"]);
    expect((await records("?path=/v1/traces")).map((r) => r.tenant)).toEqual(["a", "b"]);
    expect((await records("?tenant=b&path=/v1/logs")).map((r) => r.content_type)).toEqual(["application/json"]);
    expect(await records("?tenant=nobody")).toEqual([]);
  });

  it("aggregates per tenant and per path", async () => {
    const jsonBytes = Buffer.byteLength(JSON_BODY);
    await proto("/v1/traces", "a");
    await proto("/v1/traces", "a");
    await json("/v1/logs", "a");
    await json("/v1/logs", "b");

    expect(await stats()).toMatchObject({
      total: { requests: 4, bytes: 2 * PROTO_BODY.length + 2 * jsonBytes },
      tenants: {
        a: {
          requests: 3,
          bytes: 2 * PROTO_BODY.length + jsonBytes,
          paths: { "/v1/traces": { requests: 2, bytes: 2 * PROTO_BODY.length }, "/v1/logs": { requests: 1, bytes: jsonBytes } },
        },
        b: { requests: 1, bytes: jsonBytes, paths: { "/v1/logs": { requests: 1, bytes: jsonBytes } } },
      },
    });
    expect(Object.keys((await stats()).tenants).sort()).toEqual(["a", "b"]);
  });

  it("DELETE /_control/requests clears the records and the stats", async () => {
    await proto("/v1/traces", "a");
    expect(await records()).toHaveLength(1);
    await control("DELETE", "/requests");
    expect(await records()).toEqual([]);
    expect(await stats()).toMatchObject({ total: { requests: 0, bytes: 0 }, tenants: {} });
  });

  it("keeps only the most recent keepRequests records, while the stats keep counting", async () => {
    const small = await startUpstreamSink({ keepRequests: 3 });
    try {
      for (let i = 0; i < 7; i++) {
        const response = await post("/v1/logs", `{"n":${i}}`, { "content-type": "application/json", "x-scope-orgid": "t" }, small.url);
        expect(response.status).toBe(200);
      }
      const kept = await records("", small.url);
      expect(kept.map((r) => Buffer.from(r.body_base64, "base64").toString())).toEqual(['{"n":4}', '{"n":5}', '{"n":6}']);
      expect((await control<Stats>("GET", "/stats", undefined, small.url)).total).toEqual({ requests: 7, bytes: 7 * 7 });

      // Clearing then refilling a ring that had wrapped still yields oldest first.
      await control("DELETE", "/requests", undefined, small.url);
      await post("/v1/logs", "x", { "content-type": "application/json" }, small.url);
      await post("/v1/logs", "yy", { "content-type": "application/json" }, small.url);
      expect((await records("", small.url)).map((r) => r.bytes)).toEqual([1, 2]);
    } finally {
      await small.close();
    }
  });

  it("keepRequests: 0 keeps no records but still counts", async () => {
    const none = await startUpstreamSink({ keepRequests: 0 });
    try {
      expect((await post("/v1/traces", PROTO_BODY, { "content-type": "application/x-protobuf", "x-scope-orgid": "t" }, none.url)).status).toBe(200);
      expect(await records("", none.url)).toEqual([]);
      expect((await control<Stats>("GET", "/stats", undefined, none.url)).total).toEqual({ requests: 1, bytes: PROTO_BODY.length });
    } finally {
      await none.close();
    }
  });

  it("honours a custom tenant header, case-insensitively", async () => {
    const custom = await startUpstreamSink({ tenantHeader: "X-Tenant" });
    try {
      await post("/v1/traces", PROTO_BODY, { "content-type": "application/x-protobuf", "x-tenant": "custom", "x-scope-orgid": "ignored" }, custom.url);
      expect((await records("", custom.url)).map((r) => r.tenant)).toEqual(["custom"]);
      expect(Object.keys((await control<Stats>("GET", "/stats", undefined, custom.url)).tenants)).toEqual(["custom"]);
    } finally {
      await custom.close();
    }
  });
});

describe("routing", () => {
  it("GET /health", async () => {
    const response = await fetch(`${sink.url}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok" });
  });

  it.each(["/v1/profiles", "/v1/trace", "/v1/traces/extra", "/v1", "/elsewhere"])("%s → 404", async (path) => {
    const response = await proto(path, "a");
    expect(response.status).toBe(404);
    expect(await records()).toEqual([]);
  });

  it.each(["GET", "PUT", "DELETE"])("%s /v1/traces → 405", async (method) => {
    const response = await fetch(`${sink.url}/v1/traces`, { method, ...(method === "PUT" ? { body: "x" } : {}) });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
    expect(await records()).toEqual([]);
  });

  it("rejects an invalid fault", async () => {
    for (const body of ['{"mode":"explode"}', '{"mode":"status","count":0}', "not json"]) {
      const response = await fetch(`${sink.url}/_control/faults`, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect(response.status).toBe(400);
    }
    expect((await control<{ faults: unknown[] }>("GET", "/faults")).faults).toEqual([]);
  });
});

describe("fault injection", () => {
  it.each([429, 500, 502, 503, 504, 400])("status %i with Retry-After, encoded like the request; recorded with its fault", async (status) => {
    await control("POST", "/faults", { mode: "status", status, retry_after: 7 });
    const response = await proto("/v1/traces", "a");
    expect(response.status).toBe(status);
    expect(response.headers.get("retry-after")).toBe("7");
    expect(response.headers.get("content-type")).toBe("application/x-protobuf");
    const rpc = decodeRpcStatus(new Uint8Array(await response.arrayBuffer()));
    expect(rpc.code).toBeGreaterThan(0);
    expect(rpc.message).toContain(String(status));

    const [record] = await records();
    expect(record).toMatchObject({ tenant: "a", fault: "status", status, sha256: sha256(PROTO_BODY) });
    // A refused request is not counted as accepted.
    expect((await stats()).total.requests).toBe(0);

    // One request consumed the fault: the next is accepted.
    expect((await proto("/v1/traces", "a")).status).toBe(200);
    expect((await stats()).total.requests).toBe(1);
  });

  it("a JSON request gets a JSON google.rpc.Status and no Retry-After unless asked", async () => {
    await control("POST", "/faults", { mode: "status", status: 503 });
    const response = await json("/v1/logs", "a");
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBeNull();
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.json()).toMatchObject({ code: 14, message: expect.stringContaining("503") });
  });

  it("slow waits delay_ms, then answers 200 normally", async () => {
    await control("POST", "/faults", { mode: "slow", delay_ms: 400 });
    const started = performance.now();
    const response = await json("/v1/logs", "a");
    const elapsed = performance.now() - started;
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("{}");
    expect(elapsed).toBeGreaterThanOrEqual(380);
    expect(await records()).toMatchObject([{ fault: "slow", status: 200 }]);
    expect((await stats()).total.requests).toBe(1);

    const again = performance.now();
    await json("/v1/logs", "a");
    expect(performance.now() - again).toBeLessThan(300);
  });

  it("reset drops the connection without a response; the request is still recorded", async () => {
    await control("POST", "/faults", { mode: "reset" });
    await expect(proto("/v1/metrics", "a")).rejects.toThrow();
    expect(await records()).toMatchObject([{ path: "/v1/metrics", tenant: "a", fault: "reset", status: null, bytes: PROTO_BODY.length }]);
    expect((await stats()).total.requests).toBe(0);
    expect((await proto("/v1/metrics", "a")).status).toBe(200);
  });

  it("count: each matching request consumes one", async () => {
    await control("POST", "/faults", { mode: "status", status: 503, count: 3 });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await proto("/v1/traces", "a")).status);
    expect(statuses).toEqual([503, 503, 503, 200, 200]);
    expect((await control<{ faults: unknown[] }>("GET", "/faults")).faults).toEqual([]);
  });

  it("faults are applied in the order they were queued", async () => {
    await control("POST", "/faults", { mode: "status", status: 429 });
    await control("POST", "/faults", { mode: "status", status: 502, count: 2 });
    await control("POST", "/faults", { mode: "status", status: 400 });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await proto("/v1/traces", "a")).status);
    expect(statuses).toEqual([429, 502, 502, 400, 200]);
  });

  it("a tenant-scoped fault only hits that tenant and is not consumed by others", async () => {
    await control("POST", "/faults", { mode: "status", status: 429, retry_after: 3, tenant: "victim", count: 2 });
    expect((await proto("/v1/traces", "bystander")).status).toBe(200);
    expect((await proto("/v1/traces", null)).status).toBe(200);
    const hit = await proto("/v1/traces", "victim");
    expect(hit.status).toBe(429);
    expect(hit.headers.get("retry-after")).toBe("3");
    expect((await proto("/v1/traces", "bystander")).status).toBe(200);
    expect((await proto("/v1/traces", "victim")).status).toBe(429);
    expect((await proto("/v1/traces", "victim")).status).toBe(200);

    expect((await records("?tenant=victim")).map((r) => r.fault ?? null)).toEqual(["status", "status", null]);
    expect((await records("?tenant=bystander")).every((r) => r.fault === undefined)).toBe(true);
  });

  it("a later unscoped fault still applies to other tenants while a scoped one waits", async () => {
    await control("POST", "/faults", { mode: "status", status: 500, tenant: "victim" });
    await control("POST", "/faults", { mode: "status", status: 503 });
    expect((await proto("/v1/traces", "other")).status).toBe(503);
    expect((await proto("/v1/traces", "victim")).status).toBe(500);
    expect((await proto("/v1/traces", "victim")).status).toBe(200);
  });

  it("DELETE /_control/faults clears the queue", async () => {
    await control("POST", "/faults", { mode: "status", status: 503, count: 10 });
    expect((await control<{ faults: unknown[] }>("GET", "/faults")).faults).toHaveLength(1);
    await control("DELETE", "/faults");
    expect((await proto("/v1/traces", "a")).status).toBe(200);
  });
});

describe("connections", () => {
  it("keeps connections alive across requests", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const once = () =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = request(`${sink.url}/v1/traces`, { method: "POST", agent, headers: { "content-type": "application/x-protobuf" } }, (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
        });
        req.on("error", reject);
        req.end(Buffer.from(PROTO_BODY));
      });
    try {
      expect(await once()).toEqual({ status: 200, reused: false });
      expect(await once()).toEqual({ status: 200, reused: true });
      expect(await once()).toEqual({ status: 200, reused: true });
    } finally {
      agent.destroy();
    }
  });

  it("close() resolves promptly with idle keep-alive connections and a pending slow request", async () => {
    const other = await startUpstreamSink({});
    const agent = new Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      request(`${other.url}/health`, { agent }, (res) => {
        res.resume();
        res.on("end", resolve);
      })
        .on("error", reject)
        .end();
    });
    await control("POST", "/faults", { mode: "slow", delay_ms: 60_000 }, other.url);
    const pending = post("/v1/logs", "{}", { "content-type": "application/json" }, other.url).then(
      (r) => r.status,
      () => "rejected",
    );
    await new Promise((r) => setTimeout(r, 100));
    const started = performance.now();
    await other.close();
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(await pending).toBe("rejected");
    await expect(fetch(`${other.url}/health`)).rejects.toThrow();
    agent.destroy();
  });
});
