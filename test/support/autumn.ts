import { fakeUrl } from "./fake-urls.ts";
import { TEST_AUTUMN_SECRET_KEY } from "./secrets.ts";
import type { BalancePatch, BalanceView as StandInBalance } from "../../tools/autumn-standin/store.ts";

/**
 * The control API of the Autumn stand-in (tools/autumn-standin), which runs in Node on loopback.
 *
 * The tests' stand-in has no webhook URL: every change returns the signed webhook Autumn would
 * send and the test delivers it (or not) itself. `webhook: false` additionally asks the stand-in
 * not to deliver (`?deliver=0`), which matters only for a stand-in with a URL (npm start); in a
 * test it documents a lost webhook: do not deliver the returned one.
 *
 * The stand-in is shared by every test file of a project: customers.list walks everyone's
 * customers, and faults, stats and seeds are global. Use unique ids and prefixes.
 */
export type StandInWebhook = { id: string; url: string | null; headers: Record<string, string>; body: string; delivered?: null | { status: number } | { error: string } };
export type ControlResult = { customer: any; webhook: StandInWebhook };
export type Fault = {
  /**
   * timeout: nothing applied, 503 after delay_ms (default 15 s, longer than a client waits);
   * timeout_after_apply: the request is applied and its idempotency keys kept, then the same late 503.
   */
  mode: "http_500" | "http_429" | "http_503" | "invalid_json" | "slow" | "http_404_unknown_code" | "timeout" | "timeout_after_apply" | "raw_body" | "out_of_range";
  /** raw_body: the exact text answered instead of the real answer (nothing applied), with `status` (default 200). */
  body?: string;
  status?: number;
  /** How many matching calls it answers (default 1; ignored with `rate`). */
  count?: number;
  /** Let this many matching calls through first (default 0): skip 1 on customers.list fails page 2. */
  skip?: number;
  /** Hit this fraction (0-1) of matching calls, drawn from a PRNG seeded by `seed`; stays until cleared. */
  rate?: number;
  seed?: number;
  retry_after?: number;
  delay_ms?: number;
  /** e.g. ["/v1/customers.list"]; default every /v1 path. */
  paths?: string[];
  /** Only calls whose body has this customer_id (customers.get, invoices.list). */
  customer_id?: string;
};
/** 2.3 `Balance` as customers.get and balances.track return it (the stand-in's own view). */
export type { StandInBalance };
/** An allowance (a plan change): the stand-in's balance patch (omitted fields keep their value, `unlimited` is false unless given). */
export type Allowance = BalancePatch;
export type FeatureUsage = { value: number; recorded: number; calls: number; duplicates: number };
export type StandInUsage = { since: number; totals: FeatureUsage & { dropped: number }; customers: Record<string, Record<string, FeatureUsage>> };
export type TrackInput = {
  value?: number;
  overage_behavior?: "cap" | "overflow";
  /** Sent as the `Idempotency-Key` header (what Tollgate sends). */
  idempotencyKey?: string;
  /** Sent as the body's `idempotency_key` (internal in Autumn, a separate key). */
  idempotency_key?: string;
  entity_id?: string;
  properties?: Record<string, unknown>;
  timestamp?: number;
};
export type InvoiceStatus = "draft" | "open" | "void" | "paid" | "uncollectible" | "";
export type WebhookOption = { webhook?: boolean };
export type PastDueOptions = WebhookOption & {
  /** The new open invoice's created_at (default now). */
  at?: number;
  total?: number;
  /** false: no new invoice; an invoice already open (net terms) is now overdue. */
  invoice?: boolean;
};
export type SubscriptionInput = {
  plan_id: string;
  add_on: boolean;
  past_due?: boolean;
  started_at?: number;
  /** An invoice of this subscription alone (plan_ids = [plan_id]), e.g. an add-on's open invoice from 20 days ago. */
  invoice?: { status?: InvoiceStatus; total: number; created_at?: number };
};
export type SeedInput = { count: number; past_due?: number; prefix?: string; plan_id?: string; created_at?: number; past_due_at?: number; total?: number };
export type SeedResult = { created: number; ids: { first: string; last: string }; past_due_ids: string[] };
export type PathStats = { total: number; status: Record<string, number>; faults: number };
export type StandInStats = { since: number; total: number; paths: Record<string, PathStats> };
export type CustomersListBody = {
  start_cursor?: string;
  limit?: number;
  plans?: { id: string; versions?: number[] }[];
  subscription_status?: "active" | "scheduled";
  search?: string;
  processors?: ("stripe" | "revenuecat" | "vercel")[];
  sort_order?: "asc" | "desc";
  created_at_range?: { start?: number; end?: number };
};

const query = (options?: WebhookOption) => (options?.webhook === false ? "?deliver=0" : "");
const withAt = (at: number | undefined) => (at === undefined ? {} : { at });

/** The helpers against the stand-in at `baseUrl()` (tests inside workerd: the global setup's). */
export function autumnControls(baseUrl: () => string, secretKey = TEST_AUTUMN_SECRET_KEY) {
  async function control<T = ControlResult>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${baseUrl()}/_control${path}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!response.ok) throw new Error(`stand-in ${method} ${path} answered ${response.status}: ${await response.text()}`);
    return (await response.json()) as T;
  }
  const customer = (id: string) => `/customers/${encodeURIComponent(id)}`;

  return {
    createCustomer: (id: string, options: { name?: string; email?: string; plan_id?: string; created_at?: number } & WebhookOption = {}) => {
      const { webhook, ...body } = options;
      return control("POST", `/customers${query({ webhook })}`, { id, ...body });
    },
    /** The base plan goes past due on a new open invoice naming it (`at`: its created_at). A number is `at`. */
    pastDue: (id: string, options?: number | PastDueOptions) => {
      const { webhook, ...body } = typeof options === "number" ? { at: options } : (options ?? {});
      return control("POST", `${customer(id)}/past-due${query({ webhook })}`, body);
    },
    /** Every open invoice paid, the base plan no longer past due. `{webhook: false}`: a lost payment webhook. */
    pay: (id: string, options?: number | (WebhookOption & { at?: number })) => {
      const { webhook, at } = typeof options === "number" ? { at: options, webhook: undefined } : (options ?? {});
      return control("POST", `${customer(id)}/pay${query({ webhook })}`, withAt(at));
    },
    /** Any invoice; plan_ids default to the active base plans. */
    addInvoice: (id: string, invoice: { status: InvoiceStatus; total: number; created_at?: number; plan_ids?: string[]; currency?: string }, options?: WebhookOption) =>
      control("POST", `${customer(id)}/invoices${query(options)}`, invoice),
    /** Net terms: an open invoice on the base plan, created at `created_at`, the plan NOT past due (until `pastDue(id, {invoice: false})`). */
    netTermsInvoice: (id: string, invoice: { created_at: number; total?: number }, options?: WebhookOption) =>
      control("POST", `${customer(id)}/invoices${query(options)}`, { status: "open", total: invoice.total ?? 29.99, created_at: invoice.created_at }),
    trialInvoice: (id: string, at?: number) => control("POST", `${customer(id)}/trial-invoice`, withAt(at)),
    expire: (id: string, at?: number) => control("POST", `${customer(id)}/expire`, withAt(at)),
    voidInvoices: (id: string, at?: number) => control("POST", `${customer(id)}/void-invoices`, withAt(at)),
    addSubscription: (id: string, sub: SubscriptionInput, options?: WebhookOption) => control("POST", `${customer(id)}/subscriptions${query(options)}`, sub),
    /** An add-on with its own open invoice created at `created_at` (the "add-on's old invoice"). */
    addOnWithOpenInvoice: (id: string, addOn: { plan_id: string; created_at: number; total?: number; past_due?: boolean }, options?: WebhookOption) =>
      control("POST", `${customer(id)}/subscriptions${query(options)}`, {
        plan_id: addOn.plan_id,
        add_on: true,
        started_at: addOn.created_at,
        ...(addOn.past_due === undefined ? {} : { past_due: addOn.past_due }),
        invoice: { status: "open", total: addOn.total ?? 9, created_at: addOn.created_at },
      }),
    /** Autumn's signed `invoice.finalized` for one invoice (default the newest); `null_customer_id` sends data.customer_id null. */
    invoiceFinalized: (id: string, options: { stripe_id?: string; null_customer_id?: boolean } & WebhookOption = {}) => {
      const { webhook, ...body } = options;
      return control("POST", `${customer(id)}/invoice-finalized${query({ webhook })}`, body);
    },
    /** The customer is gone from customers.get (404) and customers.list. */
    deleteCustomer: (id: string) => control<{ deleted: string }>("DELETE", customer(id)),
    /** The customers.get view with invoices, through the control API (not counted in stats). */
    customer: async (id: string) => (await control<{ customer: any }>("GET", customer(id))).customer,
    /** `count` customers `${prefix}${i}` (zero-padded) in one call, `past_due` of them past due; no webhooks. */
    seed: (input: SeedInput) => control<SeedResult>("POST", "/seed", input),
    /** /v1 calls per path and status since the last reset (shared by every test of the project: compare before and after). */
    stats: () => control<StandInStats>("GET", "/stats"),
    resetStats: () => control<StandInStats>("DELETE", "/stats"),
    /** A real customers.list call, as Tollgate makes it (Bearer key, x-api-version 2.3.0). */
    listCustomers: async (body: CustomersListBody = {}) => {
      const response = await fetch(`${baseUrl()}/v1/customers.list`, {
        method: "POST",
        headers: { authorization: `Bearer ${secretKey}`, "x-api-version": "2.3.0", "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) throw new Error(`customers.list answered ${response.status}: ${await response.text()}`);
      return (await response.json()) as { list: any[]; next_cursor: string | null };
    },
    /**
     * A plan change: the customer's allowance for `featureId`. `billingUpdated: true` also sends the
     * signed billing.updated a plan upgrade would (returned as `webhook`; null otherwise).
     */
    setAllowance: (customerId: string, featureId: string, allowance: Allowance, options: { billingUpdated?: boolean } & WebhookOption = {}) =>
      control<{ customer: any; balance: StandInBalance; webhook: StandInWebhook | null }>(
        "POST",
        `${customer(customerId)}/balances/${encodeURIComponent(featureId)}${query(options)}`,
        { ...allowance, webhook: options.billingUpdated ? "billing.updated" : null },
      ),
    /** The period rolled over at `at` (default now): usage 0, next_reset_at one interval later. */
    resetBalance: (customerId: string, featureId: string, at?: number) =>
      control<{ customer: any; balance: StandInBalance }>("POST", `${customer(customerId)}/balances/${encodeURIComponent(featureId)}/reset`, withAt(at)),
    /** customers.get's balances, through the control API (not counted in stats). */
    balances: async (customerId: string) => (await control<{ customer: { balances: Record<string, StandInBalance> } }>("GET", customer(customerId))).customer.balances as Record<string, StandInBalance>,
    /** What track and batch_track applied, per customer and feature (shared: compare before and after, or use your own customers). */
    usage: () => control<StandInUsage>("GET", "/usage"),
    usageOf: async (customerId: string) => (await control<{ customer_id: string; features: Record<string, FeatureUsage> }>("GET", `${customer(customerId)}/usage`)).features,
    /** Webhooks the stand-in built (newest last), e.g. `{type: "balances.limit_reached", customer_id}` to deliver one by hand. */
    webhooks: async (filter: { type?: string; customer_id?: string } = {}) => {
      const params = new URLSearchParams(Object.entries(filter).filter((entry): entry is [string, string] => entry[1] !== undefined));
      const search = params.size > 0 ? `?${params}` : "";
      return (await control<{ webhooks: StandInWebhook[] }>("GET", `/webhooks${search}`)).webhooks;
    },
    /** A real balances.track call (Bearer key, x-api-version 2.3.0); answers whatever status the stand-in gives. */
    track: async (customerId: string, featureId: string, input: TrackInput = {}) => {
      const { idempotencyKey, ...rest } = input;
      const response = await fetch(`${baseUrl()}/v1/balances.track`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${secretKey}`,
          "x-api-version": "2.3.0",
          "content-type": "application/json",
          ...(idempotencyKey === undefined ? {} : { "idempotency-key": idempotencyKey }),
        },
        body: JSON.stringify({ customer_id: customerId, feature_id: featureId, ...rest }),
      });
      return { status: response.status, body: (await response.json()) as any };
    },
    fault: (fault: Fault) => control<unknown>("POST", "/faults", fault),
    /** Replace every queued fault with these, in order. */
    setFaults: async (faults: Fault[]) => {
      await control<unknown>("DELETE", "/faults");
      for (const fault of faults) await control<unknown>("POST", "/faults", fault);
    },
    clearFaults: () => control<unknown>("DELETE", "/faults"),
    calls: async (customerId?: string) => {
      const { calls } = await control<{ calls: { path: string; body: { customer_id?: string }; status: number }[] }>("GET", "/calls");
      return customerId === undefined ? calls : calls.filter((call) => call.body?.customer_id === customerId);
    },
  };
}

// The billing and ingest projects provide it (test/support/global-setup.ts); declared here too for the tools project's typecheck.
declare module "vitest" {
  export interface ProvidedContext {
    autumnUrl: string;
  }
}

export const autumn = autumnControls(() => fakeUrl("autumnUrl"));

/**
 * delay_ms of a late Autumn answer (slow, timeout, timeout_after_apply) in the tests: far past their 1 s AUTUMN_TIMEOUT,
 * so a runtime starved of CPU on a loaded machine still times out first (as SLOW_UPSTREAM_MS for the upstream sink).
 * It never holds a test up: the client gives up at 1 s.
 */
export const SLOW_AUTUMN_MS = 10_000;
