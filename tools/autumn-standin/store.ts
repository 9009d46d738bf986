/**
 * The Autumn stand-in's in-memory model: customers, their subscriptions, invoices and feature
 * balances, and the billing changes a test or demo can make to them. No HTTP here.
 *
 * Views follow Autumn API 2.3.0 exactly (shared/reference/autumn-openapi-2.3-excerpt.yml and
 * autumn-usage-and-webhooks-2.3.md: snake_case properties, every field the schema marks
 * required); timestamps are epoch milliseconds, amounts are in major currency units (29.99).
 *
 * Balances: the stand-in has no feature catalogue. Its one plan grants every metered feature
 * without limit, so the first track of a feature the customer has no balance for creates an
 * unlimited balance (`unlimited: true`, `granted` and `remaining` 0, usage counted) until a test
 * sets an allowance (`setBalance`, a plan change). A limited balance (not unlimited, no overage)
 * blocks at `remaining` 0. Balances roll over lazily: whenever one is read or tracked after its
 * `next_reset_at` (on the store's clock), usage goes back to 0 and `next_reset_at` advances by the
 * reset interval (or becomes null when there is none).
 */

export type Env = "sandbox" | "live";
export type InvoiceStatus = "draft" | "open" | "void" | "paid" | "uncollectible" | "";
export const INVOICE_STATUSES = ["draft", "open", "void", "paid", "uncollectible", ""] as const;

export type Subscription = {
  id: string;
  plan_id: string;
  add_on: boolean;
  status: "active" | "expired";
  past_due: boolean;
  started_at: number;
  canceled_at: number | null;
  expires_at: number | null;
  current_period_start: number;
  current_period_end: number;
};

export type Invoice = {
  id: string;
  stripe_id: string;
  customer_id: string;
  plan_ids: string[];
  status: InvoiceStatus;
  total: number;
  amount_paid: number;
  currency: string;
  created_at: number;
  hosted_invoice_url: string | null;
  /** Insertion order, to keep invoices with equal `created_at` in a stable newest-first order. */
  seq: number;
};

/** One feature's balance as the stand-in keeps it; `reset_interval_ms` null = never resets. */
export type BalanceState = {
  feature_id: string;
  granted: number;
  usage: number;
  unlimited: boolean;
  overage_allowed: boolean;
  next_reset_at: number | null;
  reset_interval_ms: number | null;
};

/** 2.3 `Balance`: every field the schema marks required (no `breakdown`, `rollovers` or `feature`). */
export type BalanceView = {
  feature_id: string;
  granted: number;
  /** Never negative. 0 for an unlimited balance: read `unlimited` first. */
  remaining: number;
  usage: number;
  unlimited: boolean;
  overage_allowed: boolean;
  max_purchase: number | null;
  next_reset_at: number | null;
};

/** `setBalance`'s input: omitted fields keep their value, except `unlimited` (false unless given). */
export type BalancePatch = {
  granted?: number;
  usage?: number;
  unlimited?: boolean;
  overage_allowed?: boolean;
  next_reset_at?: number | null;
  reset_interval_ms?: number | null;
};

export type OverageBehavior = "cap" | "overflow" | "reject";

/** What one track did to one balance. */
export type TrackResult = {
  /** The amount recorded: less than asked when `cap` stopped at the limit, or when a credit back exceeded the usage. */
  value: number;
  balance: BalanceView;
  /** This track moved the feature from allowed to blocked: `balances.limit_reached` is owed. */
  limitReached: boolean;
};

export type Customer = {
  id: string;
  name: string | null;
  email: string | null;
  created_at: number;
  stripe_id: string;
  /** Expired subscriptions stay here (for the record) but drop out of every view. */
  subscriptions: Subscription[];
  invoices: Invoice[];
  balances: Map<string, BalanceState>;
  seq: number;
};

/** One entry of the `billing.updated` webhook's `data.plan_changes` (autumn-webhook-billing-updated-2.3.yml). */
export type PlanChange = {
  action: "activated" | "scheduled" | "updated" | "expired";
  subscription: {
    plan_id: string;
    status: "active" | "scheduled" | "expired";
    past_due: boolean;
    started_at: number | null;
    canceled_at: number | null;
    expires_at: number | null;
    trial_ends_at: number | null;
    current_period_start: number | null;
    current_period_end: number | null;
  };
  previous_attributes: { status?: "active" | "scheduled" | "expired"; past_due?: boolean } | null;
  item_changes: never[];
};

/** What a billing change produces: the `plan_changes` and `tags` of its `billing.updated` webhook. */
export type Change = { customerId: string; planChanges: PlanChange[]; tags: string[] };

/** `customers.get`'s subscription item (required fields of 2.3, plus `scope`). */
export type SubscriptionView = {
  id: string;
  plan_id: string;
  auto_enable: boolean;
  add_on: boolean;
  status: "active" | "scheduled";
  past_due: boolean;
  canceled_at: number | null;
  expires_at: number | null;
  trial_ends_at: number | null;
  started_at: number;
  current_period_start: number | null;
  current_period_end: number | null;
  quantity: number;
  scope: "customer" | "entity";
};

/** `customers.get`'s `invoices` item (with `expand: ["invoices"]`). */
export type CustomerInvoiceView = {
  plan_ids: string[];
  stripe_id: string;
  processor_type: "stripe";
  status: string;
  total: number;
  currency: string;
  created_at: number;
  hosted_invoice_url: string | null;
};

/** `invoices.list`'s item. */
export type InvoiceView = CustomerInvoiceView & {
  id: string;
  customer_id: string | null;
  entity_id: string | null;
  amount_paid: number | null;
  refunded_amount: number;
};

export type CustomerView = {
  id: string | null;
  name: string | null;
  email: string | null;
  created_at: number;
  fingerprint: string | null;
  stripe_id: string | null;
  processors: { stripe: { id: string } };
  env: Env;
  metadata: Record<string, unknown>;
  send_email_receipts: boolean;
  billing_controls: { auto_topups: never[] };
  subscriptions: SubscriptionView[];
  purchases: never[];
  licenses: never[];
  balances: Record<string, BalanceView>;
  flags: Record<string, never>;
  invoices?: CustomerInvoiceView[];
};

export type Page<T> = { list: T[]; next_cursor: string | null };

/** `customers.list`'s request body after validation (ListCustomersV2_3Params). */
export type ListCustomersFilter = {
  limit: number;
  start_cursor: string;
  plans?: { id: string; versions?: number[] }[];
  subscription_status?: "active" | "scheduled";
  search?: string;
  processors?: ("stripe" | "revenuecat" | "vercel")[];
  sort_order?: "asc" | "desc";
  created_at_range?: { start?: number; end?: number };
};

/** `invoice.finalized`'s `data`: the `invoices.list` row with `items` (autumn-usage-and-webhooks-2.3.md). */
export type InvoiceFinalizedData = InvoiceView & {
  items: {
    id: string;
    description: string;
    period_start: number | null;
    period_end: number | null;
    plan_id: string | null;
    feature_id: string | null;
    feature_name: string | null;
    quantity: number | null;
    amount: number;
    entities: never[];
  }[];
};

/** A failure with Autumn's error shape: HTTP status and `code`. */
export class StandInError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const PERIOD_MS = 30 * 86_400_000;
const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** `prefix` + 24 random alphanumerics, like Stripe's and Svix's ids. */
export function randomId(prefix: string, length = 24): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  // One flat string: appending a character at a time leaves a chain of cons strings in V8 (about
  // 0.5 KB an id), which a million seeded customers (bench/scale/sweep.ts) cannot afford.
  return prefix + String.fromCharCode(...Array.from(bytes, (byte) => ID_ALPHABET.charCodeAt(byte % ID_ALPHABET.length)));
}

/** Stripe leaves `hosted_invoice_url` null until an invoice is finalized. */
function hostedUrl(status: InvoiceStatus): string | null {
  return status === "draft" ? null : `https://invoice.stripe.com/i/acct_standin/test_${randomId("", 32)}`;
}

function snapshot(sub: Subscription): PlanChange["subscription"] {
  const expired = sub.status === "expired";
  return {
    plan_id: sub.plan_id,
    status: sub.status,
    past_due: sub.past_due,
    started_at: sub.started_at,
    canceled_at: sub.canceled_at,
    expires_at: sub.expires_at,
    trial_ends_at: null,
    current_period_start: expired ? null : sub.current_period_start,
    current_period_end: expired ? null : sub.current_period_end,
  };
}

function planChange(action: PlanChange["action"], sub: Subscription, previous: PlanChange["previous_attributes"]): PlanChange {
  return { action, subscription: snapshot(sub), previous_attributes: previous, item_changes: [] };
}

/** `invoices.list`'s cursor: an offset into the filtered, newest-first list (the billing side reads one customer's paid invoices). */
function encodeCursor(kind: string, offset: number): string {
  return Buffer.from(`${kind}:${offset}`).toString("base64url");
}

function decodeCursor(kind: string, cursor: string): number {
  if (cursor === "") return 0;
  const match = /^([a-z]+):(\d{1,9})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match || match[1] !== kind) throw new StandInError(400, "invalid_cursor", "start_cursor is not a cursor this endpoint issued");
  return Number(match[2]);
}

function paginate<T, V>(kind: string, items: T[], limit: number, startCursor: string, view: (item: T) => V): Page<V> {
  const offset = decodeCursor(kind, startCursor);
  const end = offset + limit;
  return { list: items.slice(offset, end).map(view), next_cursor: end < items.length ? encodeCursor(kind, end) : null };
}

/**
 * `customers.list`'s cursor, as Autumn 2.3 makes it (shared/api/common/cursorPaginationSchemas.ts,
 * StandardCursor): base64url of `{"v":0,"id":<customer id>,"t":<created_at>}`, the last customer
 * of the page. The next page is every customer strictly after that key in (created_at, id) order,
 * so customers that exist throughout a walk are neither skipped nor repeated, whatever is created
 * or deleted meanwhile. Clients must treat it as opaque.
 */
type CustomerCursor = { v: 0; id: string; t: number };

function encodeCustomerCursor(customer: Customer): string {
  const fields: CustomerCursor = { v: 0, id: customer.id, t: customer.created_at };
  return Buffer.from(JSON.stringify(fields), "utf8").toString("base64url");
}

function decodeCustomerCursor(cursor: string): CustomerCursor | null {
  if (cursor === "") return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw new StandInError(400, "invalid_cursor", "cursor payload is not valid JSON");
  }
  const fields = parsed as Partial<CustomerCursor> | null;
  if (
    typeof fields !== "object" ||
    fields === null ||
    fields.v !== 0 ||
    typeof fields.id !== "string" ||
    fields.id === "" ||
    typeof fields.t !== "number" ||
    !Number.isInteger(fields.t) ||
    fields.t < 0
  ) {
    throw new StandInError(400, "invalid_cursor", "cursor shape mismatch");
  }
  return { v: 0, id: fields.id, t: fields.t };
}

/** Autumn orders customers by (created_at, id), both in the requested direction. */
function compareCustomers(a: { created_at: number; id: string }, b: { created_at: number; id: string }): number {
  return a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

const newestFirst = (a: { created_at: number; seq: number }, b: { created_at: number; seq: number }) => b.created_at - a.created_at || b.seq - a.seq;

/** Neither unlimited nor allowed overage: the balance blocks at remaining 0. */
const limited = (b: BalanceState) => !b.unlimited && !b.overage_allowed;
const remainingOf = (b: BalanceState) => (b.unlimited ? 0 : Math.max(0, b.granted - b.usage));
/** Autumn's "allowed": remaining > 0, or never limited. */
const allowed = (b: BalanceState) => !limited(b) || remainingOf(b) > 0;

function balanceView(b: BalanceState): BalanceView {
  return {
    feature_id: b.feature_id,
    granted: b.granted,
    remaining: remainingOf(b),
    usage: b.usage,
    unlimited: b.unlimited,
    overage_allowed: b.overage_allowed,
    max_purchase: null,
    next_reset_at: b.next_reset_at,
  };
}

/** The period rolled over by `now`: usage back to 0, next_reset_at past `now` (every missed period skipped), or null without an interval. */
function rollOver(b: BalanceState, now: number): void {
  if (b.next_reset_at === null || now < b.next_reset_at) return;
  b.usage = 0;
  if (b.reset_interval_ms === null) {
    b.next_reset_at = null;
    return;
  }
  b.next_reset_at += (Math.floor((now - b.next_reset_at) / b.reset_interval_ms) + 1) * b.reset_interval_ms;
}

export class AutumnStore {
  readonly env: Env;
  private readonly customers = new Map<string, Customer>();
  /**
   * Every customer in ascending (created_at, id) order, built at the first listing after a customer was
   * created or deleted: a page is then a binary search and a short scan, not a sort of every customer
   * (a million-customer sweep, bench/scale/sweep.ts, reads a thousand pages).
   */
  private ordered: Customer[] | null = null;
  private seq = 0;
  /** The clock balances roll over on (the stand-in's). */
  private readonly now: () => number;

  constructor(env: Env = "sandbox", now: () => number = Date.now) {
    this.env = env;
    this.now = now;
  }

  reset(): void {
    this.customers.clear();
    this.ordered = null;
  }

  has(id: string): boolean {
    return this.customers.has(id);
  }

  get(id: string): Customer {
    const customer = this.customers.get(id);
    if (!customer) throw new StandInError(404, "customer_not_found", `Customer ${id} not found`);
    return customer;
  }

  /** A new customer with one active base subscription to `plan_id` (default "pro"), created at `created_at` (default now). */
  createCustomer(input: { id: string; name?: string | null; email?: string | null; plan_id?: string; created_at?: number | null }, now: number): Change {
    if (this.customers.has(input.id)) throw new StandInError(409, "customer_already_exists", `Customer ${input.id} already exists`);
    const createdAt = input.created_at ?? now;
    const customer: Customer = {
      id: input.id,
      name: input.name ?? null,
      email: input.email ?? null,
      created_at: createdAt,
      stripe_id: randomId("cus_", 14),
      subscriptions: [],
      invoices: [],
      balances: new Map(),
      seq: ++this.seq,
    };
    const sub = this.newSubscription(input.plan_id ?? "pro", false, false, createdAt);
    customer.subscriptions.push(sub);
    this.customers.set(input.id, customer);
    this.ordered = null;
    return { customerId: input.id, planChanges: [planChange("activated", sub, null)], tags: [] };
  }

  /** The customer is gone from Autumn (customers.get answers 404, customers.list leaves it out). */
  deleteCustomer(id: string): void {
    this.get(id);
    this.customers.delete(id);
    this.ordered = null;
  }

  /**
   * Many customers at once, for the benchmark: `${prefix}${i}` (i zero-padded), each with a
   * "pro" base subscription; `past_due` of them, spread evenly, past due on an open invoice
   * created at `past_due_at`. All or nothing: any id that exists already refuses the lot.
   */
  seed(input: { count: number; past_due: number; prefix: string; plan_id: string; created_at: number; past_due_at: number; total: number }): { ids: { first: string; last: string }; past_due_ids: string[] } {
    const width = String(Math.max(input.count - 1, 0)).length;
    const idOf = (i: number) => `${input.prefix}${String(i).padStart(width, "0")}`;
    for (let i = 0; i < input.count; i++) {
      if (this.customers.has(idOf(i))) throw new StandInError(409, "customer_already_exists", `Customer ${idOf(i)} already exists`);
    }
    const pastDue = new Set<number>();
    for (let j = 0; j < input.past_due; j++) pastDue.add(Math.floor((j * input.count) / input.past_due));
    const pastDueIds: string[] = [];
    for (let i = 0; i < input.count; i++) {
      const id = idOf(i);
      this.createCustomer({ id, plan_id: input.plan_id, created_at: input.created_at }, input.created_at);
      if (pastDue.has(i)) {
        this.pastDue(id, { at: input.past_due_at, total: input.total });
        pastDueIds.push(id);
      }
    }
    return { ids: { first: idOf(0), last: idOf(input.count - 1) }, past_due_ids: pastDueIds };
  }

  /**
   * Any subscription, e.g. an add-on that is past due (which a correct client must not act on),
   * optionally with an invoice of its own (`plan_ids` = this plan only), e.g. an add-on's open
   * invoice from 20 days ago. The subscription starts at `started_at` (default now).
   */
  addSubscription(
    id: string,
    input: { plan_id: string; add_on: boolean; past_due?: boolean; started_at?: number | null; invoice?: { status: InvoiceStatus; total: number; created_at: number } },
    now: number,
  ): Change {
    const customer = this.get(id);
    const sub = this.newSubscription(input.plan_id, input.add_on, input.past_due ?? false, input.started_at ?? now);
    customer.subscriptions.push(sub);
    if (input.invoice) this.insertInvoice(customer, { ...input.invoice, plan_ids: [input.plan_id] });
    return { customerId: id, planChanges: [planChange("activated", sub, null)], tags: [] };
  }

  /**
   * A failed renewal: a new `open` invoice naming the base plans, and the base subscription goes
   * past due. With `newInvoice: false` no invoice is added: a net-terms invoice that has been open
   * for a while (added with `addInvoice`) is now overdue.
   */
  pastDue(id: string, input: { at: number; total: number; newInvoice?: boolean }): Change {
    const customer = this.get(id);
    const base = this.baseSubscriptions(customer);
    if (base.length === 0) throw new StandInError(409, "no_active_subscription", `Customer ${id} has no active base subscription`);
    if (input.newInvoice !== false) this.insertInvoice(customer, { status: "open", total: input.total, created_at: input.at });
    const planChanges = base.map((sub) => {
      const previous = sub.past_due ? null : { past_due: false };
      sub.past_due = true;
      return planChange("updated", sub, previous);
    });
    return { customerId: id, planChanges, tags: [] };
  }

  /** Every open invoice is paid in full; past-due base subscriptions recover. */
  pay(id: string): Change {
    const customer = this.get(id);
    for (const invoice of customer.invoices) {
      if (invoice.status === "open") {
        invoice.status = "paid";
        invoice.amount_paid = invoice.total;
      }
    }
    return this.recover(customer);
  }

  /** The merchant voids every open invoice (a write-off): past-due base subscriptions recover without a payment. */
  voidOpenInvoices(id: string): Change {
    const customer = this.get(id);
    for (const invoice of customer.invoices) if (invoice.status === "open") invoice.status = "void";
    return this.recover(customer);
  }

  /** Past-due base subscriptions are no longer past due. */
  private recover(customer: Customer): Change {
    const planChanges = this.baseSubscriptions(customer)
      .filter((sub) => sub.past_due)
      .map((sub) => {
        sub.past_due = false;
        return planChange("updated", sub, { past_due: true });
      });
    return { customerId: customer.id, planChanges, tags: [] };
  }

  /** The base subscription ends (Stripe: canceled / incomplete_expired) and drops out of `subscriptions`. */
  expire(id: string, at: number): Change {
    const customer = this.get(id);
    const base = this.baseSubscriptions(customer);
    if (base.length === 0) throw new StandInError(409, "no_active_subscription", `Customer ${id} has no active base subscription`);
    const planChanges = base.map((sub) => {
      sub.status = "expired";
      sub.canceled_at = at;
      sub.expires_at = at;
      return planChange("expired", sub, { status: "active" });
    });
    return { customerId: id, planChanges, tags: [] };
  }

  /** Any invoice, e.g. a $0 trial invoice, an old paid one, or many unpaid ones. */
  addInvoice(id: string, input: { status: InvoiceStatus; total: number; currency?: string; created_at: number; plan_ids?: string[] }, tag = "invoice_created"): Change {
    const customer = this.get(id);
    this.insertInvoice(customer, input);
    return { customerId: id, planChanges: [], tags: [tag] };
  }

  /** The $0 invoice Stripe creates, and marks paid at once, when a trial starts. */
  trialInvoice(id: string, at: number): Change {
    return this.addInvoice(id, { status: "paid", total: 0, created_at: at }, "trial_started");
  }

  /**
   * `invoice.finalized`'s `data` for one of the customer's invoices (by Stripe id, default the
   * newest): the invoices.list row plus one line item per plan. `customer_id` is null when
   * `nullCustomerId` (Autumn: a customer created without an id).
   */
  invoiceFinalized(id: string, input: { stripe_id?: string; nullCustomerId?: boolean }): InvoiceFinalizedData {
    const customer = this.get(id);
    const invoice =
      input.stripe_id === undefined ? [...customer.invoices].sort(newestFirst)[0] : customer.invoices.find((candidate) => candidate.stripe_id === input.stripe_id);
    if (!invoice) throw new StandInError(404, "invoice_not_found", input.stripe_id === undefined ? `Customer ${id} has no invoice` : `Invoice ${input.stripe_id} not found`);
    const planIds = invoice.plan_ids.length > 0 ? invoice.plan_ids : [null];
    const share = Math.round((invoice.total / planIds.length) * 100) / 100;
    return {
      ...invoiceView(invoice),
      customer_id: input.nullCustomerId ? null : invoice.customer_id,
      items: planIds.map((planId, i) => ({
        id: randomId("invoice_li_"),
        description: planId === null ? "Invoice item" : `1 × ${planId}`,
        period_start: invoice.created_at,
        period_end: invoice.created_at + PERIOD_MS,
        plan_id: planId,
        feature_id: null,
        feature_name: null,
        quantity: null,
        // The last line takes the rounding remainder so the lines add up to the total.
        amount: i === planIds.length - 1 ? Math.round((invoice.total - share * (planIds.length - 1)) * 100) / 100 : share,
        entities: [],
      })),
    };
  }

  /**
   * One track of `value` against the customer's balance of `featureId` (created unlimited if
   * missing). `cap` records only what fits a limited balance; `overflow` records everything;
   * `reject` refuses (400 insufficient_balance) what does not fit. A negative value credits back,
   * at most the usage (usage never goes below 0).
   */
  track(id: string, input: { feature_id: string; value: number; overage_behavior: OverageBehavior }): TrackResult {
    const customer = this.get(id);
    const now = this.now();
    let b = customer.balances.get(input.feature_id);
    if (b === undefined) {
      b = { feature_id: input.feature_id, granted: 0, usage: 0, unlimited: true, overage_allowed: false, next_reset_at: null, reset_interval_ms: null };
      customer.balances.set(input.feature_id, b);
    }
    rollOver(b, now);
    const wasAllowed = allowed(b);
    let value = input.value;
    if (value > 0 && limited(b) && value > remainingOf(b)) {
      if (input.overage_behavior === "reject") throw new StandInError(400, "insufficient_balance", `Insufficient balance for feature ${input.feature_id}: ${remainingOf(b)} left, ${value} asked`);
      if (input.overage_behavior === "cap") value = remainingOf(b);
    }
    if (value < 0) value = Math.max(value, -b.usage);
    b.usage += value;
    return { value, balance: balanceView(b), limitReached: wasAllowed && !allowed(b) };
  }

  /** A plan change: the customer's allowance for `featureId` (created if missing). See BalancePatch. */
  setBalance(id: string, featureId: string, patch: BalancePatch): BalanceView {
    const customer = this.get(id);
    const now = this.now();
    const b = customer.balances.get(featureId) ?? { feature_id: featureId, granted: 0, usage: 0, unlimited: false, overage_allowed: false, next_reset_at: null, reset_interval_ms: null };
    rollOver(b, now);
    b.unlimited = patch.unlimited ?? false;
    if (patch.granted !== undefined) b.granted = patch.granted;
    if (patch.usage !== undefined) b.usage = patch.usage;
    if (patch.overage_allowed !== undefined) b.overage_allowed = patch.overage_allowed;
    if (patch.reset_interval_ms !== undefined) b.reset_interval_ms = patch.reset_interval_ms;
    if (patch.next_reset_at !== undefined) b.next_reset_at = patch.next_reset_at;
    else if (b.next_reset_at === null && b.reset_interval_ms !== null) b.next_reset_at = now + b.reset_interval_ms;
    customer.balances.set(featureId, b);
    return balanceView(b);
  }

  /** The period rolled over at `at`: usage back to 0, next_reset_at one interval after `at` (null without an interval). */
  resetBalance(id: string, featureId: string, at: number): BalanceView {
    const b = this.get(id).balances.get(featureId);
    if (b === undefined) throw new StandInError(404, "balance_not_found", `Customer ${id} has no balance for feature ${featureId}`);
    b.usage = 0;
    b.next_reset_at = b.reset_interval_ms === null ? null : at + b.reset_interval_ms;
    return balanceView(b);
  }

  /** Every balance of the customer, rolled over to now, by feature id. */
  balancesView(customer: Customer): Record<string, BalanceView> {
    const now = this.now();
    const out: Record<string, BalanceView> = {};
    for (const [featureId, b] of customer.balances) {
      rollOver(b, now);
      out[featureId] = balanceView(b);
    }
    return out;
  }

  /** A plan upgrade's `billing.updated`: every active base subscription "updated", nothing else changed. */
  planUpdated(id: string): Change {
    const customer = this.get(id);
    return { customerId: id, planChanges: this.baseSubscriptions(customer).map((sub) => planChange("updated", sub, null)), tags: [] };
  }

  /** `customers.get`: every field 2.3 marks required; `invoices` (10 newest first) only when asked for. */
  customerView(customer: Customer, withInvoices: boolean, subscriptionStatus?: "active" | "scheduled"): CustomerView {
    const view: CustomerView = {
      id: customer.id,
      name: customer.name,
      email: customer.email,
      created_at: customer.created_at,
      fingerprint: null,
      stripe_id: customer.stripe_id,
      processors: { stripe: { id: customer.stripe_id } },
      env: this.env,
      metadata: {},
      send_email_receipts: false,
      billing_controls: { auto_topups: [] },
      subscriptions: customer.subscriptions.filter((sub) => sub.status !== "expired" && inStatus(sub, subscriptionStatus)).map(subscriptionView),
      purchases: [],
      licenses: [],
      balances: this.balancesView(customer),
      flags: {},
    };
    if (withInvoices) view.invoices = [...customer.invoices].sort(newestFirst).slice(0, 10).map(customerInvoiceView);
    return view;
  }

  /** `invoices.list`: newest first, filtered, paged with an opaque cursor. */
  listInvoices(filter: { customer_id?: string; entity_id?: string; status?: string[]; processor_types?: string[]; limit: number; start_cursor: string }): Page<InvoiceView> {
    // A customer's invoices are all on that customer: one customer's list need not walk every customer.
    const owners = filter.customer_id === undefined ? [...this.customers.values()] : [this.customers.get(filter.customer_id)].filter((c) => c !== undefined);
    const matching = owners
      .flatMap((customer) => customer.invoices)
      .filter(
        (invoice) =>
          (filter.customer_id === undefined || invoice.customer_id === filter.customer_id) &&
          // Every invoice here is customer-level (entity_id null).
          filter.entity_id === undefined &&
          (filter.status === undefined || filter.status.includes(invoice.status)) &&
          (filter.processor_types === undefined || filter.processor_types.includes("stripe")),
      )
      .sort(newestFirst);
    return paginate("invoices", matching, filter.limit, filter.start_cursor, invoiceView);
  }

  /**
   * `customers.list` as 2.3 answers it: full customer objects (no invoices), newest first unless
   * `sort_order: "asc"`, keyset-paged on (created_at, id) with Autumn's cursor. `subscription_status`
   * narrows the subscriptions shown (Autumn keeps a past-due subscription in status `past_due`, so
   * "active" leaves it out); it filters customers only together with `plans`.
   */
  listCustomers(filter: ListCustomersFilter): Page<CustomerView> {
    const cursor = decodeCustomerCursor(filter.start_cursor);
    const direction = filter.sort_order === "asc" ? 1 : -1;
    const search = filter.search?.trim().toLowerCase();
    const range = filter.created_at_range;
    const plans = filter.plans?.length ? filter.plans : undefined;
    const processors = filter.processors?.length ? filter.processors : undefined;
    const matches = (c: Customer) =>
        (range?.start === undefined || c.created_at >= range.start) &&
        (range?.end === undefined || c.created_at <= range.end) &&
        (!search || [c.id, c.name, c.email].some((field) => field?.toLowerCase().includes(search))) &&
        // Every stand-in customer exists in Stripe only; every plan is version 1.
        (processors === undefined || processors.includes("stripe")) &&
        (plans === undefined ||
          c.subscriptions.some(
            (sub) => sub.status !== "expired" && inStatus(sub, filter.subscription_status) && plans.some((plan) => plan.id === sub.plan_id && (!plan.versions?.length || plan.versions.includes(1))),
          ));
    const ordered = (this.ordered ??= [...this.customers.values()].sort(compareCustomers));
    // Where the walk resumes: the first key past the cursor's in the walk's direction (keys are unique: ids are).
    const after = cursor === null ? null : { created_at: cursor.t, id: cursor.id };
    const firstAbove = (key: { created_at: number; id: string }, orEqual: boolean) => {
      let lo = 0;
      let hi = ordered.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const order = compareCustomers(ordered[mid]!, key);
        if (order < 0 || (order === 0 && !orEqual)) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    // One past the page, to know whether another follows.
    const matching: Customer[] = [];
    if (direction === 1) {
      for (let i = after === null ? 0 : firstAbove(after, false); i < ordered.length && matching.length <= filter.limit; i++) if (matches(ordered[i]!)) matching.push(ordered[i]!);
    } else {
      for (let i = (after === null ? ordered.length : firstAbove(after, true)) - 1; i >= 0 && matching.length <= filter.limit; i--) if (matches(ordered[i]!)) matching.push(ordered[i]!);
    }
    const page = matching.slice(0, filter.limit);
    const last = page.at(-1);
    return {
      list: page.map((customer) => this.customerView(customer, false, filter.subscription_status)),
      next_cursor: matching.length > filter.limit && last ? encodeCustomerCursor(last) : null,
    };
  }

  private baseSubscriptions(customer: Customer): Subscription[] {
    return customer.subscriptions.filter((sub) => !sub.add_on && sub.status === "active");
  }

  private newSubscription(planId: string, addOn: boolean, pastDue: boolean, now: number): Subscription {
    return {
      id: randomId("sub_", 14),
      plan_id: planId,
      add_on: addOn,
      status: "active",
      past_due: pastDue,
      started_at: now,
      canceled_at: null,
      expires_at: null,
      current_period_start: now,
      current_period_end: now + PERIOD_MS,
    };
  }

  private insertInvoice(customer: Customer, input: { status: InvoiceStatus; total: number; currency?: string; created_at: number; plan_ids?: string[] }): Invoice {
    const invoice: Invoice = {
      id: randomId("inv_", 14),
      stripe_id: randomId("in_"),
      customer_id: customer.id,
      plan_ids: input.plan_ids ?? this.baseSubscriptions(customer).map((sub) => sub.plan_id),
      status: input.status,
      total: input.total,
      amount_paid: input.status === "paid" ? input.total : 0,
      currency: input.currency ?? "usd",
      created_at: input.created_at,
      hosted_invoice_url: hostedUrl(input.status),
      seq: ++this.seq,
    };
    customer.invoices.push(invoice);
    return invoice;
  }
}

/** Autumn's customer-product status: `past_due` for a past-due subscription, shown as status "active" with `past_due: true`. */
function inStatus(sub: Subscription, wanted: "active" | "scheduled" | undefined): boolean {
  if (wanted === undefined) return true;
  return wanted === "active" && !sub.past_due;
}

function subscriptionView(sub: Subscription): SubscriptionView {
  return {
    id: sub.id,
    plan_id: sub.plan_id,
    auto_enable: false,
    add_on: sub.add_on,
    status: "active",
    past_due: sub.past_due,
    canceled_at: sub.canceled_at,
    expires_at: sub.expires_at,
    trial_ends_at: null,
    started_at: sub.started_at,
    current_period_start: sub.current_period_start,
    current_period_end: sub.current_period_end,
    quantity: 1,
    scope: "customer",
  };
}

function customerInvoiceView(invoice: Invoice): CustomerInvoiceView {
  return {
    plan_ids: [...invoice.plan_ids],
    stripe_id: invoice.stripe_id,
    processor_type: "stripe",
    status: invoice.status,
    total: invoice.total,
    currency: invoice.currency,
    created_at: invoice.created_at,
    hosted_invoice_url: invoice.hosted_invoice_url,
  };
}

function invoiceView(invoice: Invoice): InvoiceView {
  return {
    id: invoice.id,
    customer_id: invoice.customer_id,
    entity_id: null,
    ...customerInvoiceView(invoice),
    amount_paid: invoice.amount_paid,
    refunded_amount: 0,
  };
}
