import { createExecutionContext, createMessageBatch, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { fakeUrl } from "../support/fake-urls.ts";
import billingWorker from "../../src/billing/worker.ts";
import type { OrgView } from "../../src/billing/org/view.ts";
import { cleanupParked, handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { handleUsage } from "../../src/ingest/usage/consumer.ts";
import ingestWorker from "../../src/ingest/worker.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";

/**
 * The whole org in one workerd, driven step by step: the billing Worker's fetch (webhooks, admin API),
 * the ingest Worker's fetch, its queue consumers' code and its cron, and every Durable Object's alarm.
 * Queues are recorded, not consumed by the runtime, so the model decides when (and how often) each
 * message is handled: a redelivery is the same message id handed over again.
 */

export type Queued<T> = { id: string; body: T };

/** A producer binding that records what it is sent (the model consumes it with the Worker's own queue code). */
export class RecordingQueue<T> {
  readonly messages: Queued<T>[] = [];
  private next = 0;
  private readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
  }
  async send(body: T): Promise<void> {
    this.messages.push({ id: `${this.prefix}-${this.next++}`, body });
  }
  async sendBatch(messages: Iterable<{ body: T }>): Promise<void> {
    for (const message of messages) await this.send(message.body);
  }
  take(): Queued<T>[] {
    return this.messages.splice(0, this.messages.length);
  }
}

export const usageQueue = new RecordingQueue<unknown>("usage");
export const deliveryQueue = new RecordingQueue<{ org_id: string }>("delivery");

/**
 * The ingest Worker's env for one request: a fresh USAGE producer per request gives it a fresh
 * batcher (whose first flush runs at once, no 1 s window), its messages collected into `usageQueue`.
 */
function ingestEnv(isolate?: object): IngestEnv {
  const perRequest = isolate ?? {
    send: (body: unknown) => usageQueue.send(body),
    sendBatch: (messages: Iterable<{ body: unknown }>) => usageQueue.sendBatch(messages),
  };
  return { ...env, USAGE: perRequest, DELIVERIES: deliveryQueue } as unknown as IngestEnv;
}

/** An isolate's USAGE producer: requests given the same one share its batcher (one message a second). */
export function isolateQueue(): object {
  return { send: (body: unknown) => usageQueue.send(body), sendBatch: (messages: Iterable<{ body: unknown }>) => usageQueue.sendBatch(messages) };
}

export async function ingest(path: string, key: string, body: string, contentType = "application/json", isolate?: object): Promise<{ status: number; text: string }> {
  const ctx = createExecutionContext();
  const request = new Request(`http://ingest.test${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": contentType },
    body,
  }) as Request<unknown, IncomingRequestCfProperties>;
  const response = await ingestWorker.fetch(request, ingestEnv(isolate), ctx);
  const text = await response.text();
  // The usage flush is immediate (a fresh batcher); what may still wait is a parked batch's trailing
  // report to the object, a real 10 s timer: the model does not hold the step for it (it lands later, as in production).
  await Promise.race([waitOnExecutionContext(ctx), new Promise((resolve) => setTimeout(resolve, 300))]);
  return { status: response.status, text };
}

export async function billing(path: string, init: RequestInit & { admin?: boolean } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.admin !== false) headers.set("authorization", `Bearer ${TEST_ADMIN_TOKEN}`);
  if (init.body !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json");
  const ctx = createExecutionContext();
  const request = new Request(`http://billing.test${path}`, { ...init, headers }) as Request<unknown, IncomingRequestCfProperties>;
  const response = await billingWorker.fetch(request, env as unknown as BillingEnv, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

export function deliverWebhook(webhook: { headers: Record<string, string>; body: string }): Promise<Response> {
  return billing("/api/billing/autumn/webhook", { method: "POST", headers: webhook.headers, body: webhook.body, admin: false });
}

export async function view(orgId: string): Promise<OrgView> {
  const response = await billing(`/admin/orgs/${orgId}`);
  if (!response.ok) throw new Error(`GET /admin/orgs/${orgId} answered ${response.status}`);
  return (await response.json()) as OrgView;
}

export const orgStub = (orgId: string) => env.ORG_BILLING.getByName(orgId);
export const sweeper = () => env.RECONCILER.getByName("sweeper");

export function alarmOf(stub: DurableObjectStub): Promise<number | null> {
  return runInDurableObject(stub, (_instance, state) => state.storage.getAlarm());
}

/**
 * Every usage message recorded so far, through the consumer's code; `redeliver` hands the first usage message and the
 * first activity message over a second time (each flush sends its activity message first: redelivering only the first
 * message would never redeliver usage, and the Autumn totals would not test the ledger's dedupe).
 */
export async function drainUsage(redeliver = false): Promise<void> {
  const messages = usageQueue.take();
  if (messages.length === 0) return;
  const batch = createMessageBatch("tollgate-usage", messages.map((m) => ({ id: m.id, timestamp: new Date(), attempts: 1, body: m.body })));
  await handleUsage(batch, ingestEnv());
  if (redeliver) {
    const isActivity = (m: { body: unknown }) => typeof m.body === "object" && m.body !== null && "kind" in m.body;
    const firsts = [messages.find((m) => !isActivity(m)), messages.find(isActivity)].filter((m) => m !== undefined);
    const again = createMessageBatch("tollgate-usage", firsts.map((m) => ({ id: m.id, timestamp: new Date(), attempts: 2, body: m.body })));
    await handleUsage(again, ingestEnv());
  }
}

/** The cron's cleanup (queues every org with batches waiting), then the delivery runs for what is queued. */
export async function cronAndDeliver(now: number): Promise<void> {
  await cleanupParked(ingestEnv() as never, now);
  for (let round = 0; round < 5; round++) {
    const messages = deliveryQueue.take();
    if (messages.length === 0) return;
    const batch = createMessageBatch("tollgate-deliveries", messages.map((m) => ({ id: m.id, timestamp: new Date(), attempts: 1, body: m.body })));
    await handleDeliveries(batch, ingestEnv() as never);
  }
}

/** Runs the sweep the Cron Trigger would start, page by page, to its end (or `limit` alarm runs). */
export async function sweep(limit = 30): Promise<void> {
  await sweeper().start("cron");
  for (let i = 0; i < limit; i++) {
    const status = await sweeper().status();
    if (status?.status !== "running") return;
    await runDurableObjectAlarm(sweeper());
  }
}

async function sinkControl<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${fakeUrl("sinkUrl")}/_control${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!response.ok) throw new Error(`sink ${method} ${path} answered ${response.status}`);
  return (await response.json()) as T;
}

export const upstream = {
  down: () => sinkControl("POST", "/outage", { seconds: 3600 }),
  up: () => sinkControl("DELETE", "/outage"),
  /**
   * What the sink accepted (2xx) for the tenant: SHA-256 of every body with how many times, and the
   * bodies sent to /v1/logs as text (Logpush batches arrive converted to OTLP logs, found by their records' tags).
   */
  received: async (tenant: string): Promise<{ bySha: Map<string, number>; logs: string[] }> => {
    const { requests } = await sinkControl<{ requests: { path: string; sha256: string; body_base64: string; status?: number | null; fault?: string | null }[] }>(
      "GET",
      `/requests?tenant=${encodeURIComponent(tenant)}`,
    );
    const bySha = new Map<string, number>();
    const logs: string[] = [];
    for (const r of requests) {
      if ((r.status ?? 200) !== 200 || r.fault) continue;
      bySha.set(r.sha256, (bySha.get(r.sha256) ?? 0) + 1);
      if (r.path === "/v1/logs") logs.push(new TextDecoder().decode(Uint8Array.from(atob(r.body_base64), (c) => c.charCodeAt(0))));
    }
    return { bySha, logs };
  },
};

export async function sha256Hex(text: string): Promise<string> {
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A Logpush http_requests batch (NDJSON) of `records` records, each with a RayID `${tag}-${i}`. */
export function logpushBody(tag: string, records: number): string {
  return Array.from({ length: records }, (_, i) =>
    JSON.stringify({ EdgeStartTimestamp: 1741964966 + i, ClientRequestHost: "shop.example.com", ClientRequestURI: "/model", EdgeResponseStatus: 200, RayID: `${tag}-${i}` }),
  ).join("\n");
}

/** An OTLP/JSON traces body with `spans` spans, unique by `tag`. */
export function tracesBody(tag: string, spans: number): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: "service.name", value: { stringValue: tag } }] },
        scopeSpans: [
          {
            scope: { name: "model" },
            spans: Array.from({ length: spans }, (_, i) => ({
              traceId: "5b8efff798038103d269b633813fc60c",
              spanId: (i + 1).toString(16).padStart(16, "0"),
              name: `${tag}-${i}`,
              kind: 2,
              startTimeUnixNano: "1544712660000000000",
              endTimeUnixNano: "1544712661000000000",
            })),
          },
        ],
      },
    ],
  });
}
