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

export const AutumnCustomer = z.object({
  id: z.string().nullable(),
  subscriptions: z.array(AutumnSubscription),
  // Present only with `expand: ["invoices"]`: the 10 most recent, newest first.
  invoices: z.array(AutumnInvoice).optional(),
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

export const AutumnErrorBody = z.object({
  message: z.string().optional(),
  code: z.string().optional(),
});
