import { z } from "zod";

/** Autumn's envelope: `{"type", "data"}`. Unknown event types are acknowledged and ignored. */
export const WebhookEnvelope = z.object({ type: z.string().min(1), data: z.unknown() });

/** `billing.updated` (API 2.3): the customer is `data.customer_id`. */
export const BillingUpdatedData = z.object({ customer_id: z.string().min(1) });

/** `invoice.finalized`: the customer is `data.customer_id`, which Autumn may send as null (nothing to route). */
export const InvoiceFinalizedData = z.object({ customer_id: z.string().min(1).nullable() });

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
  if (type === "customer.products.updated") {
    const parsed = CustomerProductsUpdatedData.safeParse(data);
    return parsed.success ? { routed: true, customerId: parsed.data.customer.id } : { routed: true, error: "customer.products.updated needs data.customer.id" };
  }
  return { routed: false };
}
