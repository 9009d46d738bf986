/**
 * The Autumn stand-in's in-memory model: customers with subscriptions and invoices, and
 * the billing changes a test or demo can make. Views follow Autumn API 2.3.0 exactly
 * (shared/reference/autumn-openapi-2.3-excerpt.yml); timestamps are epoch milliseconds.
 */
export type Subscription = {
  id: string;
  plan_id: string;
  add_on: boolean;
  past_due: boolean;
  started_at: number;
  current_period_start: number;
  current_period_end: number;
};

export type Invoice = {
  id: string;
  stripe_id: string;
  customer_id: string;
  plan_ids: string[];
  status: string;
  total: number;
  amount_paid: number | null;
  currency: string;
  created_at: number;
  hosted_invoice_url: string | null;
};

export type Customer = { id: string; name: string | null; email: string | null; created_at: number; stripe_id: string; subscriptions: Subscription[]; invoices: Invoice[] };

/** One entry of billing.updated's `plan_changes`. */
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
  previous_attributes: Record<string, unknown> | null;
  item_changes: [];
};

const MONTH = 30 * 86_400_000;
let sequence = 0;
const randomId = (prefix: string) => `${prefix}${Date.now().toString(36)}${(++sequence).toString(36)}${Math.random().toString(36).slice(2, 8)}`;

export class StandInError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function planChange(action: PlanChange["action"], sub: Subscription, previous: Record<string, unknown> | null, at: number): PlanChange {
  const expired = action === "expired";
  return {
    action,
    subscription: {
      plan_id: sub.plan_id,
      status: expired ? "expired" : "active",
      past_due: sub.past_due,
      started_at: sub.started_at,
      canceled_at: expired ? at : null,
      expires_at: expired ? at : null,
      trial_ends_at: null,
      current_period_start: expired ? null : sub.current_period_start,
      current_period_end: expired ? null : sub.current_period_end,
    },
    previous_attributes: previous,
    item_changes: [],
  };
}

export class AutumnStore {
  readonly customers = new Map<string, Customer>();

  get(id: string): Customer {
    const customer = this.customers.get(id);
    if (!customer) throw new StandInError(404, "customer_not_found", `Customer ${id} not found`);
    return customer;
  }

  create(input: { id: string; name?: string; email?: string; plan_id?: string }, now: number): PlanChange[] {
    if (this.customers.has(input.id)) throw new StandInError(409, "customer_already_exists", `Customer ${input.id} already exists`);
    const sub: Subscription = { id: randomId("sub_"), plan_id: input.plan_id ?? "pro", add_on: false, past_due: false, started_at: now, current_period_start: now, current_period_end: now + MONTH };
    this.customers.set(input.id, { id: input.id, name: input.name ?? null, email: input.email ?? null, created_at: now, stripe_id: randomId("cus_"), subscriptions: [sub], invoices: [] });
    return [planChange("activated", sub, null, now)];
  }

  addInvoice(id: string, input: { status: string; total: number; currency?: string; created_at?: number; plan_ids?: string[] }, now: number): Invoice {
    const customer = this.get(id);
    const invoice: Invoice = {
      id: randomId("inv_"),
      stripe_id: randomId("in_"),
      customer_id: id,
      plan_ids: input.plan_ids ?? customer.subscriptions.filter((s) => !s.add_on).map((s) => s.plan_id),
      status: input.status,
      total: input.total,
      amount_paid: input.status === "paid" ? input.total : 0,
      currency: input.currency ?? "usd",
      created_at: input.created_at ?? now,
      hosted_invoice_url: null,
    };
    invoice.hosted_invoice_url = `https://invoice.stripe.com/i/acct_standin/${invoice.stripe_id}`;
    customer.invoices.push(invoice);
    return invoice;
  }

  /** A failed renewal: the base subscription goes past due and its invoice stays open. */
  pastDue(id: string, at: number, total: number): PlanChange[] {
    const customer = this.get(id);
    const base = customer.subscriptions.filter((s) => !s.add_on);
    if (base.length === 0) throw new StandInError(400, "no_subscription", `Customer ${id} has no base subscription`);
    this.addInvoice(id, { status: "open", total, created_at: at }, at);
    return base.map((sub) => {
      const previous = { past_due: sub.past_due };
      sub.past_due = true;
      return planChange("updated", sub, previous, at);
    });
  }

  /** Every open invoice is paid; past-due subscriptions recover. */
  pay(id: string, at: number): PlanChange[] {
    const customer = this.get(id);
    for (const invoice of customer.invoices) {
      if (invoice.status === "open") {
        invoice.status = "paid";
        invoice.amount_paid = invoice.total;
      }
    }
    return customer.subscriptions
      .filter((sub) => sub.past_due)
      .map((sub) => {
        sub.past_due = false;
        return planChange("updated", sub, { past_due: true }, at);
      });
  }

  /** The merchant voids the open invoices (a write-off): past-due subscriptions recover without any payment. */
  voidOpenInvoices(id: string, at: number): PlanChange[] {
    const customer = this.get(id);
    for (const invoice of customer.invoices) if (invoice.status === "open") invoice.status = "void";
    return customer.subscriptions
      .filter((sub) => sub.past_due)
      .map((sub) => {
        sub.past_due = false;
        return planChange("updated", sub, { past_due: true }, at);
      });
  }

  /** The base subscription ends and drops out of `subscriptions`, as expired ones do. */
  expire(id: string, at: number): PlanChange[] {
    const customer = this.get(id);
    const expired = customer.subscriptions.filter((s) => !s.add_on);
    customer.subscriptions = customer.subscriptions.filter((s) => s.add_on);
    return expired.map((sub) => planChange("expired", sub, { status: "active" }, at));
  }

  addSubscription(id: string, input: { plan_id: string; add_on: boolean; past_due?: boolean }, now: number): PlanChange[] {
    const customer = this.get(id);
    const sub: Subscription = { id: randomId("sub_"), plan_id: input.plan_id, add_on: input.add_on, past_due: input.past_due ?? false, started_at: now, current_period_start: now, current_period_end: now + MONTH };
    customer.subscriptions.push(sub);
    return [planChange("activated", sub, null, now)];
  }

  invoiceView(invoice: Invoice) {
    return { ...invoice, entity_id: null, processor_type: "stripe", refunded_amount: 0 };
  }

  /** `customers.get`: every field 2.3 marks required; `invoices` only when expanded (10 newest). */
  customerView(customer: Customer, withInvoices: boolean) {
    const view = {
      id: customer.id,
      name: customer.name,
      email: customer.email,
      created_at: customer.created_at,
      fingerprint: null,
      stripe_id: customer.stripe_id,
      env: "sandbox",
      metadata: {},
      send_email_receipts: false,
      billing_controls: { auto_topups: [] },
      subscriptions: customer.subscriptions.map((sub) => ({
        id: sub.id,
        plan_id: sub.plan_id,
        auto_enable: false,
        add_on: sub.add_on,
        status: "active",
        past_due: sub.past_due,
        canceled_at: null,
        expires_at: null,
        trial_ends_at: null,
        started_at: sub.started_at,
        current_period_start: sub.current_period_start,
        current_period_end: sub.current_period_end,
        quantity: 1,
        scope: "customer",
      })),
      purchases: [],
      licenses: [],
      balances: {},
      flags: {},
    };
    if (!withInvoices) return view;
    const invoices = [...customer.invoices].sort((a, b) => b.created_at - a.created_at).slice(0, 10);
    return {
      ...view,
      invoices: invoices.map((i) => ({ plan_ids: i.plan_ids, stripe_id: i.stripe_id, processor_type: "stripe", status: i.status, total: i.total, currency: i.currency, created_at: i.created_at, hosted_invoice_url: i.hosted_invoice_url })),
    };
  }

  /** `invoices.list`: newest first, filtered, with an opaque offset cursor. */
  listInvoices(filter: { customer_id?: string; status?: string[]; limit: number; start_cursor: string }) {
    const all = [...this.customers.values()]
      .flatMap((c) => c.invoices)
      .filter((i) => (filter.customer_id === undefined || i.customer_id === filter.customer_id) && (filter.status === undefined || filter.status.includes(i.status)))
      .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
    return page(all, filter).map((items, next) => ({ list: items.map((i) => this.invoiceView(i)), next_cursor: next }));
  }

  listCustomers(filter: { limit: number; start_cursor: string }) {
    const all = [...this.customers.values()].sort((a, b) => b.created_at - a.created_at);
    return page(all, filter).map((items, next) => ({ list: items.map((c) => this.customerView(c, false)), next_cursor: next }));
  }
}

function page<T>(items: T[], filter: { limit: number; start_cursor: string }) {
  let offset = 0;
  if (filter.start_cursor !== "") {
    offset = Number(Buffer.from(filter.start_cursor, "base64url").toString());
    if (!Number.isInteger(offset) || offset < 0) throw new StandInError(400, "invalid_request", "start_cursor is not a cursor this server issued");
  }
  const slice = items.slice(offset, offset + filter.limit);
  const next = offset + filter.limit < items.length ? Buffer.from(String(offset + filter.limit)).toString("base64url") : null;
  return { map: <R>(f: (items: T[], next: string | null) => R): R => f(slice, next) };
}
