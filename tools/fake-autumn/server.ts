import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import { AutumnStore, StandInError, type PlanChange } from "./store.ts";

/**
 * A local stand-in for Autumn's API (2.3.0): customers.get, customers.list and
 * invoices.list with Autumn's auth, version pinning and error shape, plus a control API
 * (`/_control/...`) to change a customer's billing, inject faults, and read the call log.
 * Every billing change produces the signed `billing.updated` webhook Autumn would send,
 * delivered to `webhook.url` when one is set (and returned to the caller either way).
 */
export type AutumnStandInOptions = {
  port?: number;
  host?: string;
  secretKey: string;
  webhook?: { url: string | null; secret: string } | null;
  now?: () => number;
};
export type AutumnStandIn = { url: string; port: number; close(): Promise<void> };

const FaultSchema = z.object({
  mode: z.enum(["http_500", "http_429", "http_503", "invalid_json", "slow", "http_404_unknown_code"]),
  count: z.number().int().positive().default(1),
  retry_after: z.number().nonnegative().optional(),
  delay_ms: z.number().nonnegative().default(0),
  paths: z.array(z.string()).optional(),
  customer_id: z.string().optional(),
});
type Fault = z.infer<typeof FaultSchema>;

const GetCustomer = z.object({ customer_id: z.string().min(1), expand: z.array(z.string()).optional() });
const ListInvoices = z.object({
  customer_id: z.string().optional(),
  status: z.array(z.enum(["draft", "open", "void", "paid", "uncollectible"])).optional(),
  limit: z.number().int().min(1).max(5000).default(50),
  start_cursor: z.string().default(""),
});
const ListCustomers = z.object({ limit: z.number().int().min(1).max(5000).default(50), start_cursor: z.string().default("") });
const At = z.object({ at: z.number().optional() }).default({});

type Call = { path: string; body: unknown; status: number; at: number };

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

const autumnError = (res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) => send(res, status, { message, code, env: "sandbox" }, headers);

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new StandInError(400, "invalid_request", "Body is not valid JSON");
  }
}

function parse<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new StandInError(400, "invalid_request", parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
  return parsed.data;
}

export async function startAutumnStandIn(options: AutumnStandInOptions): Promise<AutumnStandIn> {
  const now = options.now ?? Date.now;
  const store = new AutumnStore();
  let faults: Fault[] = [];
  let calls: Call[] = [];

  function takeFault(path: string, body: unknown): Fault | undefined {
    const customer = (body as { customer_id?: unknown } | null)?.customer_id;
    const index = faults.findIndex((f) => (!f.paths || f.paths.includes(path)) && (!f.customer_id || f.customer_id === customer));
    if (index < 0) return undefined;
    const fault = faults[index]!;
    fault.count -= 1;
    if (fault.count <= 0) faults.splice(index, 1);
    return fault;
  }

  async function api(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const body = await readJson(req).catch(() => undefined);
    const record = (status: number) => calls.push({ path, body, status, at: now() });
    const auth = req.headers.authorization;
    if (!auth) return record(401), autumnError(res, 401, "no_secret_key", "Secret key not found");
    if (auth !== `Bearer ${options.secretKey}`) return record(401), autumnError(res, 401, "invalid_secret_key", "Invalid secret key");
    if (req.headers["x-api-version"] !== "2.3.0") return record(400), autumnError(res, 400, "invalid_api_version", "This stand-in serves x-api-version 2.3.0 only");
    if (body === undefined) return record(400), autumnError(res, 400, "invalid_request", "Body is not valid JSON");

    const fault = takeFault(path, body);
    if (fault) {
      const retryAfter: Record<string, string> = fault.retry_after === undefined ? {} : { "retry-after": String(fault.retry_after) };
      switch (fault.mode) {
        case "http_500":
          return record(500), autumnError(res, 500, "internal_error", "Internal error");
        case "http_429":
          return record(429), autumnError(res, 429, "rate_limit_exceeded", "Rate limit exceeded.", retryAfter);
        case "http_503":
          return record(503), autumnError(res, 503, "service_unavailable", "Service unavailable", retryAfter);
        case "http_404_unknown_code":
          return record(404), autumnError(res, 404, "something_else", "Not found");
        case "invalid_json":
          return record(200), send(res, 200, "{not json");
        case "slow":
          await new Promise((r) => setTimeout(r, fault.delay_ms));
      }
    }

    let result: unknown;
    try {
      if (path === "/v1/customers.get") {
        const input = parse(GetCustomer, body);
        result = store.customerView(store.get(input.customer_id), input.expand?.includes("invoices") ?? false);
      } else if (path === "/v1/invoices.list") {
        result = store.listInvoices(parse(ListInvoices, body));
      } else if (path === "/v1/customers.list") {
        result = store.listCustomers(parse(ListCustomers, body));
      } else {
        throw new StandInError(404, "not_found", `No route ${path}`);
      }
    } catch (error) {
      record(error instanceof StandInError ? error.status : 500);
      throw error;
    }
    record(200);
    if (!res.destroyed) send(res, 200, result);
  }

  async function webhookFor(customerId: string, changes: PlanChange[], tags: string[], deliver: boolean) {
    const body = JSON.stringify({ type: "billing.updated", data: { object: "billing.updated", customer_id: customerId, entity_id: null, plan_changes: changes, tags } });
    const id = `msg_${crypto.randomUUID().replaceAll("-", "")}`;
    const at = new Date(now());
    const headers: Record<string, string> = { "content-type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(at.getTime() / 1000)) };
    if (options.webhook?.secret) headers["svix-signature"] = new Webhook(options.webhook.secret).sign(id, at, body);
    const url = options.webhook?.url ?? null;
    let delivered: { status: number } | { error: string } | null = null;
    if (url && deliver) {
      try {
        const response = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(15_000) });
        await response.arrayBuffer();
        delivered = { status: response.status };
      } catch (error) {
        delivered = { error: (error as Error).message };
      }
    }
    return { id, url, headers, body, delivered };
  }

  async function control(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.slice("/_control".length);
    const method = req.method ?? "GET";
    if (path === "/reset" && method === "POST") {
      store.customers.clear();
      faults = [];
      calls = [];
      return send(res, 200, { reset: true });
    }
    if (path === "/faults") {
      if (method === "DELETE") return (faults = []), send(res, 200, { faults });
      if (method === "POST") return faults.push(parse(FaultSchema, await readJson(req))), send(res, 200, { faults });
    }
    if (path === "/calls") {
      if (method === "DELETE") return (calls = []), send(res, 200, { calls });
      if (method === "GET") return send(res, 200, { calls });
    }
    if (method !== "POST") throw new StandInError(404, "not_found", `No control route ${method} ${path}`);

    const body = await readJson(req);
    let customerId: string;
    let changes: PlanChange[];
    let tags: string[] = [];
    const match = /^\/customers\/([^/]+)(?:\/([a-z-]+))?$/.exec(path);
    if (path === "/customers") {
      const input = parse(z.object({ id: z.string().min(1), name: z.string().optional(), email: z.string().optional(), plan_id: z.string().optional() }), body);
      customerId = input.id;
      changes = store.create(input, now());
    } else if (match && match[2]) {
      customerId = decodeURIComponent(match[1]!);
      const at = parse(At, body).at ?? now();
      switch (match[2]) {
        case "past-due":
          changes = store.pastDue(customerId, at, parse(z.object({ total: z.number().positive().default(29.99) }), body).total);
          break;
        case "pay":
          changes = store.pay(customerId, at);
          break;
        case "expire":
          changes = store.expire(customerId, at);
          break;
        case "void-invoices":
          changes = store.voidOpenInvoices(customerId, at);
          break;
        case "invoices": {
          const input = parse(z.object({ status: z.string(), total: z.number().nonnegative(), currency: z.string().optional(), created_at: z.number().optional(), plan_ids: z.array(z.string()).optional() }), body);
          store.addInvoice(customerId, input, now());
          changes = [];
          tags = ["invoice_created"];
          break;
        }
        case "trial-invoice":
          store.addInvoice(customerId, { status: "paid", total: 0, created_at: at }, at);
          changes = [];
          tags = ["trial_started"];
          break;
        case "subscriptions":
          changes = store.addSubscription(customerId, parse(z.object({ plan_id: z.string(), add_on: z.boolean(), past_due: z.boolean().optional() }), body), now());
          break;
        default:
          throw new StandInError(404, "not_found", `No control action ${match[2]}`);
      }
    } else {
      throw new StandInError(404, "not_found", `No control route ${path}`);
    }
    const webhook = await webhookFor(customerId, changes, tags, url.searchParams.get("deliver") !== "0");
    send(res, 200, { customer: store.customerView(store.get(customerId), true), webhook });
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://stand-in");
    const handle = url.pathname.startsWith("/_control/")
      ? control(req, res, url)
      : url.pathname === "/health"
        ? Promise.resolve(send(res, 200, { status: "ok" }))
        : req.method === "POST" && url.pathname.startsWith("/v1/")
          ? api(req, res, url.pathname)
          : Promise.resolve(autumnError(res, 404, "not_found", `No route ${req.method} ${url.pathname}`));
    handle.catch((error: unknown) => {
      if (res.headersSent) return;
      if (error instanceof StandInError) autumnError(res, error.status, error.code, error.message);
      else autumnError(res, 500, "internal_error", String(error));
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
