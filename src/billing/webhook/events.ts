import { z } from "zod";

/** Autumn's envelope: `{"type", "data"}`. Unknown event types are acknowledged and ignored. */
export const WebhookEnvelope = z.object({ type: z.string().min(1), data: z.unknown() });

/** `billing.updated` (API 2.3): the customer is `data.customer_id`. */
export const BillingUpdatedData = z.object({ customer_id: z.string().min(1) });

/** `invoice.finalized`: the customer is `data.customer_id`, which Autumn may send as null (nothing to route). */
export const InvoiceFinalizedData = z.object({ customer_id: z.string().min(1).nullable() });

/**
 * `balances.limit_reached` and `balances.usage_alert_triggered`: the customer is `data.customer_id`.
 * Only the customer is taken: the org's object reads the balances fresh (a webhook is a hint, never the evidence).
 */
export const BalancesEventData = z.object({ customer_id: z.string().min(1) });
const BALANCES_EVENTS = new Set(["balances.limit_reached", "balances.usage_alert_triggered"]);

/** Legacy `customer.products.updated`: the customer is `data.customer.id`. */
export const CustomerProductsUpdatedData = z.object({ customer: z.object({ id: z.string().min(1) }) });

/** The customer a routed event is about, or why it could not be found. */
export function customerOf(type: string, data: unknown): { routed: true; customerId: string } | { routed: true; error: string } | { routed: false } {
  if (type === "billing.updated") {
    const parsed = BillingUpdatedData.safeParse(data);
    return parsed.success ? { routed: true, customerId: parsed.data.customer_id } : { routed: true, error: "billing.updated needs data.customer_id" };
  }
  if (type === "invoice.finalized") {
    const parsed = InvoiceFinalizedData.safeParse(data);
    if (!parsed.success) return { routed: true, error: "invoice.finalized needs data.customer_id (a string or null)" };
    return parsed.data.customer_id === null ? { routed: false } : { routed: true, customerId: parsed.data.customer_id };
  }
  if (BALANCES_EVENTS.has(type)) {
    const parsed = BalancesEventData.safeParse(data);
    return parsed.success ? { routed: true, customerId: parsed.data.customer_id } : { routed: true, error: `${type} needs data.customer_id` };
  }
  if (type === "customer.products.updated") {
    const parsed = CustomerProductsUpdatedData.safeParse(data);
    return parsed.success ? { routed: true, customerId: parsed.data.customer.id } : { routed: true, error: "customer.products.updated needs data.customer.id" };
  }
  return { routed: false };
}
