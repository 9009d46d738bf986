import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { z } from "zod";

/**
 * A local OTLP/HTTP upstream: accepts /v1/traces, /v1/metrics and /v1/logs, records what
 * arrived (raw bytes, tenant header) and counts it per tenant, and can be told to fail.
 * It never decompresses or decodes: it sees exactly what a real backend would receive.
 */
export type UpstreamSinkOptions = { port?: number; host?: string; tenantHeader?: string; keepRequests?: number };
export type UpstreamSink = { url: string; port: number; close(): Promise<void> };

const SIGNALS = new Set(["/v1/traces", "/v1/metrics", "/v1/logs"]);

const FaultSchema = z.object({
  mode: z.enum(["status", "slow", "reset"]),
  status: z.number().int().min(100).max(599).default(503),
  retry_after: z.number().nonnegative().optional(),
  delay_ms: z.number().nonnegative().default(0),
  count: z.number().int().positive().default(1),
  tenant: z.string().optional(),
});
type Fault = z.infer<typeof FaultSchema>;

type RequestRecord = {
  path: string;
  tenant: string | null;
  content_type: string | null;
  content_encoding: string | null;
  bytes: number;
  sha256: string;
  headers: Record<string, string>;
  body_base64: string;
  at: number;
  fault?: string;
};
type Counter = { requests: number; bytes: number };
type TenantStats = Counter & { paths: Record<string, Counter> };

function send(res: ServerResponse, status: number, body: string | Buffer, contentType: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body), ...headers });
  res.end(body);
}
const json = (res: ServerResponse, status: number, value: unknown) => send(res, status, JSON.stringify(value), "application/json");

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function startUpstreamSink(options: UpstreamSinkOptions = {}): Promise<UpstreamSink> {
  const tenantHeader = (options.tenantHeader ?? "x-scope-orgid").toLowerCase();
  const keep = options.keepRequests ?? 1000;
  let records: RequestRecord[] = [];
  let faults: Fault[] = [];
  let total: Counter = { requests: 0, bytes: 0 };
  let tenants: Record<string, TenantStats> = {};

  function takeFault(tenant: string | null): Fault | undefined {
    const index = faults.findIndex((f) => f.tenant === undefined || f.tenant === tenant);
    if (index < 0) return undefined;
    const fault = faults[index]!;
    fault.count -= 1;
    if (fault.count <= 0) faults.splice(index, 1);
    return fault;
  }

  async function signal(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const body = await readBody(req);
    const tenant = (req.headers[tenantHeader] as string | undefined) ?? null;
    const contentType = req.headers["content-type"] ?? null;
    const fault = takeFault(tenant);
    records.push({
      path,
      tenant,
      content_type: contentType,
      content_encoding: (req.headers["content-encoding"] as string | undefined) ?? null,
      bytes: body.byteLength,
      sha256: createHash("sha256").update(body).digest("hex"),
      headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : (v ?? "")])),
      body_base64: body.toString("base64"),
      at: Date.now(),
      ...(fault ? { fault: fault.mode } : {}),
    });
    if (records.length > keep) records = records.slice(-keep);

    if (fault?.mode === "reset") return void req.socket.destroy();
    if (fault?.mode === "status") {
      const headers: Record<string, string> = fault.retry_after === undefined ? {} : { "retry-after": String(fault.retry_after) };
      return send(res, fault.status, JSON.stringify({ code: fault.status, message: "injected fault" }), "application/json", headers);
    }
    if (fault?.mode === "slow") await new Promise((r) => setTimeout(r, fault.delay_ms));

    const key = tenant ?? "(none)";
    total = { requests: total.requests + 1, bytes: total.bytes + body.byteLength };
    const stats = (tenants[key] ??= { requests: 0, bytes: 0, paths: {} });
    stats.requests += 1;
    stats.bytes += body.byteLength;
    const byPath = (stats.paths[path] ??= { requests: 0, bytes: 0 });
    byPath.requests += 1;
    byPath.bytes += body.byteLength;

    // An empty Export*ServiceResponse in the request's encoding.
    if (contentType?.includes("json")) send(res, 200, "{}", "application/json");
    else send(res, 200, Buffer.alloc(0), "application/x-protobuf");
  }

  async function control(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.slice("/_control".length);
    const method = req.method ?? "GET";
    if (path === "/faults" && method === "POST") {
      const parsed = FaultSchema.safeParse(JSON.parse((await readBody(req)).toString() || "{}"));
      if (!parsed.success) return json(res, 400, { error: "invalid_request", message: parsed.error.message });
      faults.push(parsed.data);
      return json(res, 200, { faults });
    }
    if (path === "/faults" && method === "DELETE") return (faults = []), json(res, 200, { faults });
    if (path === "/requests" && method === "GET") {
      const tenant = url.searchParams.get("tenant");
      const onPath = url.searchParams.get("path");
      return json(res, 200, { requests: records.filter((r) => (tenant === null || r.tenant === tenant) && (onPath === null || r.path === onPath)) });
    }
    if (path === "/requests" && method === "DELETE") {
      records = [];
      total = { requests: 0, bytes: 0 };
      tenants = {};
      return json(res, 200, { cleared: true });
    }
    if (path === "/stats" && method === "GET") return json(res, 200, { total, tenants });
    return json(res, 404, { error: "not_found", message: `no control route ${method} ${path}` });
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://sink");
    let handled: Promise<void>;
    if (SIGNALS.has(url.pathname)) handled = req.method === "POST" ? signal(req, res, url.pathname) : Promise.resolve(json(res, 405, { error: "method_not_allowed" }));
    else if (url.pathname.startsWith("/_control/")) handled = control(req, res, url);
    else if (url.pathname === "/health") handled = Promise.resolve(json(res, 200, { status: "ok" }));
    else handled = Promise.resolve(json(res, 404, { error: "not_found" }));
    handled.catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { error: "sink_error", message: String(error) });
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${options.host ?? "127.0.0.1"}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
