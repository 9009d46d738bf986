import { z } from "zod";
import { httpsUrl } from "../../shared/https-url.ts";
import type { AutumnResult, AutumnClient } from "./client.ts";
import { AutumnBalance, balancesOf, isAutumnTime, type AutumnCustomer, type AutumnInvoice } from "./schemas.ts";

const InvoiceRef = z.object({
  stripe_id: z.string(),
  total: z.number(),
  currency: z.string(),
  // Null when Autumn's value was out of range; a record kept from before that check reads the same way.
  created_at: z
    .number()
    .nullable()
    .transform((at) => (isAutumnTime(at) ? at : null)),
  hosted_invoice_url: z.string().nullish(),
});

/** What Autumn showed at the last successful sync: kept with the state so anyone can see why. */
export const Evidence = z.object({
  customer_found: z.boolean(),
  past_due_subscriptions: z.array(z.object({ id: z.string(), plan_id: z.string() })),
  /** The open invoices of the past-due base plans, the only ones that can start the overdue clock. */
  open_invoices: z.array(InvoiceRef),
  /** The invoice proving the org has paid money before, if one was found. */
  paid_invoice: InvoiceRef.nullable(),
  /** Where the customer pays: the hosted page of the oldest open invoice of a past-due base plan, https only. */
  pay_url: z.string().nullable().default(null),
  /** Where "has paid" was decided: the 10 recent invoices, the full paid list, or not needed (not past due). */
  paid_checked: z.enum(["recent_invoices", "invoices_list", "not_needed"]),
  recent_invoice_count: z.number().int(),
  /** The balances of the metered features (USAGE_FEATURES), as read: what plan limits were decided from. */
  balances: z.record(z.string(), AutumnBalance).default({}),
});
export type Evidence = z.infer<typeof Evidence>;

export type BillingFacts = {
  pastDue: boolean;
  hasPaid: boolean;
  /** The oldest open invoice of a past-due base plan: an add-on's or another plan's invoice never counts. */
  oldestOpenInvoiceAt: number | null;
  /** Every readable feature balance of the customer (plan limits pick the metered ones). */
  balances: Record<string, AutumnBalance>;
  evidence: Evidence;
};

/** Stripe marks $0 trial invoices paid: only an invoice with money proves the org ever paid. */
export function isPaidWithMoney(invoice: Pick<AutumnInvoice, "status" | "total">): boolean {
  return invoice.status === "paid" && invoice.total > 0;
}

function invoiceRef(invoice: AutumnInvoice): z.infer<typeof InvoiceRef> {
  return {
    stripe_id: invoice.stripe_id,
    total: invoice.total,
    currency: invoice.currency,
    created_at: invoice.created_at,
    hosted_invoice_url: invoice.hosted_invoice_url ?? null,
  };
}

/**
 * Facts from `customers.get` alone. `paidLookup` is what `invoices.list` found when the
 * recent invoices showed no paid invoice with money (undefined when it was not needed).
 */
export function factsFromCustomer(customer: AutumnCustomer | null, paidLookup?: AutumnInvoice | null): BillingFacts {
  if (customer === null) {
    return {
      pastDue: false,
      hasPaid: false,
      oldestOpenInvoiceAt: null,
      balances: {},
      evidence: { customer_found: false, past_due_subscriptions: [], open_invoices: [], pay_url: null, paid_invoice: null, paid_checked: "not_needed", recent_invoice_count: 0, balances: {} },
    };
  }
  const pastDueSubscriptions = customer.subscriptions.filter((s) => !s.add_on && s.past_due);
  const recent = customer.invoices ?? [];
  // Only the past-due base plans' invoices can start the overdue clock (matched by plan id).
  const pastDuePlans = new Set(pastDueSubscriptions.map((s) => s.plan_id));
  const open = recent.filter((invoice) => invoice.status === "open" && invoice.plan_ids.some((plan) => pastDuePlans.has(plan)));
  const paidRecent = recent.find(isPaidWithMoney) ?? null;
  const paid = paidRecent ?? paidLookup ?? null;
  const pastDue = pastDueSubscriptions.length > 0;
  return {
    pastDue,
    hasPaid: paid !== null,
    // An invoice whose time Autumn sent out of range cannot start the clock (the policy then counts from now).
    oldestOpenInvoiceAt: open.some((invoice) => invoice.created_at !== null) ? Math.min(...open.flatMap((invoice) => (invoice.created_at === null ? [] : [invoice.created_at]))) : null,
    balances: balancesOf(customer.balances ?? {}),
    evidence: {
      customer_found: true,
      past_due_subscriptions: pastDueSubscriptions.map((s) => ({ id: s.id, plan_id: s.plan_id })),
      open_invoices: open.map(invoiceRef),
      pay_url: payUrlOf(open),
      paid_invoice: paid === null ? null : invoiceRef(paid),
      paid_checked: !pastDue && paidLookup === undefined ? "not_needed" : paidRecent !== null ? "recent_invoices" : "invoices_list",
      recent_invoice_count: recent.length,
      balances: {},
    },
  };
}

/**
 * The hosted page of the oldest open invoice that has an https one: it is shown to customers in refusals
 * and events and linked from the console, so any other link (javascript:, http:) is passed over.
 */
export function payUrlOf(open: Pick<AutumnInvoice, "created_at" | "hosted_invoice_url">[]): string | null {
  const at = (invoice: Pick<AutumnInvoice, "created_at">) => invoice.created_at ?? Number.MAX_SAFE_INTEGER;
  const oldest = [...open].sort((a, b) => at(a) - at(b)).find((invoice) => httpsUrl(invoice.hosted_invoice_url));
  return oldest?.hosted_invoice_url ?? null;
}


/** Whether the 10 recent invoices already settle the question the policy asks. */
export function needsPaidLookup(customer: AutumnCustomer | null): boolean {
  if (customer === null) return false;
  const pastDue = customer.subscriptions.some((s) => !s.add_on && s.past_due);
  return pastDue && !(customer.invoices ?? []).some(isPaidWithMoney);
}

/** Enough pages for any real history of $0 trial invoices; more is treated as unreadable. */
const MAX_PAID_PAGES = 20;

/** One fresh read of Autumn: `customers.get`, then `invoices.list` (paid only) when needed. */
export async function readBillingFacts(client: AutumnClient, orgId: string): Promise<AutumnResult<BillingFacts>> {
  const customer = await client.getCustomer(orgId);
  if (!customer.ok) return customer;
  // A customer Autumn does not know is unknown, not paid: a deleted customer, a test key in production or a
  // wrong AUTUMN_API_URL must never restore an org. The object keeps its state and flags the org.
  if (customer.value === null) {
    return { ok: false, failure: { kind: "unknown_customer", status: 404, code: "customer_not_found", message: `Autumn has no customer ${orgId} (404 customer_not_found)` } };
  }
  if (!needsPaidLookup(customer.value)) return { ok: true, value: factsFromCustomer(customer.value) };

  let cursor = "";
  for (let page = 0; page < MAX_PAID_PAGES; page++) {
    const result = await client.listPaidInvoices(orgId, cursor);
    if (!result.ok) return result;
    const withMoney = result.value.list.find(isPaidWithMoney);
    if (withMoney) return { ok: true, value: factsFromCustomer(customer.value, withMoney) };
    if (!result.value.next_cursor) return { ok: true, value: factsFromCustomer(customer.value, null) };
    cursor = result.value.next_cursor;
  }
  return { ok: false, failure: { kind: "invalid_response", message: `invoices.list did not end within ${MAX_PAID_PAGES} pages` } };
}
