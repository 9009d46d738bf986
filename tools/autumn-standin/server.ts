import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import { AutumnStore, INVOICE_STATUSES, randomId, StandInError, type Change, type Env } from "./store.ts";
import { listen } from "../listen.ts";

/**
 * A local stand-in for Autumn's API, version 2.3.0, on loopback (`node:http` only).
 *
 * Autumn API (POST, JSON; `Authorization: Bearer <secretKey>` and `x-api-version: 2.3.0`
 * required; errors `{"message","code","env"}`; a body that is not JSON counts as `{}`, as in
 * Autumn; schema violations 400 `invalid_inputs`, a limit above the per-org maximum of 1000
 * 400 `invalid_request`, a cursor that does not decode 400 `invalid_cursor`):
 *   /v1/customers.get   {customer_id, expand?}      the customer; `invoices` only with expand ["invoices"]
 *   /v1/invoices.list   {customer_id?, entity_id?, status?, processor_types?, limit?, start_cursor?}   {list, next_cursor}
 *   /v1/customers.list  {start_cursor?, limit? (1-1000, default 50), plans?, subscription_status?, search?,
 *                        processors?, sort_order?, created_at_range?}   {list, next_cursor}: full customer
 *                        objects, newest first, keyset-paged on (created_at, id) with Autumn's opaque cursor
 *
 * Control API (no auth, JSON):
 *   POST   /_control/reset                          customers, faults, the call log and the stats cleared
 *   POST   /_control/customers                      {id, name?, email?, plan_id?, created_at?}  (409 if it exists)
 *   GET    /_control/customers/:id                  the customers.get view with invoices
 *   DELETE /_control/customers/:id                  the customer is gone (no webhook)
 *   POST   /_control/customers/:id/past-due         {at?, total?, invoice?}  invoice: false = no new invoice
 *                                                   (a net-terms invoice already open becomes overdue)
 *   POST   /_control/customers/:id/pay              {at?}
 *   POST   /_control/customers/:id/void-invoices    {at?}   open invoices voided, past due cleared
 *   POST   /_control/customers/:id/invoices         {status, total, currency?, created_at?, plan_ids?}
 *   POST   /_control/customers/:id/trial-invoice    {at?}
 *   POST   /_control/customers/:id/expire           {at?}
 *   POST   /_control/customers/:id/subscriptions    {plan_id, add_on, past_due?, started_at?, invoice?: {status?, total, created_at?}}
 *   POST   /_control/customers/:id/invoice-finalized {stripe_id?, null_customer_id?}   sends `invoice.finalized`
 *   POST   /_control/seed                           {count, past_due?, prefix?, plan_id?, created_at?, past_due_at?, total?}
 *   POST   /_control/faults                         {mode, count?, skip?, retry_after?, delay_ms?, paths?, customer_id?}
 *   GET | DELETE /_control/faults
 *   GET | DELETE /_control/calls                    the last 10,000 /v1 calls
 *   GET | DELETE /_control/stats                    /v1 calls counted per path and status, never bounded
 * Every customer change answers `{customer, webhook}`: the signed `billing.updated` (or
 * `invoice.finalized`) message Autumn would send (Svix headers, exact raw body), delivered to
 * `webhook.url` unless the URL is null or the request has `?deliver=0` (or `?deliver=false`):
 * that is how a lost webhook is played.
 */
export type AutumnStandInOptions = {
  /** 0 (the default) picks an ephemeral port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The only accepted `Authorization: Bearer` key. `am_sk_live_...` makes `env` "live", anything else "sandbox". */
  secretKey: string;
  /** Where `billing.updated` webhooks go (`url` null: built and signed, never delivered) and the `whsec_...` secret that signs them. */
  webhook?: { url: string | null; secret: string } | null;
  /** Clock for created_at, webhook timestamps and the call log (default Date.now). */
  now?: () => number;
};
export type AutumnStandIn = { url: string; port: number; close(): Promise<void> };

export const AUTUMN_API_VERSION = "2.3.0";
const WEBHOOK_TIMEOUT_MS = 5_000;
const SLOW_DEFAULT_MS = 2_000;
const MAX_BODY_BYTES = 1 << 20;
const MAX_CALLS = 10_000;
/** Autumn's default per-org maximum page size for customers.list and invoices.list (PAGINATION_CONFIGS); the schema allows 5000. */
const MAX_PAGE = 1000;
const MAX_SEED = 100_000;

const FaultInput = z.object({
  mode: z.enum(["http_500", "http_429", "http_503", "invalid_json", "slow", "http_404_unknown_code"]),
  count: z.number().int().min(1).default(1),
  /** Let this many matching requests through first, e.g. 1 to fail the second page of a walk. */
  skip: z.number().int().nonnegative().default(0),
  retry_after: z.number().int().nonnegative().optional(),
  delay_ms: z.number().nonnegative().optional(),
  paths: z.array(z.string()).optional(),
  /** Only requests whose body names this customer (lets tests share one stand-in). */
  customer_id: z.string().optional(),
});
type Fault = z.infer<typeof FaultInput>;

// Autumn: z.coerce.number().int().min(1).max(5000).default(50) (createCursorLimitSchema).
const Limit = z.coerce.number().int().min(1).max(5000).default(50);
const Cursor = z.string().default("");
const GetCustomerBody = z.object({ customer_id: z.string().min(1), expand: z.array(z.string()).optional() });
const ListInvoicesBody = z.object({
  customer_id: z.string().optional(),
  entity_id: z.string().optional(),
  status: z.array(z.enum(["draft", "open", "void", "paid", "uncollectible"])).optional(),
  processor_types: z.array(z.enum(["stripe", "revenuecat"])).optional(),
  limit: Limit,
  start_cursor: Cursor,
});
/** ListCustomersV2_3ParamsSchema (shared/api/customers/crud/listCustomersParamsV2_3.ts). */
const ListCustomersBody = z.object({
  start_cursor: Cursor,
  limit: Limit,
  plans: z.array(z.object({ id: z.string(), versions: z.array(z.number()).optional() })).optional(),
  subscription_status: z.enum(["active", "scheduled"]).optional(),
  search: z.string().optional(),
  processors: z.array(z.enum(["stripe", "revenuecat", "vercel"])).optional(),
  sort_order: z.enum(["asc", "desc"]).optional(),
  created_at_range: z
    .object({ start: z.coerce.number().optional(), end: z.coerce.number().optional() })
    .refine(({ start, end }) => start === undefined || end === undefined || start <= end, { message: "created_at_range.start must be <= created_at_range.end" })
    .optional(),
});

const At = z.number().nullish();
const CreateCustomerBody = z.object({ id: z.string().min(1), name: z.string().nullish(), email: z.string().nullish(), plan_id: z.string().min(1).optional(), created_at: At });
const AtBody = z.object({ at: At });
const PastDueBody = z.object({ at: At, total: z.number().nonnegative().default(29.99), invoice: z.boolean().default(true) });
const InvoiceBody = z.object({
  status: z.enum(INVOICE_STATUSES),
  total: z.number().nonnegative(),
  currency: z.string().min(1).optional(),
  created_at: At,
  plan_ids: z.array(z.string()).optional(),
});
const SubscriptionBody = z.object({
  plan_id: z.string().min(1),
  add_on: z.boolean(),
  past_due: z.boolean().optional(),
  started_at: At,
  /** An invoice of this subscription alone (plan_ids = [plan_id]), e.g. an add-on's open invoice from 20 days ago. */
  invoice: z.object({ status: z.enum(INVOICE_STATUSES).default("open"), total: z.number().nonnegative(), created_at: At }).optional(),
});
const InvoiceFinalizedBody = z.object({ stripe_id: z.string().min(1).optional(), null_customer_id: z.boolean().default(false) });
const SeedBody = z
  .object({
    count: z.number().int().min(1).max(MAX_SEED),
    past_due: z.number().int().nonnegative().default(0),
    prefix: z.string().default("seed-"),
    plan_id: z.string().min(1).default("pro"),
    created_at: At,
    past_due_at: At,
    total: z.number().nonnegative().default(29.99),
  })
  .refine((seed) => seed.past_due <= seed.count, { message: "past_due must be <= count" });

export type Call = { path: string; body: unknown; status: number; at: number; fault?: Fault["mode"] };
/** Per /v1 path: calls answered, by HTTP status, and how many of them a fault produced. */
export type PathStats = { total: number; status: Record<string, number>; faults: number };
export type Stats = { since: number; total: number; paths: Record<string, PathStats> };
export type WebhookRecord = {
  id: string;
  url: string | null;
  headers: Record<string, string>;
  body: string;
  delivered: null | { status: number } | { error: string };
};

type Reply = { status: number; body: unknown; headers?: Record<string, string> };
const reply = (status: number, body: unknown, headers?: Record<string, string>): Reply => ({ status, body, ...(headers ? { headers } : {}) });

function send(res: ServerResponse, { status, body, headers }: Reply): void {
  if (res.headersSent || res.destroyed) return;
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new StandInError(413, "invalid_request", "Request body too large");
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Empty body = `{}`; anything else must be JSON. */
function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  if (text.trim() === "") return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/** A schema violation: Autumn's API answers 400 `invalid_inputs` (errorSkipMiddleware); the control API 400 `invalid_request`. */
function validate<S extends z.ZodType>(schema: S, value: unknown, code = "invalid_request"): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new StandInError(400, code, parsed.error.issues.map((issue) => `${issue.path.join(".") || "input"}: ${issue.message}`).join("; "));
  }
  return parsed.data;
}

const validateApi = <S extends z.ZodType>(schema: S, value: unknown): z.infer<S> => validate(schema, value, "invalid_inputs");

/** Autumn's per-org page cap, checked after the schema (handleListCustomersV2, handleListInvoices). */
function capped<T extends { limit: number }>(body: T): T {
  if (body.limit > MAX_PAGE) throw new StandInError(400, "invalid_request", `limit ${body.limit} exceeds max of ${MAX_PAGE} for this org`);
  return body;
}

export async function startAutumnStandIn(options: AutumnStandInOptions): Promise<AutumnStandIn> {
  const now = options.now ?? Date.now;
  const env: Env = options.secretKey.startsWith("am_sk_live_") ? "live" : "sandbox";
  const signer = options.webhook?.secret ? new Webhook(options.webhook.secret) : null;
  const webhookUrl = options.webhook?.url ?? null;
  const store = new AutumnStore(env);
  let faults: Fault[] = [];
  let calls: Call[] = [];
  let stats: Stats = { since: now(), total: 0, paths: {} };
  const timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();

  const error = (status: number, code: string, message: string, headers?: Record<string, string>): Reply => reply(status, { message, code, env }, headers);

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = { timer: setTimeout(() => (timers.delete(entry), resolve()), ms), resolve };
      timers.add(entry);
    });
  }

  /**
   * The first queued fault matching this request and done skipping, with one use consumed.
   * Every matching fault still skipping counts this request as one of its `skip`.
   */
  function takeFault(path: string, body: unknown): Fault | undefined {
    const customerId = typeof body === "object" && body !== null ? (body as { customer_id?: unknown }).customer_id : undefined;
    const matching = faults.filter((f) => (f.paths === undefined || f.paths.includes(path)) && (f.customer_id === undefined || f.customer_id === customerId));
    const fault = matching.find((f) => f.skip === 0);
    for (const f of matching) if (f.skip > 0) f.skip -= 1;
    if (!fault) return undefined;
    fault.count -= 1;
    if (fault.count <= 0) faults.splice(faults.indexOf(fault), 1);
    return { ...fault };
  }

  async function api(req: IncomingMessage, path: string, rawBody: string, record: (fault?: Fault["mode"]) => void): Promise<Reply> {
    const auth = req.headers.authorization;
    if (auth === undefined || auth.trim() === "" || /^Bearer\s*$/i.test(auth)) return error(401, "no_secret_key", "Secret key not found");
    if (auth !== `Bearer ${options.secretKey}`) return error(401, "invalid_secret_key", "Invalid secret key");
    const version = req.headers["x-api-version"];
    if (version !== AUTUMN_API_VERSION) return error(400, "invalid_api_version", `x-api-version must be ${AUTUMN_API_VERSION} (got ${JSON.stringify(version ?? null)})`);

    const json = parseJson(rawBody);
    const fault = takeFault(path, json.ok ? json.value : undefined);
    if (fault) {
      record(fault.mode);
      const retryAfter = fault.retry_after === undefined ? undefined : { "retry-after": String(fault.retry_after) };
      switch (fault.mode) {
        case "http_500":
          return error(500, "internal_error", "Internal error");
        case "http_429":
          return error(429, "rate_limit_exceeded", "Rate limit exceeded.", retryAfter);
        case "http_503":
          return error(503, "service_unavailable", "Service unavailable", retryAfter);
        case "http_404_unknown_code":
          return error(404, "something_else", "Not found");
        case "invalid_json":
          return reply(200, "{not json");
        case "slow":
          await sleep(fault.delay_ms ?? SLOW_DEFAULT_MS);
          break;
      }
    }

    if (req.method !== "POST" || !["/v1/customers.get", "/v1/invoices.list", "/v1/customers.list"].includes(path)) {
      return error(404, "not_found", `No route ${req.method ?? "?"} ${path}`);
    }
    // Autumn's validator reads a body that is not JSON (or is null) as {} and lets the schema decide.
    const value = json.ok && json.value !== null ? json.value : {};
    try {
      if (path === "/v1/customers.get") {
        const input = validateApi(GetCustomerBody, value);
        return reply(200, store.customerView(store.get(input.customer_id), input.expand?.includes("invoices") ?? false));
      }
      if (path === "/v1/invoices.list") return reply(200, store.listInvoices(capped(validateApi(ListInvoicesBody, value))));
      return reply(200, store.listCustomers(capped(validateApi(ListCustomersBody, value))));
    } catch (caught) {
      if (caught instanceof StandInError) return error(caught.status, caught.code, caught.message);
      throw caught;
    }
  }

  const billingUpdated = (change: Change) => ({
    type: "billing.updated",
    data: { object: "billing.updated", customer_id: change.customerId, entity_id: null, plan_changes: change.planChanges, tags: change.tags },
  });

  /** The Svix message Autumn sends for `event`, signed, and delivered unless `deliver` is false. */
  async function webhookFor(event: { type: string; data: unknown }, deliver: boolean): Promise<WebhookRecord> {
    const body = JSON.stringify(event);
    const id = randomId("msg_");
    const timestamp = Math.floor(now() / 1000);
    const headers: Record<string, string> = { "svix-id": id, "svix-timestamp": String(timestamp) };
    if (signer) headers["svix-signature"] = signer.sign(id, new Date(timestamp * 1000), body);
    headers["content-type"] = "application/json";
    let delivered: WebhookRecord["delivered"] = null;
    if (webhookUrl !== null && deliver) {
      try {
        const response = await fetch(webhookUrl, { method: "POST", headers, body, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS) });
        await response.arrayBuffer().catch(() => undefined);
        delivered = { status: response.status };
      } catch (caught) {
        delivered = { error: caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught) };
      }
    }
    return { id, url: webhookUrl, headers, body, delivered };
  }

  async function control(req: IncomingMessage, url: URL, rawBody: string): Promise<Reply> {
    const method = req.method ?? "GET";
    const path = url.pathname.slice("/_control".length).replace(/\/+$/, "");
    const body = () => {
      const json = parseJson(rawBody);
      if (!json.ok) throw new StandInError(400, "invalid_request", "Request body is not valid JSON");
      return json.value;
    };

    if (path === "/reset" && method === "POST") {
      store.reset();
      faults = [];
      calls = [];
      stats = { since: now(), total: 0, paths: {} };
      return reply(200, { reset: true });
    }
    if (path === "/stats") {
      if (method === "GET") return reply(200, stats);
      if (method === "DELETE") return (stats = { since: now(), total: 0, paths: {} }), reply(200, stats);
    }
    if (path === "/seed" && method === "POST") {
      const input = validate(SeedBody, body());
      const at = now();
      const seeded = store.seed({ ...input, created_at: input.created_at ?? at, past_due_at: input.past_due_at ?? at });
      return reply(200, { created: input.count, ...seeded });
    }
    if (path === "/faults") {
      if (method === "GET") return reply(200, { faults });
      if (method === "DELETE") return (faults = []), reply(200, { faults });
      if (method === "POST") return faults.push(validate(FaultInput, body())), reply(200, { faults });
    }
    if (path === "/calls") {
      if (method === "GET") return reply(200, { calls });
      if (method === "DELETE") return (calls = []), reply(200, { calls });
    }

    const deliver = !["0", "false"].includes(url.searchParams.get("deliver") ?? "");
    let change: Change | undefined;
    if (path === "/customers" && method === "POST") {
      change = store.createCustomer(validate(CreateCustomerBody, body()), now());
    } else {
      const match = /^\/customers\/([^/]+)(?:\/([a-z-]+))?$/.exec(path);
      if (!match) return error(404, "not_found", `No control route ${method} ${url.pathname}`);
      const id = decodeURIComponent(match[1]!);
      const action = match[2];
      if (action === undefined) {
        if (method === "GET") return reply(200, { customer: store.customerView(store.get(id), true) });
        if (method === "DELETE") return store.deleteCustomer(id), reply(200, { deleted: id });
        return error(404, "not_found", `No control route ${method} ${url.pathname}`);
      }
      if (method !== "POST") return error(404, "not_found", `No control route ${method} ${url.pathname}`);
      switch (action) {
        case "past-due": {
          const input = validate(PastDueBody, body());
          change = store.pastDue(id, { at: input.at ?? now(), total: input.total, newInvoice: input.invoice });
          break;
        }
        case "pay":
          validate(AtBody, body());
          change = store.pay(id);
          break;
        case "void-invoices":
          validate(AtBody, body());
          change = store.voidOpenInvoices(id);
          break;
        case "invoices": {
          const input = validate(InvoiceBody, body());
          change = store.addInvoice(id, {
            status: input.status,
            total: input.total,
            created_at: input.created_at ?? now(),
            ...(input.currency === undefined ? {} : { currency: input.currency }),
            ...(input.plan_ids === undefined ? {} : { plan_ids: input.plan_ids }),
          });
          break;
        }
        case "trial-invoice":
          change = store.trialInvoice(id, validate(AtBody, body()).at ?? now());
          break;
        case "expire":
          change = store.expire(id, validate(AtBody, body()).at ?? now());
          break;
        case "subscriptions": {
          const input = validate(SubscriptionBody, body());
          const { invoice, ...sub } = input;
          change = store.addSubscription(id, { ...sub, ...(invoice ? { invoice: { ...invoice, created_at: invoice.created_at ?? now() } } : {}) }, now());
          break;
        }
        case "invoice-finalized": {
          const input = validate(InvoiceFinalizedBody, body());
          const data = store.invoiceFinalized(id, { ...(input.stripe_id === undefined ? {} : { stripe_id: input.stripe_id }), nullCustomerId: input.null_customer_id });
          const webhook = await webhookFor({ type: "invoice.finalized", data }, deliver);
          return reply(200, { customer: store.customerView(store.get(id), true), webhook });
        }
        default:
          return error(404, "not_found", `No control action ${action}`);
      }
    }
    const webhook = await webhookFor(billingUpdated(change), deliver);
    return reply(200, { customer: store.customerView(store.get(change.customerId), true), webhook });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://autumn-standin");
    const path = url.pathname;
    const isApi = path.startsWith("/v1/");
    const receivedAt = now();
    let rawBody = "";
    let fault: Fault["mode"] | undefined;
    let answer: Reply;
    try {
      rawBody = await readBody(req);
      if (isApi) {
        answer = await api(req, path, rawBody, (mode) => (fault = mode));
      } else if (path.startsWith("/_control/")) {
        answer = await control(req, url, rawBody);
      } else if (path === "/health" && req.method === "GET") {
        answer = reply(200, { status: "ok" });
      } else {
        answer = error(404, "not_found", `No route ${req.method ?? "?"} ${path}`);
      }
    } catch (caught) {
      answer = caught instanceof StandInError ? error(caught.status, caught.code, caught.message) : error(500, "internal_error", String(caught));
    }
    if (isApi) {
      const json = parseJson(rawBody);
      calls.push({ path, body: json.ok ? json.value : rawBody, status: answer.status, at: receivedAt, ...(fault ? { fault } : {}) });
      if (calls.length > MAX_CALLS) calls.splice(0, calls.length - MAX_CALLS);
      const counted = (stats.paths[path] ??= { total: 0, status: {}, faults: 0 });
      counted.total += 1;
      counted.status[answer.status] = (counted.status[answer.status] ?? 0) + 1;
      if (fault) counted.faults += 1;
      stats.total += 1;
    }
    send(res, answer);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((caught: unknown) => send(res, error(500, "internal_error", String(caught))));
  });
  server.keepAliveTimeout = 60_000;
  const host = options.host ?? "127.0.0.1";
  const { url, port } = await listen(server, options.port ?? 0, host);
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const entry of timers) {
          clearTimeout(entry.timer);
          entry.resolve();
        }
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
