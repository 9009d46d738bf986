import type { z } from "zod";
import { AutumnCustomer, AutumnCustomerPage, AutumnErrorBody, AutumnInvoicePage, AutumnTrackResponse, factsFromCustomer, isPaidWithMoney, needsPaidLookup, parseAutumn, type BillingFacts } from "./answers.ts";

/** Pinned: without it Autumn picks a version from the account's creation date. */
export const AUTUMN_API_VERSION = "2.3.0";

export type AutumnFailure = {
  /** `unknown_customer`: Autumn answered 404 customer_not_found. Not a sign of payment: the org keeps its state. */
  kind: "http" | "timeout" | "network" | "invalid_response" | "not_configured" | "unknown_customer";
  message: string;
  status?: number;
  code?: string;
  /** From `Retry-After` on 429/503: the earliest moment a retry is welcome. */
  retryAfterMs?: number;
};
export type AutumnResult<T> = { ok: true; value: T } | { ok: false; failure: AutumnFailure };

export type AutumnClientOptions = {
  baseUrl: string;
  secretKey: string;
  timeoutMs: number;
  now?: () => number;
};

export type AutumnClient = ReturnType<typeof createAutumnClient>;

/**
 * A thin, non-retrying Autumn client: every failure comes back classified so the caller
 * (the org's Durable Object) can keep its state and retry through its alarm.
 */
export function createAutumnClient(options: AutumnClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs;
  const now = options.now ?? Date.now;

  async function call<S extends z.ZodType>(
    path: string,
    body: unknown,
    schema: S,
    allowNotFound = false,
    headers: Record<string, string> = {},
  ): Promise<AutumnResult<z.infer<S> | null>> {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${options.secretKey}`,
          "content-type": "application/json",
          "x-api-version": AUTUMN_API_VERSION,
          ...headers,
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
      return {
        ok: false,
        failure: timedOut
          ? { kind: "timeout", message: `${path} did not answer within ${timeoutMs} ms` }
          : { kind: "network", message: `${path} unreachable: ${String(error)}` },
      };
    }

    let json: unknown;
    try {
      json = await response.json();
    } catch {
      if (response.ok) return { ok: false, failure: { kind: "invalid_response", status: response.status, message: `${path} answered invalid JSON` } };
      json = undefined;
    }

    if (!response.ok) {
      const parsed = AutumnErrorBody.safeParse(json);
      const code = parsed.success ? parsed.data.code : undefined;
      if (allowNotFound && response.status === 404 && code === "customer_not_found") return { ok: true, value: null };
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), now());
      return {
        ok: false,
        failure: {
          kind: "http",
          status: response.status,
          message: `${path} answered ${response.status}${code ? ` ${code}` : ""}`,
          ...(code === undefined ? {} : { code }),
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        },
      };
    }

    // Out-of-range values are made absent (or their item skipped) and logged against the org asked about.
    const customerId = (body as { customer_id?: unknown }).customer_id;
    const parsed = parseAutumn(schema, json, { path, org_id: typeof customerId === "string" ? customerId : null });
    if (!parsed.success) {
      return { ok: false, failure: { kind: "invalid_response", status: response.status, message: `${path} answered an unexpected shape: ${parsed.error.issues[0]?.path.join(".") ?? "?"} ${parsed.error.issues[0]?.message ?? ""}` } };
    }
    return { ok: true, value: parsed.data };
  }

  return {
    /** `null` means Autumn has no such customer (404 customer_not_found); the caller decides what that means (readBillingFacts below: unknown, not paid). */
    getCustomer(customerId: string): Promise<AutumnResult<AutumnCustomer | null>> {
      return call("/v1/customers.get", { customer_id: customerId, expand: ["invoices"] }, AutumnCustomer, true);
    },
    listPaidInvoices(customerId: string, cursor: string, limit = 100): Promise<AutumnResult<AutumnInvoicePage>> {
      return call("/v1/invoices.list", { customer_id: customerId, status: ["paid"], limit, start_cursor: cursor }, AutumnInvoicePage) as Promise<AutumnResult<AutumnInvoicePage>>;
    },
    /**
     * Records usage under `idempotencyKey` (the documented `Idempotency-Key` header). Autumn answers
     * 409 duplicate_idempotency_key to a key it already applied, so a retry after a timeout is never counted twice.
     */
    track(customerId: string, featureId: string, value: number, idempotencyKey: string): Promise<AutumnResult<AutumnTrackResponse>> {
      return call("/v1/balances.track", { customer_id: customerId, feature_id: featureId, value }, AutumnTrackResponse, false, { "idempotency-key": idempotencyKey }) as Promise<
        AutumnResult<AutumnTrackResponse>
      >;
    },
    /** One page of every customer, with their subscriptions; `cursor` is "" for the first page. */
    listCustomers(cursor: string, limit: number): Promise<AutumnResult<AutumnCustomerPage>> {
      return call("/v1/customers.list", { start_cursor: cursor, limit }, AutumnCustomerPage) as Promise<AutumnResult<AutumnCustomerPage>>;
    },
  };
}

/** `Retry-After` is either delta-seconds or an HTTP date; both become milliseconds from now. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
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
