import { fakeUrl } from "./fake-urls.ts";
import { Webhook } from "standardwebhooks";
import type { NotifyEvent } from "../../src/billing/org/record.ts";
import { TEST_NOTIFY_SECRET } from "./secrets.ts";

/** The outbound-event receiver (tools/notify-receiver) on loopback. */
type Received = { headers: Record<string, string>; body: string; status: number };

async function control<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${fakeUrl("receiverUrl")}/_control${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return (await response.json()) as T;
}

export const receiver = {
  /** Every attempt for the org, refused ones included. */
  attempts: async (orgId: string) => (await control<{ received: Received[] }>("GET", `/received?org_id=${encodeURIComponent(orgId)}`)).received,
  /** The events the org's receiver accepted, verified with an independent Standard Webhooks implementation. */
  events: async (orgId: string): Promise<NotifyEvent[]> => {
    const accepted = (await receiver.attempts(orgId)).filter((r) => r.status === 200);
    const signer = new Webhook(TEST_NOTIFY_SECRET);
    return accepted.map((r) => {
      // Re-signed at the delivery's own timestamp (tests move the clock, so no tolerance check here).
      const id = r.headers["webhook-id"]!;
      const sentAt = new Date(Number(r.headers["webhook-timestamp"]) * 1000);
      if (r.headers["webhook-signature"] !== signer.sign(id, sentAt, r.body)) throw new Error(`event ${id} is not signed with NOTIFY_SECRET`);
      const event = JSON.parse(r.body) as NotifyEvent;
      if (event.id !== id) throw new Error(`webhook-id ${id} differs from the event id ${event.id}`);
      return event;
    });
  },
  down: (orgId: string) => control("POST", "/down", { org_id: orgId }),
  up: (orgId: string) => control("DELETE", "/down", { org_id: orgId }),
};
