import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { z } from "zod";
import { encodeRpcStatus } from "../../src/shared/rpc-status.ts";
import { listen } from "../listen.ts";

/**
 * A local OTLP/HTTP upstream (the "sink"): accepts `POST /v1/traces`, `/v1/metrics` and
 * `/v1/logs`, records what arrived (raw bytes, tenant header) and counts it per tenant, and
 * can be told to fail. It never decompresses or decodes anything: it sees exactly what a real
 * backend (Mimir/Loki/Tempo behind `X-Scope-OrgID`) would receive.
 *
 * The hot path is kept small because the benchmark drives load straight at it: read the body,
 * push a record into a ring buffer, bump counters, answer. The SHA-256 and base64 of a recorded
 * body are computed only when someone asks for the records.
 *
 * Control API (JSON):
 * - `POST /_control/faults` `{ mode: "status"|"slow"|"reset"|"partial", status?, retry_after?, delay_ms?, count?, tenant?, rejected?, message? }`
 *   queues a fault; `GET` lists the queue; `DELETE` clears it. `partial` answers 200 with an OTLP
 *   partial_success (`rejected` items, default 1, and `message`) in the request's encoding.
 * - `POST /_control/outage` `{ seconds }`: every signal request is answered 503 until then (an
 *   upstream that is down); `DELETE` ends it at once; `GET` says until when.
 * - `GET /_control/requests?tenant=&path=` recent records, oldest first (`tenant=(none)` matches
 *   requests without a tenant header); `DELETE` clears the records and the stats.
 * - `GET /_control/stats` aggregate counters of accepted (200) requests, never bounded.
 * - `GET /health`.
 */
export type UpstreamSinkOptions = {
  /** Default 0: an ephemeral port. */
  port?: number;
  /** Default "127.0.0.1". */
  host?: string;
  /** Default "x-scope-orgid" (matched case-insensitively). */
  tenantHeader?: string;
  /** How many recent request records to keep; default 1000, 0 keeps none. */
  keepRequests?: number;
};
export type UpstreamSink = { url: string; port: number; close(): Promise<void> };

const SIGNALS = new Set(["/v1/traces", "/v1/metrics", "/v1/logs"]);
const NO_TENANT = "(none)";

const FaultSchema = z.object({
  mode: z.enum(["status", "slow", "reset", "partial"]),
  status: z.number().int().min(200).max(599).default(503),
  retry_after: z.number().int().nonnegative().optional(),
  delay_ms: z.number().nonnegative().default(0),
  count: z.number().int().positive().default(1),
  tenant: z.string().optional(),
  rejected: z.number().int().nonnegative().default(1),
  message: z.string().max(1000).default("injected partial success"),
});
type Fault = z.infer<typeof FaultSchema>;
type FaultMode = Fault["mode"] | "outage";
const OutageSchema = z.object({ seconds: z.number().positive().max(3600) });

/** What is kept per request; the JSON view (`RequestRecordJson`) is derived on demand. */
type RequestRecord = {
  path: string;
  tenant: string | null;
  headers: IncomingHttpHeaders;
  body: Buffer;
  at: number;
  status: number | null;
  fault: FaultMode | null;
  /** Filled on first read. */
  json?: RequestRecordJson;
};

export type RequestRecordJson = {
  path: string;
  tenant: string | null;
  content_type: string | null;
  content_encoding: string | null;
  bytes: number;
  sha256: string;
  headers: Record<string, string>;
  body_base64: string;
  at: number;
  /** The status the sink answered; null when the connection was reset. */
  status: number | null;
  /** Present only on requests that consumed a fault. */
  fault?: FaultMode;
};

type Counter = { requests: number; bytes: number };
type TenantStats = Counter & { paths: Map<string, Counter> };

/** gRPC status codes for the `google.rpc.Status` of an injected failure. */
function grpcCode(status: number): number {
  if (status === 400) return 3; // INVALID_ARGUMENT
  if (status === 401) return 16; // UNAUTHENTICATED
  if (status === 403) return 7; // PERMISSION_DENIED
  if (status === 404) return 5; // NOT_FOUND
  if (status === 413) return 8; // RESOURCE_EXHAUSTED
  if (status === 429) return 8; // RESOURCE_EXHAUSTED
  if (status === 501) return 12; // UNIMPLEMENTED
  if (status === 502 || status === 503) return 14; // UNAVAILABLE
  if (status === 504) return 4; // DEADLINE_EXCEEDED
  if (status >= 500) return 13; // INTERNAL
  return 2; // UNKNOWN
}

function flattenHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | null {
  const value = headers[name];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(", ") : value;
}

function toJson(record: RequestRecord): RequestRecordJson {
  if (record.json) return record.json;
  const json: RequestRecordJson = {
    path: record.path,
    tenant: record.tenant,
    content_type: headerValue(record.headers, "content-type"),
    content_encoding: headerValue(record.headers, "content-encoding"),
    bytes: record.body.byteLength,
    sha256: createHash("sha256").update(record.body).digest("hex"),
    headers: flattenHeaders(record.headers),
    body_base64: record.body.toString("base64"),
    at: record.at,
    status: record.status,
    ...(record.fault === null ? {} : { fault: record.fault }),
  };
  record.json = json;
  return json;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    req.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
    });
    req.on("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length)));
    req.on("error", reject);
    req.on("close", () => {
      if (!req.complete) reject(new Error("request aborted"));
    });
  });
}

const EMPTY = Buffer.alloc(0);
const JSON_EMPTY = Buffer.from("{}");

function send(res: ServerResponse, status: number, contentType: string, body: Buffer | string, extra?: Record<string, string>): void {
  const headers: Record<string, string | number> = { "content-type": contentType, "content-length": Buffer.byteLength(body) };
  if (extra) Object.assign(headers, extra);
  res.writeHead(status, headers);
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>): void {
  send(res, status, "application/json", JSON.stringify(value), extra);
}

/** A fixed-capacity ring of the most recent records. */
class Ring<T> {
  private items: (T | undefined)[];
  private start = 0;
  private size = 0;
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.items = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    if (this.capacity === 0) return;
    if (this.size < this.capacity) {
      this.items[(this.start + this.size) % this.capacity] = item;
      this.size += 1;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.size; i++) out.push(this.items[(this.start + i) % this.capacity] as T);
    return out;
  }

  clear(): void {
    this.items = new Array<T | undefined>(this.capacity);
    this.start = 0;
    this.size = 0;
  }
}

export async function startUpstreamSink(options: UpstreamSinkOptions = {}): Promise<UpstreamSink> {
  const host = options.host ?? "127.0.0.1";
  const tenantHeader = (options.tenantHeader ?? "x-scope-orgid").toLowerCase();
  const keep = Math.max(0, Math.floor(options.keepRequests ?? 1000));

  const records = new Ring<RequestRecord>(keep);
  let faults: Fault[] = [];
  /** The end of an outage (epoch ms); 0 when the sink is up. */
  let downUntil = 0;
  let total: Counter = { requests: 0, bytes: 0 };
  let faulted: Counter = { requests: 0, bytes: 0 };
  let tenants = new Map<string, TenantStats>();
  const timers = new Set<NodeJS.Timeout>();

  function takeFault(tenant: string | null): Fault | undefined {
    if (faults.length === 0) return undefined;
    const index = faults.findIndex((f) => f.tenant === undefined || f.tenant === tenant);
    if (index < 0) return undefined;
    const fault = faults[index]!;
    fault.count -= 1;
    if (fault.count <= 0) faults.splice(index, 1);
    return fault;
  }

  function count(tenant: string | null, path: string, bytes: number): void {
    total.requests += 1;
    total.bytes += bytes;
    const key = tenant ?? NO_TENANT;
    let stats = tenants.get(key);
    if (!stats) tenants.set(key, (stats = { requests: 0, bytes: 0, paths: new Map() }));
    stats.requests += 1;
    stats.bytes += bytes;
    let byPath = stats.paths.get(path);
    if (!byPath) stats.paths.set(path, (byPath = { requests: 0, bytes: 0 }));
    byPath.requests += 1;
    byPath.bytes += bytes;
  }

  function accept(res: ServerResponse, record: RequestRecord, isJson: boolean): void {
    count(record.tenant, record.path, record.body.byteLength);
    // An empty Export*ServiceResponse in the request's encoding.
    if (isJson) send(res, 200, "application/json", JSON_EMPTY);
    else send(res, 200, "application/x-protobuf", EMPTY);
  }

  async function signal(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const body = await readBody(req);
    const headers = req.headers;
    const tenant = headerValue(headers, tenantHeader);
    const isJson = (headers["content-type"] ?? "").toLowerCase().includes("json");
    const down = Date.now() < downUntil;
    const fault = down ? undefined : takeFault(tenant);
    const record: RequestRecord = { path, tenant, headers, body, at: Date.now(), status: 200, fault: down ? "outage" : (fault?.mode ?? null) };
    records.push(record);

    if (down) {
      faulted.requests += 1;
      faulted.bytes += body.byteLength;
      record.status = 503;
      const message = "outage: the upstream is down";
      if (isJson) return sendJson(res, 503, { code: grpcCode(503), message });
      return send(res, 503, "application/x-protobuf", Buffer.from(encodeRpcStatus({ code: grpcCode(503), message, reason: "outage" })));
    }
    if (fault === undefined) return accept(res, record, isJson);
    if (fault.mode === "partial") {
      count(record.tenant, record.path, record.body.byteLength);
      if (isJson) return sendJson(res, 200, { partialSuccess: { rejectedSpans: String(fault.rejected), errorMessage: fault.message } });
      return send(res, 200, "application/x-protobuf", Buffer.from(partialSuccess(fault.rejected, fault.message)));
    }

    if (fault.mode === "slow") {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          resolve();
        }, fault.delay_ms);
        timers.add(timer);
      });
      if (res.destroyed || res.writableEnded) return;
      return accept(res, record, isJson);
    }

    faulted.requests += 1;
    faulted.bytes += body.byteLength;
    if (fault.mode === "reset") {
      record.status = null;
      req.socket.destroy();
      return;
    }
    // mode "status": a google.rpc.Status in the request's encoding.
    record.status = fault.status;
    const extra: Record<string, string> = fault.retry_after === undefined ? {} : { "retry-after": String(fault.retry_after) };
    const message = `injected fault: upstream answered ${fault.status}`;
    if (isJson) sendJson(res, fault.status, { code: grpcCode(fault.status), message }, extra);
    else send(res, fault.status, "application/x-protobuf", Buffer.from(encodeRpcStatus({ code: grpcCode(fault.status), message, reason: "injected_fault" })), extra);
  }

  function statsJson(): unknown {
    const byTenant: Record<string, unknown> = {};
    for (const [tenant, stats] of tenants) {
      const paths: Record<string, Counter> = {};
      for (const [path, counter] of stats.paths) paths[path] = { ...counter };
      byTenant[tenant] = { requests: stats.requests, bytes: stats.bytes, paths };
    }
    return { total: { ...total }, tenants: byTenant, faulted: { ...faulted } };
  }

  async function control(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const route = url.pathname.slice("/_control".length);
    const method = req.method ?? "GET";
    if (route === "/faults") {
      if (method === "GET") return sendJson(res, 200, { faults });
      if (method === "DELETE") {
        faults = [];
        return sendJson(res, 200, { faults });
      }
      if (method === "POST") {
        const text = (await readBody(req)).toString("utf8");
        let raw: unknown;
        try {
          raw = JSON.parse(text || "{}");
        } catch {
          return sendJson(res, 400, { error: "invalid_json", message: "the body is not JSON" });
        }
        const parsed = FaultSchema.safeParse(raw);
        if (!parsed.success) return sendJson(res, 400, { error: "invalid_request", message: z.prettifyError(parsed.error) });
        faults.push(parsed.data);
        return sendJson(res, 200, { faults });
      }
      return sendJson(res, 405, { error: "method_not_allowed" }, { allow: "GET, POST, DELETE" });
    }
    if (route === "/outage") {
      if (method === "DELETE") downUntil = 0;
      else if (method === "POST") {
        let raw: unknown;
        try {
          raw = JSON.parse((await readBody(req)).toString("utf8") || "{}");
        } catch {
          return sendJson(res, 400, { error: "invalid_json", message: "the body is not JSON" });
        }
        const parsed = OutageSchema.safeParse(raw);
        if (!parsed.success) return sendJson(res, 400, { error: "invalid_request", message: z.prettifyError(parsed.error) });
        downUntil = Date.now() + parsed.data.seconds * 1000;
      } else if (method !== "GET") return sendJson(res, 405, { error: "method_not_allowed" }, { allow: "GET, POST, DELETE" });
      return sendJson(res, 200, { down_until: downUntil > Date.now() ? new Date(downUntil).toISOString() : null });
    }
    if (route === "/requests") {
      if (method === "GET") {
        const tenant = url.searchParams.get("tenant");
        const onPath = url.searchParams.get("path");
        const wanted = records
          .toArray()
          .filter((r) => (tenant === null || (r.tenant ?? NO_TENANT) === tenant) && (onPath === null || r.path === onPath));
        return sendJson(res, 200, { requests: wanted.map(toJson) });
      }
      if (method === "DELETE") {
        records.clear();
        total = { requests: 0, bytes: 0 };
        faulted = { requests: 0, bytes: 0 };
        tenants = new Map();
        return sendJson(res, 200, { cleared: true });
      }
      return sendJson(res, 405, { error: "method_not_allowed" }, { allow: "GET, DELETE" });
    }
    if (route === "/stats") {
      if (method === "GET") return sendJson(res, 200, statsJson());
      return sendJson(res, 405, { error: "method_not_allowed" }, { allow: "GET" });
    }
    return sendJson(res, 404, { error: "not_found", message: `no control route ${method} ${url.pathname}` });
  }

  const server = createServer({ keepAlive: true, noDelay: true }, (req, res) => {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const pathname = q < 0 ? rawUrl : rawUrl.slice(0, q);
    let handled: Promise<void> | undefined;
    if (SIGNALS.has(pathname)) {
      if (req.method === "POST") handled = signal(req, res, pathname);
      else {
        req.resume();
        sendJson(res, 405, { error: "method_not_allowed" }, { allow: "POST" });
      }
    } else if (pathname === "/_control" || pathname.startsWith("/_control/")) {
      handled = control(req, res, new URL(rawUrl, "http://sink"));
    } else if (pathname === "/health") {
      req.resume();
      sendJson(res, 200, { status: "ok" });
    } else {
      req.resume();
      sendJson(res, 404, { error: "not_found" });
    }
    handled?.catch((error: unknown) => {
      if (res.headersSent || res.destroyed) return;
      if (req.complete) sendJson(res, 500, { error: "sink_error", message: String(error) });
      else res.destroy();
    });
  });
  // Persistent connections from the benchmark and from workerd: keep idle sockets well past
  // any client's pool timeout, and no per-socket request cap or overall request timeout.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  server.requestTimeout = 0;
  server.maxRequestsPerSocket = 0;

  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  const { url, port } = await listen(server, options.port ?? 0, host);

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      })),
  };
}

/** ExportTraceServiceResponse {1: partial_success {1: rejected (int64), 2: error_message}}; the same field numbers in all three signals. */
function partialSuccess(rejected: number, message: string): Uint8Array {
  const text = Buffer.from(message, "utf8");
  const inner = Buffer.concat([Buffer.from([0x08, ...varint(rejected)]), Buffer.from([0x12, ...varint(text.byteLength)]), text]);
  return Buffer.concat([Buffer.from([0x0a, ...varint(inner.byteLength)]), inner]);
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
