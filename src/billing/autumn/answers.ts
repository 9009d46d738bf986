import { z } from "zod";
import { httpsUrl } from "../../shared/https-url.ts";
import { logWarn } from "../../shared/log.ts";
import type { Signal, UsageFeatures } from "../../shared/usage.ts";

// What Autumn says, and nothing that asks it (client.ts does): the schema of every answer, and the
// pure reading of them the policy decides from (past due, paid, the pay link, the balances).

/**
 * Autumn API 2.3.0 response shapes (see shared/reference/autumn-openapi-2.3-excerpt.yml),
 * reduced to the fields the policy reads. Unknown fields are accepted and dropped, so
 * additive API changes do not break the sync; a missing or mistyped field we depend on
 * makes the whole response unreadable, which never causes a transition.
 *
 * Values of the right type but out of range are different: they would read fine and then throw
 * later (a `next_reset_at` of 1e16 made every commit of the org throw in `toISOString`, so the org
 * could never be decided again), and Autumn would send the same value on every read. So every
 * time read from Autumn must lie in AUTUMN_TIME_MIN..AUTUMN_TIME_MAX (else it is absent: null),
 * every number must be finite (else the item holding it is skipped: a balance, an invoice), and
 * each such value is reported as `autumn_value_out_of_range` (see `parseAutumn`).
 */

/**
 * Times Tollgate accepts from Autumn, epoch ms: well inside what `new Date(x).toISOString()`
 * formats (±8.64e15) and plausible for a billing record (2000-01-01 to 2200-01-01).
 */
export const AUTUMN_TIME_MIN = Date.UTC(2000, 0, 1);
export const AUTUMN_TIME_MAX = Date.UTC(2200, 0, 1);

export function isAutumnTime(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= AUTUMN_TIME_MIN && value <= AUTUMN_TIME_MAX;
}

/** One value out of range: the field and the value as text, cut short (a log line stays small). */
export type OutOfRange = { field: string; value: string };
const MAX_VALUE_CHARS = 40;
/** How many values one log line names; the rest are only counted. */
const MAX_LOGGED_VALUES = 5;

/** Where `parseAutumn` collects what the schemas report; parsing is synchronous, so one slot is enough. */
let collecting: OutOfRange[] | null = null;
/** Every report ever made in this isolate: lets a lenient list tell an out-of-range item from a malformed one. */
let reports = 0;

function report(field: string, value: unknown): void {
  reports += 1;
  const entry = { field, value: String(value).slice(0, MAX_VALUE_CHARS) };
  if (collecting !== null) collecting.push(entry);
  else logWarn({ event: "autumn_value_out_of_range", count: 1, values: [entry] });
}

/** A time from Autumn: in range, or null (absent) with a report. `null` itself is a legitimate "never". */
const autumnTime = (field: string) =>
  z.unknown().transform((value, ctx): number | null => {
    if (value === null || isAutumnTime(value)) return value;
    if (typeof value === "number") {
      report(field, value);
      return null;
    }
    ctx.addIssue({ code: "custom", message: "expected a number or null", input: value });
    return z.NEVER;
  });

/**
 * An amount from Autumn: a finite number. zod already refuses Infinity (what JSON's 1e400 parses
 * to); this also reports it, so the item holding it is skipped and logged rather than silently unread.
 */
const autumnNumber = (field: string) =>
  z.unknown().transform((value, ctx) => {
    if (typeof value === "number" && Number.isFinite(value)) return value;
    if (typeof value === "number") report(field, value);
    ctx.addIssue({ code: "custom", message: typeof value === "number" ? "not a finite number" : "expected a number", input: value });
    return z.NEVER;
  });

/**
 * Parses an Autumn answer, then logs what was out of range in it as one bounded line
 * (`autumn_value_out_of_range`: path, org, how many, the first few). Nested parses (the lenient
 * lists and balances below) report into the same line.
 */
export function parseAutumn<S extends z.ZodType>(schema: S, value: unknown, context: { path: string; org_id?: string | null }): z.ZodSafeParseResult<z.output<S>> {
  const outer = collecting;
  const found: OutOfRange[] = [];
  collecting = found;
  try {
    return schema.safeParse(value) as z.ZodSafeParseResult<z.output<S>>;
  } finally {
    collecting = outer;
    if (found.length > 0) {
      if (outer !== null) outer.push(...found);
      else
        logWarn({
          event: "autumn_value_out_of_range",
          path: context.path,
          org_id: context.org_id ?? null,
          count: found.length,
          fields: [...new Set(found.map((entry) => entry.field))].slice(0, MAX_LOGGED_VALUES),
          values: found.slice(0, MAX_LOGGED_VALUES),
        });
    }
  }
}

/**
 * Each item parsed on its own: an item refused because one of its numbers was out of range is
 * skipped (already reported); any other malformed item makes the whole list unreadable, as before.
 */
function skippingOutOfRange<T extends z.ZodType>(item: T, field: string) {
  return z.array(z.unknown()).transform((items, ctx) => {
    const out: z.infer<T>[] = [];
    items.forEach((raw, index) => {
      const before = reports;
      const parsed = item.safeParse(raw);
      if (parsed.success) out.push(parsed.data);
      else if (reports === before) {
        const issue = parsed.error.issues[0];
        ctx.addIssue({ code: "custom", message: issue?.message ?? "invalid", path: [index, ...(issue?.path ?? [])], input: raw });
      } else report(`${field}[${index}]`, "skipped");
    });
    return out;
  });
}
export const AutumnSubscription = z.object({
  id: z.string(),
  plan_id: z.string(),
  add_on: z.boolean(),
  status: z.string(),
  past_due: z.boolean(),
});
export type AutumnSubscription = z.infer<typeof AutumnSubscription>;

export const AutumnInvoice = z.object({
  stripe_id: z.string(),
  plan_ids: z.array(z.string()).default([]),
  // Normally draft | open | void | paid | uncollectible, but Autumn may send an empty string.
  status: z.string(),
  // Major currency units (29.99), not cents.
  total: autumnNumber("invoice.total"),
  currency: z.string(),
  // Null when Autumn's value is out of range: such an invoice can still prove payment, never start the clock.
  created_at: autumnTime("invoice.created_at"),
  hosted_invoice_url: z.string().nullish(),
});
export type AutumnInvoice = z.infer<typeof AutumnInvoice>;

/**
 * One feature's balance (2.3 `Balance`), reduced to what plan limits read. Checked one by one
 * (`balancesOf`), so a malformed balance of some feature Tollgate does not meter cannot make the
 * customer, and with it the billing state, unreadable.
 */
export const AutumnBalance = z.object({
  feature_id: z.string(),
  granted: autumnNumber("balance.granted"),
  remaining: autumnNumber("balance.remaining"),
  usage: autumnNumber("balance.usage"),
  unlimited: z.boolean(),
  overage_allowed: z.boolean(),
  next_reset_at: autumnTime("balance.next_reset_at"),
});
export type AutumnBalance = z.infer<typeof AutumnBalance>;

export const AutumnCustomer = z.object({
  id: z.string().nullable(),
  subscriptions: z.array(AutumnSubscription),
  // Present only with `expand: ["invoices"]`: the 10 most recent, newest first.
  invoices: skippingOutOfRange(AutumnInvoice, "invoices").optional(),
  // Required in 2.3. Read leniently (see AutumnBalance), here rather than where they are used, so out-of-range values are logged with the answer.
  balances: z
    .record(z.string(), z.unknown())
    .transform((raw) => balancesOf(raw))
    .optional(),
});
export type AutumnCustomer = z.infer<typeof AutumnCustomer>;

/**
 * `customers.list`: full customer objects (subscriptions included, invoices not), cursor-paginated.
 * Items are checked one by one by the reader (`AutumnCustomer`), so one malformed customer cannot
 * make the whole page, and every page after it, unreadable.
 */
export const AutumnCustomerPage = z.object({
  // Each readable customer parsed here (so out-of-range values are logged with the page), the rest kept raw for the reader's report.
  list: z.array(z.unknown().transform((raw) => {
    const parsed = AutumnCustomer.safeParse(raw);
    return parsed.success ? parsed.data : raw;
  })),
  next_cursor: z.string().nullable(),
});
export type AutumnCustomerPage = z.infer<typeof AutumnCustomerPage>;

export const AutumnInvoicePage = z.object({
  list: skippingOutOfRange(AutumnInvoice, "list"),
  next_cursor: z.string().nullable(),
});
export type AutumnInvoicePage = z.infer<typeof AutumnInvoicePage>;

/** `balances.track` (TrackResponseV3): `balance` is null when the customer has no balance for the feature. */
export const AutumnTrackResponse = z.object({
  customer_id: z.string(),
  value: z.number(),
  // Null too when it does not read as a Balance (parsed here so out-of-range values are logged with the answer): the
  // reporter takes null as saying nothing either way (usage/reporter.ts), never as room.
  balance: z.unknown().transform((raw) => {
    const parsed = AutumnBalance.safeParse(raw);
    return parsed.success ? parsed.data : null;
  }),
});
export type AutumnTrackResponse = z.infer<typeof AutumnTrackResponse>;

/** The balances that parse, by feature id; the rest are left out. */
export function balancesOf(raw: Record<string, unknown>): Record<string, AutumnBalance> {
  const out: Record<string, AutumnBalance> = {};
  for (const [featureId, value] of Object.entries(raw)) {
    const parsed = AutumnBalance.safeParse(value);
    if (parsed.success) out[featureId] = parsed.data;
  }
  return out;
}

export const AutumnErrorBody = z.object({
  message: z.string().optional(),
  code: z.string().optional(),
});

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

/** The metered features (USAGE_FEATURES values), each with the signals reported under it. */
export function meteredFeatures(features: UsageFeatures): Map<string, Signal[]> {
  const out = new Map<string, Signal[]>();
  for (const [signal, feature] of Object.entries(features) as [Signal, string][]) out.set(feature, [...(out.get(feature) ?? []), signal]);
  return out;
}

/**
 * Whether a balance is used up. Allowances are read, never assumed: an unlimited balance or one
 * that allows overage is never used up, and a feature with no balance at all is not limited
 * (Autumn has said nothing about it).
 */
export function exhausted(balance: AutumnBalance | undefined | null): boolean {
  return balance != null && !balance.unlimited && !balance.overage_allowed && balance.remaining <= 0;
}

/** The balances worth keeping as evidence: the metered features' only. */
export function meteredBalances(balances: Record<string, AutumnBalance>, features: UsageFeatures): Record<string, AutumnBalance> {
  const out: Record<string, AutumnBalance> = {};
  for (const featureId of meteredFeatures(features).keys()) if (balances[featureId]) out[featureId] = balances[featureId];
  return out;
}
