import { z } from "zod";

/**
 * Autumn API 2.3.0 response shapes (see shared/reference/autumn-openapi-2.3-excerpt.yml),
 * reduced to the fields the policy reads. Unknown fields are accepted and dropped, so
 * additive API changes do not break the sync; a missing or mistyped field we depend on
 * makes the whole response unreadable, which never causes a transition.
 */
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
  total: z.number(),
  currency: z.string(),
  created_at: z.number(),
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
  granted: z.number(),
  remaining: z.number(),
  usage: z.number(),
  unlimited: z.boolean(),
  overage_allowed: z.boolean(),
  next_reset_at: z.number().nullable(),
});
export type AutumnBalance = z.infer<typeof AutumnBalance>;

export const AutumnCustomer = z.object({
  id: z.string().nullable(),
  subscriptions: z.array(AutumnSubscription),
  // Present only with `expand: ["invoices"]`: the 10 most recent, newest first.
  invoices: z.array(AutumnInvoice).optional(),
  // Required in 2.3; read leniently (see AutumnBalance).
  balances: z.record(z.string(), z.unknown()).optional(),
});
export type AutumnCustomer = z.infer<typeof AutumnCustomer>;

/**
 * `customers.list`: full customer objects (subscriptions included, invoices not), cursor-paginated.
 * Items are checked one by one by the reader (`AutumnCustomer`), so one malformed customer cannot
 * make the whole page, and every page after it, unreadable.
 */
export const AutumnCustomerPage = z.object({
  list: z.array(z.unknown()),
  next_cursor: z.string().nullable(),
});
export type AutumnCustomerPage = z.infer<typeof AutumnCustomerPage>;

export const AutumnInvoicePage = z.object({
  list: z.array(AutumnInvoice),
  next_cursor: z.string().nullable(),
});
export type AutumnInvoicePage = z.infer<typeof AutumnInvoicePage>;

/** `balances.track` (TrackResponseV3): `balance` is null when the customer has no balance for the feature. */
export const AutumnTrackResponse = z.object({
  customer_id: z.string(),
  value: z.number(),
  balance: z.unknown().nullable(),
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
