import { z } from "zod";
import { declaredLengthExceeds, readBounded, TooLargeError } from "../../shared/bounded-read.ts";
import { answer, refuse, type Result } from "../../shared/result.ts";
import { log, logError, logWarn } from "../../shared/log.ts";
import { isValidOrgId, ORG_ID_RULE } from "../../shared/storage-keys.ts";
import { ConfigError, webhookSecrets } from "../config.ts";
import { orgBilling } from "../org/object.ts";
import { importSigningSecret, verifySignature } from "../signature.ts";

export const MAX_WEBHOOK_BYTES = 256 * 1024;

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

/**
 * `POST /api/billing/autumn/webhook`: verify, parse, route to the org's object, and answer
 * 2xx only once the object has durably recorded the event and run its sync (org/object.ts says
 * what a 2xx means). Refusals change no state. The Worker's edge turns the result into a Response.
 */
export async function handleWebhook(request: Request, env: BillingEnv): Promise<Result> {
  let keys: CryptoKey[];
  try {
    keys = await Promise.all(webhookSecrets(env).map((secret) => importSigningSecret(secret)));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logError({ event: "webhook_rejected", code: "not_configured", variable: error.variable, message: error.message });
    return refuse(503, "not_configured", error.message);
  }

  const reject = (status: number, code: string, message: string, fields: Record<string, unknown> = {}) => {
    logWarn({ event: "webhook_rejected", status, code, message, ...fields });
    return refuse(status, code, message);
  };

  const tooLarge = `the webhook body exceeds ${MAX_WEBHOOK_BYTES} bytes`;
  if (declaredLengthExceeds(request.headers, MAX_WEBHOOK_BYTES)) return reject(413, "payload_too_large", tooLarge);
  let body: Uint8Array;
  try {
    body = await readBounded(request.body, MAX_WEBHOOK_BYTES);
  } catch (error) {
    if (error instanceof TooLargeError) return reject(413, "payload_too_large", tooLarge);
    throw error;
  }

  const verified = await verifySignature({ keys, headers: request.headers, body, nowMs: Date.now() });
  if (!verified.ok) return reject(401, verified.code, verified.message);

  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(body));
  } catch {
    return reject(400, "invalid_payload", "the body is not UTF-8 JSON", { message_id: verified.id });
  }
  const envelope = WebhookEnvelope.safeParse(json);
  if (!envelope.success) return reject(400, "invalid_payload", 'expected {"type": string, "data": ...}', { message_id: verified.id });

  const { type, data } = envelope.data;
  const customer = customerOf(type, data);
  if (!customer.routed) {
    log({ event: "webhook_ignored", message_id: verified.id, type });
    return answer({ status: "ignored", type });
  }
  if ("error" in customer) return reject(400, "invalid_payload", customer.error, { message_id: verified.id, type });
  if (!isValidOrgId(customer.customerId)) {
    return reject(400, "invalid_payload", `customer id is not a valid org id (${ORG_ID_RULE})`, { message_id: verified.id, type });
  }

  const orgId = customer.customerId;
  try {
    const result = await orgBilling(env, orgId).webhook({ id: verified.id, type });
    log({ event: "webhook", message_id: verified.id, type, org_id: orgId, duplicate: result.duplicate, state: result.state });
    return answer({ status: result.duplicate ? "duplicate" : "processed", org_id: orgId, state: result.state });
  } catch (error) {
    // Not recorded: a non-2xx makes Svix deliver it again.
    logError({ event: "webhook_failed", message_id: verified.id, type, org_id: orgId, error: String(error) });
    return refuse(503, "temporarily_unavailable", "the event could not be recorded; it will be retried", {}, { "retry-after": "5" });
  }
}
