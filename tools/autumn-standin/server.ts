import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import { AutumnStore, INVOICE_STATUSES, randomId, StandInError, type BalanceView, type Change, type Env } from "./store.ts";
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
 *   /v1/balances.track  (aliases /v1/track, /v1/events) TrackParams {customer_id, feature_id | event_name (exactly
 *                        one), value? (default 1, negative credits back), overage_behavior? cap (default) | overflow,
 *                        entity_id?, properties?, timestamp?, async?, idempotency_key?}   200 {customer_id, value (the
 *                        amount recorded), balance, balances}; 202 with balance null when async. Unknown customer 404
 *                        customer_not_found (no auto-create); event_name 404 feature_not_found (no event is mapped);
 *                        overage_behavior "reject" (internal in Autumn) 400 insufficient_balance when it does not fit;
 *                        `lock` 400 invalid_inputs (no balances.finalize here).
 *   /v1/balances.batch_track  [TrackParams] (1-1000, every item validated first, a bad one refuses the lot)
 *                        202 {"success": true} (the OpenAPI document's and autumn-js's status: the deductions run
 *                        later); an item whose customer is unknown or whose idempotency_key was used is dropped
 *                        silently (Autumn: partial failures are only logged)
 * Balances (customers.get, customers.list, track): see store.ts; a feature is unlimited until a test sets an
 * allowance. A track that moves a feature from allowed to blocked (remaining 0, limited) sends the signed
 * `balances.limit_reached` {customer_id, feature_id, limit_type: "included"} once per crossing, without
 * waiting for its delivery (Autumn sends it from the track, through Svix).
 * Idempotency (Autumn's): the `Idempotency-Key` header (every /v1 route) and track's body `idempotency_key`
 * (kept as `track:<key>`) are independent keys. A key already used answers 409 duplicate_idempotency_key and
 * changes nothing; a request that fails (a fault, 4xx but 409, 5xx) does not keep its key, so a retry works;
 * keys are kept 24 h on the stand-in's clock.
 *
 * Control API (no auth, JSON):
 *   POST   /_control/reset                          customers (and balances), faults, idempotency keys, the call log,
 *                                                   the stats, the usage ledger and the webhook log cleared
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
 *   POST   /_control/customers/:id/balances/:feature_id   {granted?, usage?, unlimited?, overage_allowed?,
 *                                                   next_reset_at?, reset_interval_ms?, webhook?: "billing.updated" | null}
 *                                                   an allowance (a plan change): omitted fields keep their value,
 *                                                   `unlimited` is false unless given; a reset interval without
 *                                                   next_reset_at starts a period now. `{customer, balance, webhook}`,
 *                                                   webhook null unless "billing.updated" is asked for
 *   POST   /_control/customers/:id/balances/:feature_id/reset   {at?}   the period rolled over at `at`: usage 0
 *   GET    /_control/usage                          per customer and feature, what track and batch_track applied:
 *                                                   value (as asked, before any cap), recorded (after it), calls,
 *                                                   and duplicates refused (409) or dropped (batch); totals
 *   GET    /_control/customers/:id/usage            the same for one customer;  DELETE /_control/usage clears it
 *   GET | DELETE /_control/webhooks                 the last 1,000 webhooks built (?type=, ?customer_id= filter)
 *   POST   /_control/faults                         {mode, count?, skip?, rate?, seed?, retry_after?, delay_ms?, paths?, customer_id?}
 *                                                   modes http_500, http_429, http_503 (Retry-After), invalid_json,
 *                                                   slow (then answers normally), http_404_unknown_code, timeout
 *                                                   (nothing applied, 503 after delay_ms, default 15 s: longer than
 *                                                   a client waits), timeout_after_apply (applied and its keys kept,
 *                                                   then the same late 503: the ambiguous case idempotency is for),
 *                                                   raw_body ({body, status?}: that exact text, default 200, instead of
 *                                                   the answer, nothing applied; how a test serves a mutated answer),
 *                                                   out_of_range (applied, a 200 whose amounts are negative or past
 *                                                   2^53 and whose times are past the largest Date).
 *                                                   `rate` (0-1): hits that fraction of matching calls, drawn from a
 *                                                   PRNG seeded by `seed` (same calls, same hits), and stays until
 *                                                   deleted (`count` ignored). Faults are decided before any key or
 *                                                   balance is touched.
 *   GET | DELETE /_control/faults
 *   GET | DELETE /_control/calls                    the last 10,000 /v1 calls
 *   GET | DELETE /_control/stats                    /v1 calls counted per path and status, never bounded
 *   GET | DELETE /_control/stats/customers          /v1 calls naming a customer (body `customer_id`), per customer and
 *                                                   path, since the last clear (of these or of /stats): which customers
 *                                                   a walk of a million read one by one, past the call log's 10,000
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
/** A timeout fault's late answer: longer than any client waits (Tollgate's AUTUMN_TIMEOUT is 4 s). */
const TIMEOUT_DEFAULT_MS = 15_000;
/** Autumn's DEFAULT_IDEMPOTENCY_TTL_HOURS. */
const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
const MAX_WEBHOOKS = 1_000;
const TRACK_PATHS = ["/v1/balances.track", "/v1/track", "/v1/events"];
const API_PATHS = ["/v1/customers.get", "/v1/invoices.list", "/v1/customers.list", "/v1/balances.batch_track", ...TRACK_PATHS];
const MAX_BODY_BYTES = 1 << 20;
const MAX_CALLS = 10_000;
/** Autumn's default per-org maximum page size for customers.list and invoices.list (PAGINATION_CONFIGS); the schema allows 5000. */
const MAX_PAGE = 1000;
/** A million: the scale bench sweeps that many customers (bench/scale/sweep.ts); about 0.9 KB each here. */
const MAX_SEED = 1_000_000;

const FaultInput = z.object({
  /** out_of_range: applied as usual, answered 200 with its numbers out of range (negative balances, times past year 275760, 2^53+). */
  mode: z.enum(["http_500", "http_429", "http_503", "invalid_json", "slow", "http_404_unknown_code", "timeout", "timeout_after_apply", "raw_body", "out_of_range"]),
  /** raw_body: the exact text answered instead (a mutated Autumn answer, for fuzzing the reader), nothing applied. */
  body: z.string().max(MAX_BODY_BYTES).optional(),
  /** raw_body: its status (default 200). */
  status: z.number().int().min(200).max(599).optional(),
  count: z.number().int().min(1).default(1),
  /** Let this many matching requests through first, e.g. 1 to fail the second page of a walk. */
  skip: z.number().int().nonnegative().default(0),
  /** Hit this fraction of matching requests (a seeded draw each); the fault then stays until deleted. */
  rate: z.number().min(0).max(1).optional(),
  /** The draws' seed (default random; shown by GET /_control/faults so a run can be replayed). */
  seed: z.number().int().optional(),
  retry_after: z.number().int().nonnegative().optional(),
  delay_ms: z.number().nonnegative().optional(),
  paths: z.array(z.string()).optional(),
  /** Only requests whose body names this customer (lets tests share one stand-in). */
  customer_id: z.string().optional(),
});
/** An installed fault: how many requests it has hit so far. */
type Fault = z.infer<typeof FaultInput> & { fired: number };

/** mulberry32: a small seeded PRNG in [0, 1), so a rate fault hits the same requests on every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * TrackParams (shared/api/balances/track/trackParams.ts): exactly one of feature_id and event_name
 * (both, or neither, is 400 invalid_inputs). `lock` is refused: the stand-in has no
 * balances.finalize, and ignoring it would silently deduct what a lock only reserves.
 */
const TrackParams = z
  .object({
    customer_id: z.string().min(1),
    feature_id: z.string().min(1).optional(),
    event_name: z.string().min(1).optional(),
    entity_id: z.string().min(1).optional(),
    value: z.number().default(1),
    properties: z.record(z.string(), z.unknown()).optional(),
    timestamp: z.number().int().positive().optional(),
    overage_behavior: z.enum(["cap", "overflow", "reject"]).default("cap"),
    async: z.boolean().optional(),
    lock: z.undefined({ error: "lock is not supported by the stand-in" }).optional(),
    idempotency_key: z.string().min(1).optional(),
  })
  .refine((p) => (p.feature_id === undefined) !== (p.event_name === undefined), { message: "exactly one of feature_id and event_name is required", path: ["feature_id"] });
type TrackParams = z.infer<typeof TrackParams>;
const BatchTrackParams = z.array(TrackParams).min(1).max(1000);

/** TrackResponseV3, the fields the stand-in fills. */
type TrackResponse = { customer_id: string; value: number; balance: BalanceView | null; entity_id?: string; balances?: Record<string, BalanceView> };

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
const BalanceBody = z.object({
  granted: z.number().nonnegative().optional(),
  usage: z.number().nonnegative().optional(),
  unlimited: z.boolean().optional(),
  overage_allowed: z.boolean().optional(),
  next_reset_at: z.number().nullable().optional(),
  reset_interval_ms: z.number().positive().nullable().optional(),
  /** "billing.updated": also send the signed billing.updated a plan upgrade would. */
  webhook: z.literal("billing.updated").nullable().optional(),
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

/** What track and batch_track applied to one customer's feature, for soak tests to compare with their own counts. */
export type FeatureUsage = { value: number; recorded: number; calls: number; duplicates: number };
export type UsageTotals = FeatureUsage & { dropped: number };
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

/** Amounts become negative or past 2^53, epoch-ms times past the largest Date (a malformed Autumn answer, schema-shaped). */
const OUT_OF_RANGE_AMOUNTS = new Set(["remaining", "granted", "usage", "balance", "included_usage", "total"]);
const OUT_OF_RANGE_TIMES = new Set(["next_reset_at", "created_at", "started_at", "current_period_end", "current_period_start"]);
function outOfRange(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(outOfRange);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, v]) => {
      if (typeof v === "number" && OUT_OF_RANGE_AMOUNTS.has(key)) return [key, v % 2 === 0 ? -1 : 2 ** 53 + 2];
      if (typeof v === "number" && OUT_OF_RANGE_TIMES.has(key)) return [key, 8.64e15 + 1];
      return [key, outOfRange(v)];
    }),
  );
}
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

/** Drops keys whose value is undefined (exactOptionalPropertyTypes: "absent" and "undefined" differ). */
function stripUndefined<T extends Record<string, unknown>>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/** Autumn's per-org page cap, checked after the schema (handleListCustomersV2, handleListInvoices). */
function capped<T extends { limit: number }>(body: T): T {
  if (body.limit > MAX_PAGE) throw new StandInError(400, "invalid_request", `limit ${body.limit} exceeds max of ${MAX_PAGE} for this org`);
  return body;
}

/**
 * What track and batch_track applied, per customer and feature, kept apart from the balances
 * (which cap and reset): a soak test compares `value` and `calls` with what it sent once.
 */
function newUsageLedger(since: number) {
  let state = { since, customers: new Map<string, Map<string, FeatureUsage>>(), totals: { value: 0, recorded: 0, calls: 0, duplicates: 0, dropped: 0 } as UsageTotals };
  const entry = (customerId: string, featureId: string) => {
    const features = state.customers.get(customerId) ?? new Map<string, FeatureUsage>();
    state.customers.set(customerId, features);
    const found = features.get(featureId) ?? { value: 0, recorded: 0, calls: 0, duplicates: 0 };
    features.set(featureId, found);
    return found;
  };
  const featuresOf = (customerId: string) => Object.fromEntries([...(state.customers.get(customerId) ?? new Map<string, FeatureUsage>())].map(([id, u]) => [id, { ...u }]));
  return {
    applied(customerId: string, featureId: string, value: number, recorded: number): void {
      const u = entry(customerId, featureId);
      u.value += value;
      u.recorded += recorded;
      u.calls += 1;
      state.totals.value += value;
      state.totals.recorded += recorded;
      state.totals.calls += 1;
    },
    /** A request refused with 409, or a batch item dropped, for its key; counted per feature when the body names one. */
    duplicate(customerId: string | undefined, featureId: string | undefined): void {
      if (customerId !== undefined && featureId !== undefined) entry(customerId, featureId).duplicates += 1;
      state.totals.duplicates += 1;
    },
    /** A batch item that failed (unknown customer, insufficient balance) and was dropped. */
    dropped(): void {
      state.totals.dropped += 1;
    },
    view: () => ({ since: state.since, totals: { ...state.totals }, customers: Object.fromEntries([...state.customers.keys()].map((id) => [id, featuresOf(id)])) }),
    customer: (customerId: string) => ({ customer_id: customerId, features: featuresOf(customerId) }),
    clear(at: number): void {
      state = { since: at, customers: new Map(), totals: { value: 0, recorded: 0, calls: 0, duplicates: 0, dropped: 0 } };
    },
  };
}

export async function startAutumnStandIn(options: AutumnStandInOptions): Promise<AutumnStandIn> {
  const now = options.now ?? Date.now;
  const env: Env = options.secretKey.startsWith("am_sk_live_") ? "live" : "sandbox";
  const signer = options.webhook?.secret ? new Webhook(options.webhook.secret) : null;
  const webhookUrl = options.webhook?.url ?? null;
  const store = new AutumnStore(env, now);
  let faults: Fault[] = [];
  const draws = new WeakMap<Fault, () => number>();
  let calls: Call[] = [];
  let stats: Stats = { since: now(), total: 0, paths: {} };
  /** Per customer named in a /v1 call's body: calls per path (only customers called are kept). */
  let customerCalls = new Map<string, Record<string, number>>();
  let webhooks: WebhookRecord[] = [];
  /** Idempotency keys claimed (header key as sent, body key as `track:<key>`) → when they expire. */
  const idempotencyKeys = new Map<string, number>();
  const usage = newUsageLedger(now());
  const timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  const deliveries = new Set<Promise<void>>();

  const error = (status: number, code: string, message: string, headers?: Record<string, string>): Reply => reply(status, { message, code, env }, headers);

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = { timer: setTimeout(() => (timers.delete(entry), resolve()), ms), resolve };
      timers.add(entry);
    });
  }

  /**
   * The first installed fault that matches this request, is done skipping and hits it (a rate
   * fault draws; the others always hit), with one use consumed. Every matching fault still
   * skipping counts this request as one of its `skip`.
   */
  function takeFault(path: string, body: unknown): Fault | undefined {
    const customerId = typeof body === "object" && body !== null ? (body as { customer_id?: unknown }).customer_id : undefined;
    const matching = faults.filter((f) => (f.paths === undefined || f.paths.includes(path)) && (f.customer_id === undefined || f.customer_id === customerId));
    let fault: Fault | undefined;
    for (const f of matching) {
      if (f.skip > 0) f.skip -= 1;
      else if (fault === undefined && (f.rate === undefined || draws.get(f)!() < f.rate)) fault = f;
    }
    if (!fault) return undefined;
    fault.fired += 1;
    if (fault.rate === undefined) {
      fault.count -= 1;
      if (fault.count <= 0) faults.splice(faults.indexOf(fault), 1);
    }
    return { ...fault };
  }

  function installFault(input: z.infer<typeof FaultInput>): void {
    const fault: Fault = { ...input, fired: 0 };
    if (fault.rate !== undefined) {
      fault.seed ??= Math.floor(Math.random() * 2 ** 31);
      draws.set(fault, seededRandom(fault.seed));
    }
    faults.push(fault);
  }

  const keyClaimed = (key: string) => {
    const expiresAt = idempotencyKeys.get(key);
    if (expiresAt === undefined) return false;
    if (expiresAt > now()) return true;
    idempotencyKeys.delete(key);
    return false;
  };
  function claimKey(key: string): void {
    // Forget expired keys now and then, so a long soak does not grow the map without bound.
    if (idempotencyKeys.size >= 100_000 && idempotencyKeys.size % 10_000 === 0) {
      const at = now();
      for (const [k, expiresAt] of idempotencyKeys) if (expiresAt <= at) idempotencyKeys.delete(k);
    }
    idempotencyKeys.set(key, now() + IDEMPOTENCY_TTL_MS);
  }
  const duplicate = () => error(409, "duplicate_idempotency_key", "Idempotency key already used");

  /**
   * One track, validated: the body key checked, the balance changed, the usage ledger and
   * limit_reached handled. Throws StandInError (404 customer, 400 insufficient_balance) before
   * changing anything. Returns null when the body key was used already.
   */
  function applyTrack(params: TrackParams): TrackResponse | null {
    const featureId = params.feature_id!;
    const bodyKey = params.idempotency_key === undefined ? undefined : `track:${params.idempotency_key}`;
    if (bodyKey !== undefined && keyClaimed(bodyKey)) {
      usage.duplicate(params.customer_id, featureId);
      return null;
    }
    const result = store.track(params.customer_id, { feature_id: featureId, value: params.value, overage_behavior: params.overage_behavior });
    if (bodyKey !== undefined) claimKey(bodyKey);
    usage.applied(params.customer_id, featureId, params.value, result.value);
    if (result.limitReached) {
      void webhookFor({ type: "balances.limit_reached", data: { customer_id: params.customer_id, feature_id: featureId, limit_type: "included" } }, true, false);
    }
    return {
      customer_id: params.customer_id,
      value: result.value,
      balance: result.balance,
      ...(params.entity_id === undefined ? {} : { entity_id: params.entity_id }),
      balances: { [featureId]: result.balance },
    };
  }

  /** A track's or batch's own checks, done before anything is applied: event names map to no feature here. */
  function refuseEventName(params: TrackParams): void {
    if (params.event_name !== undefined) throw new StandInError(404, "feature_not_found", `No feature is mapped to event_name ${params.event_name} (the stand-in maps none)`);
  }

  function track(value: unknown): Reply {
    const params = validateApi(TrackParams, value);
    refuseEventName(params);
    const answer = applyTrack(params);
    if (answer === null) return duplicate();
    return params.async ? reply(202, { customer_id: answer.customer_id, value: params.value, balance: null }) : reply(200, answer);
  }

  /** Every item validated before any is applied; then each applied in order, failures and duplicate keys dropped (Autumn only logs them). */
  function batchTrack(value: unknown): Reply {
    const items = validateApi(BatchTrackParams, value);
    items.forEach(refuseEventName);
    for (const params of items) {
      try {
        applyTrack(params);
      } catch (caught) {
        if (!(caught instanceof StandInError)) throw caught;
        usage.dropped();
      }
    }
    // 202, as the 2.3 OpenAPI document and the SDK generated from it say (autumn-js refuses a 200).
    return reply(202, { success: true });
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
        case "raw_body":
          return reply(fault.status ?? 200, fault.body ?? "");
        case "slow":
          await sleep(fault.delay_ms ?? SLOW_DEFAULT_MS);
          break;
        case "timeout":
          await sleep(fault.delay_ms ?? TIMEOUT_DEFAULT_MS);
          return error(503, "service_unavailable", "Service unavailable", retryAfter);
        case "timeout_after_apply":
        case "out_of_range":
          break;
      }
    }

    if (req.method !== "POST" || !API_PATHS.includes(path)) {
      return error(404, "not_found", `No route ${req.method ?? "?"} ${path}`);
    }
    // Autumn's idempotency middleware runs before the body is validated; a duplicate changes nothing.
    const rawKey = req.headers["idempotency-key"];
    const headerKey = typeof rawKey === "string" && rawKey !== "" ? rawKey : undefined;
    let answer: Reply;
    if (headerKey !== undefined && keyClaimed(headerKey)) {
      const body = json.ok ? (json.value as { customer_id?: unknown; feature_id?: unknown } | null) : null;
      usage.duplicate(typeof body?.customer_id === "string" ? body.customer_id : undefined, typeof body?.feature_id === "string" ? body.feature_id : undefined);
      answer = duplicate();
    } else {
      answer = route(path, json.ok && json.value !== null ? json.value : {});
      // Only an accepted request keeps its key: a failure releases it so the client can retry.
      if (headerKey !== undefined && answer.status >= 200 && answer.status < 300) claimKey(headerKey);
    }
    if (fault?.mode === "out_of_range" && answer.status === 200) return { ...answer, body: outOfRange(answer.body) };
    if (fault?.mode === "timeout_after_apply") {
      await sleep(fault.delay_ms ?? TIMEOUT_DEFAULT_MS);
      return error(503, "service_unavailable", "Service unavailable", fault.retry_after === undefined ? undefined : { "retry-after": String(fault.retry_after) });
    }
    return answer;
  }

  /** Autumn's validator reads a body that is not JSON (or is null) as {} and lets the schema decide. */
  function route(path: string, value: unknown): Reply {
    try {
      if (path === "/v1/customers.get") {
        const input = validateApi(GetCustomerBody, value);
        return reply(200, store.customerView(store.get(input.customer_id), input.expand?.includes("invoices") ?? false));
      }
      if (path === "/v1/invoices.list") return reply(200, store.listInvoices(capped(validateApi(ListInvoicesBody, value))));
      if (path === "/v1/customers.list") return reply(200, store.listCustomers(capped(validateApi(ListCustomersBody, value))));
      if (path === "/v1/balances.batch_track") return batchTrack(value);
      return track(value);
    } catch (caught) {
      if (caught instanceof StandInError) return error(caught.status, caught.code, caught.message);
      throw caught;
    }
  }

  const billingUpdated = (change: Change) => ({
    type: "billing.updated",
    data: { object: "billing.updated", customer_id: change.customerId, entity_id: null, plan_changes: change.planChanges, tags: change.tags },
  });

  /**
   * The Svix message Autumn sends for `event`, signed, kept in the webhook log, and delivered
   * unless `deliver` is false. `wait` false: answer at once and deliver meanwhile (`delivered`
   * is filled in when the receiver answers), as Autumn sends a track's webhooks.
   */
  async function webhookFor(event: { type: string; data: unknown }, deliver: boolean, wait = true): Promise<WebhookRecord> {
    const body = JSON.stringify(event);
    const id = randomId("msg_");
    const timestamp = Math.floor(now() / 1000);
    const headers: Record<string, string> = { "svix-id": id, "svix-timestamp": String(timestamp) };
    if (signer) headers["svix-signature"] = signer.sign(id, new Date(timestamp * 1000), body);
    headers["content-type"] = "application/json";
    const record: WebhookRecord = { id, url: webhookUrl, headers, body, delivered: null };
    webhooks.push(record);
    if (webhooks.length > MAX_WEBHOOKS) webhooks.splice(0, webhooks.length - MAX_WEBHOOKS);
    if (webhookUrl !== null && deliver) {
      const delivery = (async () => {
        try {
          const response = await fetch(webhookUrl, { method: "POST", headers, body, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS) });
          await response.arrayBuffer().catch(() => undefined);
          record.delivered = { status: response.status };
        } catch (caught) {
          record.delivered = { error: caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught) };
        }
      })();
      deliveries.add(delivery);
      void delivery.finally(() => deliveries.delete(delivery));
      if (wait) await delivery;
    }
    return { ...record };
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
      customerCalls = new Map();
      webhooks = [];
      idempotencyKeys.clear();
      usage.clear(now());
      return reply(200, { reset: true });
    }
    if (path === "/usage") {
      if (method === "GET") return reply(200, usage.view());
      if (method === "DELETE") return usage.clear(now()), reply(200, usage.view());
    }
    if (path === "/webhooks") {
      if (method === "GET") {
        const type = url.searchParams.get("type");
        const customerId = url.searchParams.get("customer_id");
        const matching = webhooks.filter((w) => {
          const event = JSON.parse(w.body) as { type: string; data: { customer_id?: unknown } };
          return (type === null || event.type === type) && (customerId === null || event.data.customer_id === customerId);
        });
        return reply(200, { webhooks: matching });
      }
      if (method === "DELETE") return (webhooks = []), reply(200, { webhooks });
    }
    if (path === "/stats") {
      if (method === "GET") return reply(200, stats);
      if (method === "DELETE") return (stats = { since: now(), total: 0, paths: {} }), (customerCalls = new Map()), reply(200, stats);
    }
    if (path === "/stats/customers") {
      if (method === "GET") return reply(200, { customers: Object.fromEntries(customerCalls) });
      if (method === "DELETE") return (customerCalls = new Map()), reply(200, { customers: {} });
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
      if (method === "POST") return installFault(validate(FaultInput, body())), reply(200, { faults });
    }
    if (path === "/calls") {
      if (method === "GET") return reply(200, { calls });
      if (method === "DELETE") return (calls = []), reply(200, { calls });
    }

    const deliver = !["0", "false"].includes(url.searchParams.get("deliver") ?? "");
    const balanceRoute = /^\/customers\/([^/]+)\/(?:balances\/([^/]+)(\/reset)?|(usage))$/.exec(path);
    if (balanceRoute) {
      const id = decodeURIComponent(balanceRoute[1]!);
      if (balanceRoute[4] === "usage") {
        if (method === "GET") return reply(200, usage.customer(id));
      } else if (method === "POST") {
        const featureId = decodeURIComponent(balanceRoute[2]!);
        if (balanceRoute[3] !== undefined) {
          const balance = store.resetBalance(id, featureId, validate(AtBody, body()).at ?? now());
          return reply(200, { customer: store.customerView(store.get(id), true), balance });
        }
        const { webhook: event, ...patch } = validate(BalanceBody, body());
        const balance = store.setBalance(id, featureId, stripUndefined(patch));
        const webhook = event === "billing.updated" ? await webhookFor(billingUpdated(store.planUpdated(id)), deliver) : null;
        return reply(200, { customer: store.customerView(store.get(id), true), balance, webhook });
      }
      return error(404, "not_found", `No control route ${method} ${url.pathname}`);
    }
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
      const customerId = json.ok ? (json.value as { customer_id?: unknown } | null)?.customer_id : undefined;
      if (typeof customerId === "string") {
        const byPath = customerCalls.get(customerId) ?? {};
        byPath[path] = (byPath[path] ?? 0) + 1;
        customerCalls.set(customerId, byPath);
      }
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
        // A track's webhook may still be on its way (at most WEBHOOK_TIMEOUT_MS).
        server.close(() => void Promise.allSettled([...deliveries]).then(() => resolve()));
        server.closeAllConnections();
      })),
  };
}
