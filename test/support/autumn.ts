import { inject } from "vitest";

/** The control API of the Autumn stand-in (tools/autumn-standin), which runs in Node on loopback. */
export type StandInWebhook = { id: string; url: string | null; headers: Record<string, string>; body: string };
export type ControlResult = { customer: unknown; webhook: StandInWebhook };
export type Fault = {
  mode: "http_500" | "http_429" | "http_503" | "invalid_json" | "slow" | "http_404_unknown_code";
  count?: number;
  retry_after?: number;
  delay_ms?: number;
  paths?: string[];
  customer_id?: string;
};

async function control<T = ControlResult>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${inject("autumnUrl")}/_control${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!response.ok) throw new Error(`stand-in ${method} ${path} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

export const autumn = {
  createCustomer: (id: string) => control("POST", "/customers", { id }),
  pastDue: (id: string, at?: number) => control("POST", `/customers/${id}/past-due`, { at }),
  pay: (id: string, at?: number) => control("POST", `/customers/${id}/pay`, { at }),
  addInvoice: (id: string, invoice: { status: string; total: number; created_at?: number }) => control("POST", `/customers/${id}/invoices`, invoice),
  trialInvoice: (id: string, at?: number) => control("POST", `/customers/${id}/trial-invoice`, { at }),
  expire: (id: string, at?: number) => control("POST", `/customers/${id}/expire`, { at }),
  voidInvoices: (id: string, at?: number) => control("POST", `/customers/${id}/void-invoices`, { at }),
  addSubscription: (id: string, sub: { plan_id: string; add_on: boolean; past_due?: boolean }) => control("POST", `/customers/${id}/subscriptions`, sub),
  fault: (fault: Fault) => control<unknown>("POST", "/faults", fault),
  clearFaults: () => control<unknown>("DELETE", "/faults"),
  calls: async (customerId?: string) => {
    const { calls } = await control<{ calls: { path: string; body: { customer_id?: string }; status: number }[] }>("GET", "/calls");
    return customerId === undefined ? calls : calls.filter((call) => call.body?.customer_id === customerId);
  },
};
