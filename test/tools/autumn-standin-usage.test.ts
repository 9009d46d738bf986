import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { startAutumnStandIn, type AutumnStandIn } from "../../tools/autumn-standin/server.ts";
import { autumnControls, type StandInWebhook } from "../support/autumn.ts";

/**
 * The Autumn stand-in's usage side (autumn-usage-and-webhooks-2.3.md): balances in customers.get
 * and customers.list, balances.track and batch_track with Autumn's idempotency, the
 * balances.limit_reached webhook, the balance controls and the soak faults.
 */
const SECRET_KEY = "am_sk_test_standin_usage";
const WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DAY = 86_400_000;
/** Near the real time, so `Webhook.verify` (which checks the timestamp against Date.now) accepts it. */
const T0 = Math.floor(Date.now() / 1000) * 1000;
/** The 2.3 `Balance` schema's required fields (the stand-in sends no optional ones). */
const BALANCE_REQUIRED = ["feature_id", "granted", "remaining", "usage", "unlimited", "overage_allowed", "max_purchase", "next_reset_at"];

type Json = Record<string, any>;

let clock = T0;
let standIn: AutumnStandIn;
const autumn = autumnControls(() => standIn.url, SECRET_KEY);

beforeAll(async () => {
  standIn = await startAutumnStandIn({ secretKey: SECRET_KEY, webhook: { url: null, secret: WEBHOOK_SECRET }, now: () => clock });
});
afterAll(async () => {
  await standIn.close();
});
beforeEach(async () => {
  clock = T0;
  await fetch(`${standIn.url}/_control/reset`, { method: "POST" });
});

/** An Autumn API call as a correct client makes it; `headers` adds to (or, with null, removes) the defaults. */
async function api(path: string, body: unknown, headers: Record<string, string> = {}, base = standIn.url, signal?: AbortSignal) {
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${SECRET_KEY}`, "x-api-version": "2.3.0", "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  const text = await response.text();
  return { status: response.status, json: JSON.parse(text) as Json };
}
const track = (body: Json, headers: Record<string, string> = {}) => api("/v1/balances.track", body, headers);
const key = (value: string) => ({ "idempotency-key": value });
const getCustomer = async (id: string) => (await api("/v1/customers.get", { customer_id: id })).json;
const payload = (webhook: { body: string }) => JSON.parse(webhook.body) as { type: string; data: Json };

function verify(webhook: { headers: Record<string, string>; body: string }): unknown {
  const h = webhook.headers;
  return new Webhook(WEBHOOK_SECRET).verify(webhook.body, { "webhook-id": h["svix-id"] ?? "", "webhook-timestamp": h["svix-timestamp"] ?? "", "webhook-signature": h["svix-signature"] ?? "" });
}

function expectBalanceShape(balance: Json): void {
  expect(Object.keys(balance).sort()).toEqual([...BALANCE_REQUIRED].sort());
  expect(balance.remaining).toBeGreaterThanOrEqual(0);
}

describe("balances in customers.get and customers.list", () => {
  it("start empty; a tracked feature with no allowance is unlimited; an allowance is limited; every Balance field is there", async () => {
    await autumn.createCustomer("org_b");
    expect((await getCustomer("org_b")).balances).toEqual({});

    await track({ customer_id: "org_b", feature_id: "spans", value: 12 });
    await autumn.setAllowance("org_b", "logs", { granted: 100, usage: 40 });
    const { balances } = await getCustomer("org_b");
    expect(Object.keys(balances).sort()).toEqual(["logs", "spans"]);
    for (const balance of Object.values(balances)) expectBalanceShape(balance as Json);
    expect(balances.spans).toEqual({ feature_id: "spans", granted: 0, remaining: 0, usage: 12, unlimited: true, overage_allowed: false, max_purchase: null, next_reset_at: null });
    expect(balances.logs).toEqual({ feature_id: "logs", granted: 100, remaining: 60, usage: 40, unlimited: false, overage_allowed: false, max_purchase: null, next_reset_at: null });

    const listed = (await api("/v1/customers.list", { search: "org_b" })).json.list;
    expect(listed).toHaveLength(1);
    expect(listed[0].balances).toEqual(balances);
    expect(await autumn.balances("org_b")).toEqual(balances);
  });

  it("remaining never goes below 0, even when usage exceeds the allowance", async () => {
    await autumn.createCustomer("org_over");
    const { balance } = await autumn.setAllowance("org_over", "spans", { granted: 10, usage: 25 });
    expect(balance).toMatchObject({ granted: 10, usage: 25, remaining: 0 });
  });
});

describe("balances.track", () => {
  beforeEach(async () => {
    await autumn.createCustomer("org_t");
  });

  it("records usage and answers TrackResponseV3: customer_id, value, balance, balances; value defaults to 1; aliases /v1/track and /v1/events", async () => {
    const first = await track({ customer_id: "org_t", feature_id: "spans", value: 5, entity_id: "ws_1", properties: { signal: "traces" }, timestamp: T0 });
    expect(first.status).toBe(200);
    expect(Object.keys(first.json).sort()).toEqual(["balance", "balances", "customer_id", "entity_id", "value"]);
    expect(first.json).toMatchObject({ customer_id: "org_t", value: 5, entity_id: "ws_1", balance: { feature_id: "spans", usage: 5, unlimited: true } });
    expectBalanceShape(first.json.balance);
    expect(first.json.balances).toEqual({ spans: first.json.balance });

    expect((await api("/v1/track", { customer_id: "org_t", feature_id: "spans" })).json).toMatchObject({ value: 1, balance: { usage: 6 } });
    expect((await api("/v1/events", { customer_id: "org_t", feature_id: "spans", value: 4 })).json).toMatchObject({ value: 4, balance: { usage: 10 } });
    expect((await getCustomer("org_t")).balances.spans.usage).toBe(10);
  });

  it("cap (the default) records only what fits a limited balance; overflow records everything; an overage-allowed balance is never capped", async () => {
    await autumn.setAllowance("org_t", "spans", { granted: 10 });
    expect((await track({ customer_id: "org_t", feature_id: "spans", value: 7 })).json).toMatchObject({ value: 7, balance: { usage: 7, remaining: 3 } });
    expect((await track({ customer_id: "org_t", feature_id: "spans", value: 5 })).json).toMatchObject({ value: 3, balance: { usage: 10, remaining: 0 } });
    expect((await track({ customer_id: "org_t", feature_id: "spans", value: 1, overage_behavior: "cap" })).json).toMatchObject({ value: 0, balance: { usage: 10 } });
    expect((await track({ customer_id: "org_t", feature_id: "spans", value: 4, overage_behavior: "overflow" })).json).toMatchObject({ value: 4, balance: { usage: 14, remaining: 0 } });

    await autumn.setAllowance("org_t", "logs", { granted: 2, overage_allowed: true });
    expect((await track({ customer_id: "org_t", feature_id: "logs", value: 5 })).json).toMatchObject({ value: 5, balance: { usage: 5, remaining: 0, overage_allowed: true } });
    // The ledger keeps what was asked apart from what was recorded.
    expect((await autumn.usageOf("org_t")).spans).toEqual({ value: 17, recorded: 14, calls: 4, duplicates: 0 });
  });

  it("a negative value credits back, at most the usage", async () => {
    await autumn.setAllowance("org_t", "spans", { granted: 10, usage: 6 });
    expect((await track({ customer_id: "org_t", feature_id: "spans", value: -4 })).json).toMatchObject({ value: -4, balance: { usage: 2, remaining: 8 } });
    expect((await track({ customer_id: "org_t", feature_id: "spans", value: -5 })).json).toMatchObject({ value: -2, balance: { usage: 0, remaining: 10 } });
  });

  it("answers 202 with balance null when async", async () => {
    const queued = await track({ customer_id: "org_t", feature_id: "spans", value: 3, async: true });
    expect(queued).toEqual({ status: 202, json: { customer_id: "org_t", value: 3, balance: null } });
    expect((await getCustomer("org_t")).balances.spans.usage).toBe(3);
  });

  it("answers 404 customer_not_found for an unknown customer and creates nothing", async () => {
    const result = await track({ customer_id: "org_nobody", feature_id: "spans" });
    expect(result).toEqual({ status: 404, json: { message: expect.any(String), code: "customer_not_found", env: "sandbox" } });
    expect((await api("/v1/customers.get", { customer_id: "org_nobody" })).status).toBe(404);
    expect((await autumn.usage()).totals.calls).toBe(0);
  });

  it("refuses bodies TrackParams refuses with 400 invalid_inputs, an event name with 404, and changes nothing", async () => {
    const refused = [
      { customer_id: "org_t", feature_id: "spans", event_name: "span.received" },
      { customer_id: "org_t" },
      { feature_id: "spans" },
      { customer_id: "", feature_id: "spans" },
      { customer_id: "org_t", feature_id: "spans", value: "3" },
      { customer_id: "org_t", feature_id: "spans", overage_behavior: "bill" },
      { customer_id: "org_t", feature_id: "spans", timestamp: -1 },
      { customer_id: "org_t", feature_id: "spans", lock: { lock_id: "l", enabled: true } },
    ];
    for (const body of refused) {
      const result = await track(body);
      expect(result.status, JSON.stringify(body)).toBe(400);
      expect(result.json).toEqual({ message: expect.any(String), code: "invalid_inputs", env: "sandbox" });
    }
    expect((await track({}, {})).json.code).toBe("invalid_inputs");
    expect((await api("/v1/balances.track", "{not json")).json.code).toBe("invalid_inputs");
    const unmapped = await track({ customer_id: "org_t", event_name: "span.received" });
    expect(unmapped).toEqual({ status: 404, json: { message: expect.any(String), code: "feature_not_found", env: "sandbox" } });
    expect((await getCustomer("org_t")).balances).toEqual({});
  });
});

describe("idempotency", () => {
  beforeEach(async () => {
    await autumn.createCustomer("org_i");
  });
  const spans = (value = 1, extra: Json = {}) => ({ customer_id: "org_i", feature_id: "spans", value, ...extra });
  const usageOfSpans = async () => (await getCustomer("org_i")).balances.spans?.usage ?? 0;

  it("a reused Idempotency-Key answers 409 duplicate_idempotency_key and applies nothing", async () => {
    expect((await track(spans(5), key("k-1"))).status).toBe(200);
    const again = await track(spans(5), key("k-1"));
    expect(again).toEqual({ status: 409, json: { message: expect.any(String), code: "duplicate_idempotency_key", env: "sandbox" } });
    // Not a replay: any body under a used key is refused, even one for another feature.
    expect((await track({ customer_id: "org_i", feature_id: "logs", value: 9 }, key("k-1"))).status).toBe(409);
    // The header check comes first (Autumn's middleware), so even a bad body gets 409.
    expect((await track({ customer_id: "org_i" }, key("k-1"))).status).toBe(409);
    expect(await usageOfSpans()).toBe(5);
    expect((await getCustomer("org_i")).balances.logs).toBeUndefined();
    // Each refusal counts against the feature its body names (none for the bad body), and in the totals.
    expect(await autumn.usageOf("org_i")).toEqual({ spans: { value: 5, recorded: 5, calls: 1, duplicates: 1 }, logs: { value: 0, recorded: 0, calls: 0, duplicates: 1 } });
    expect((await autumn.usage()).totals).toMatchObject({ calls: 1, duplicates: 3 });
  });

  it("the body's idempotency_key is a key of its own (stored as track:<key>), independent of the header", async () => {
    expect((await track(spans(1, { idempotency_key: "same" }), key("same"))).status).toBe(200);
    expect((await track(spans(1, { idempotency_key: "same" }))).json.code).toBe("duplicate_idempotency_key");
    expect((await track(spans(1), key("same"))).json.code).toBe("duplicate_idempotency_key");
    // A header key spelled like a stored body key is that key.
    expect((await track(spans(1), key("track:same"))).json.code).toBe("duplicate_idempotency_key");
    expect((await track(spans(1, { idempotency_key: "other" }))).status).toBe(200);
    expect(await usageOfSpans()).toBe(2);
  });

  it("a body-key duplicate does not claim the request's header key", async () => {
    await track(spans(1, { idempotency_key: "b-1" }));
    expect((await track(spans(1, { idempotency_key: "b-1" }), key("h-1"))).status).toBe(409);
    expect((await track(spans(1), key("h-1"))).status).toBe(200);
    expect(await usageOfSpans()).toBe(2);
  });

  it("keys are kept 24 hours on the stand-in's clock", async () => {
    await track(spans(1), key("day"));
    clock = T0 + DAY - 1;
    expect((await track(spans(1), key("day"))).status).toBe(409);
    clock = T0 + DAY;
    expect((await track(spans(1), key("day"))).status).toBe(200);
    expect((await track(spans(1), key("day"))).status).toBe(409);
  });

  it("a request that fails does not keep its key: a fault, a 404, a 400", async () => {
    await autumn.fault({ mode: "http_503", paths: ["/v1/balances.track"] });
    expect((await track(spans(2), key("retry-1"))).status).toBe(503);
    expect((await track(spans(2), key("retry-1"))).status).toBe(200);

    expect((await track({ customer_id: "org_later", feature_id: "spans" }, key("retry-2"))).status).toBe(404);
    await autumn.createCustomer("org_later");
    expect((await track({ customer_id: "org_later", feature_id: "spans" }, key("retry-2"))).status).toBe(200);

    expect((await track({ customer_id: "org_i", feature_id: "spans", value: "x" }, key("retry-3"))).status).toBe(400);
    expect((await track(spans(1, { idempotency_key: "retry-4" }))).status).toBe(200);
    expect((await track(spans(2), key("retry-3"))).status).toBe(200);
    expect(await usageOfSpans()).toBe(5);
  });

  it("applies to every /v1 route, as Autumn's middleware does", async () => {
    expect((await api("/v1/customers.get", { customer_id: "org_i" }, key("read-1"))).status).toBe(200);
    expect((await api("/v1/customers.get", { customer_id: "org_i" }, key("read-1"))).json.code).toBe("duplicate_idempotency_key");
  });

  it("timeout: nothing applied, a late 503; the retry under the same key is applied once", async () => {
    await autumn.fault({ mode: "timeout", delay_ms: 50, paths: ["/v1/balances.track"] });
    const late = await track(spans(3), key("t-1"));
    expect(late).toEqual({ status: 503, json: { message: expect.any(String), code: "service_unavailable", env: "sandbox" } });
    expect(await usageOfSpans()).toBe(0);
    expect((await track(spans(3), key("t-1"))).status).toBe(200);
    expect(await usageOfSpans()).toBe(3);
  });

  it("timeout_after_apply: applied and the key kept, then a late 503; the retry is refused with 409 and nothing is counted twice", async () => {
    await autumn.fault({ mode: "timeout_after_apply", delay_ms: 50, paths: ["/v1/balances.track"] });
    expect((await track(spans(3), key("a-1"))).status).toBe(503);
    expect(await usageOfSpans()).toBe(3);
    expect((await track(spans(3), key("a-1"))).status).toBe(409);
    expect(await usageOfSpans()).toBe(3);
    expect((await autumn.usageOf("org_i")).spans).toEqual({ value: 3, recorded: 3, calls: 1, duplicates: 1 });
    expect((await autumn.calls("org_i")).filter((c) => c.path === "/v1/balances.track").map((c) => c.status)).toEqual([503, 409]);
  });

  it("timeout_after_apply with a client that gives up first: the abandoned request still counts, the retry is a duplicate", async () => {
    await autumn.fault({ mode: "timeout_after_apply", delay_ms: 2_000, paths: ["/v1/balances.track"] });
    await expect(api("/v1/balances.track", spans(4, { idempotency_key: "abandoned" }), {}, standIn.url, AbortSignal.timeout(200))).rejects.toThrow();
    expect(await usageOfSpans()).toBe(4);
    expect((await track(spans(4, { idempotency_key: "abandoned" }))).status).toBe(409);
    expect(await usageOfSpans()).toBe(4);
  });
});

describe("balances.batch_track", () => {
  beforeEach(async () => {
    await autumn.createCustomer("org_bt");
    await autumn.createCustomer("org_bt2");
  });
  const batch = (body: unknown, headers: Record<string, string> = {}) => api("/v1/balances.batch_track", body, headers);

  it("applies every item and answers 202 {success: true}", async () => {
    const result = await batch([
      { customer_id: "org_bt", feature_id: "spans", value: 3 },
      { customer_id: "org_bt", feature_id: "logs" },
      { customer_id: "org_bt2", feature_id: "spans", value: 2 },
      { customer_id: "org_bt", feature_id: "spans", value: 4 },
    ]);
    expect(result).toEqual({ status: 202, json: { success: true } });
    expect((await getCustomer("org_bt")).balances).toMatchObject({ spans: { usage: 7 }, logs: { usage: 1 } });
    expect((await getCustomer("org_bt2")).balances.spans.usage).toBe(2);
    expect((await autumn.usage()).customers).toEqual({
      org_bt: { spans: { value: 7, recorded: 7, calls: 2, duplicates: 0 }, logs: { value: 1, recorded: 1, calls: 1, duplicates: 0 } },
      org_bt2: { spans: { value: 2, recorded: 2, calls: 1, duplicates: 0 } },
    });
  });

  it("validates every item first: one bad item, a non-array, an empty or oversized batch refuses the lot and applies nothing", async () => {
    const good = { customer_id: "org_bt", feature_id: "spans", value: 1 };
    for (const body of [
      [good, { customer_id: "org_bt", feature_id: "spans", event_name: "x" }],
      [good, { customer_id: "org_bt" }],
      [good, { customer_id: "org_bt", feature_id: "spans", value: "1" }],
      good,
      [],
      Array.from({ length: 1001 }, () => good),
      "{not json",
    ]) {
      const result = await batch(body);
      expect(result.status).toBe(400);
      expect(result.json).toEqual({ message: expect.any(String), code: "invalid_inputs", env: "sandbox" });
    }
    expect((await batch([good, { customer_id: "org_bt", event_name: "span.received" }])).json.code).toBe("feature_not_found");
    expect((await getCustomer("org_bt")).balances).toEqual({});
    expect((await batch(Array.from({ length: 1000 }, () => good))).status).toBe(202);
    expect((await getCustomer("org_bt")).balances.spans.usage).toBe(1000);
  });

  it("claims item keys as it processes them: a duplicate item is dropped silently, no 409; so is an item for an unknown customer", async () => {
    await track({ customer_id: "org_bt", feature_id: "spans", value: 10, idempotency_key: "item-0" });
    const result = await batch([
      { customer_id: "org_bt", feature_id: "spans", value: 1, idempotency_key: "item-0" },
      { customer_id: "org_bt", feature_id: "spans", value: 2, idempotency_key: "item-1" },
      { customer_id: "org_bt", feature_id: "spans", value: 2, idempotency_key: "item-1" },
      { customer_id: "org_gone", feature_id: "spans", value: 5 },
      { customer_id: "org_bt", feature_id: "spans", value: 3, idempotency_key: "item-2" },
    ]);
    expect(result).toEqual({ status: 202, json: { success: true } });
    expect((await getCustomer("org_bt")).balances.spans.usage).toBe(15);
    expect((await autumn.usage()).totals).toEqual({ value: 15, recorded: 15, calls: 3, duplicates: 2, dropped: 1 });
    expect((await autumn.usageOf("org_bt")).spans).toEqual({ value: 15, recorded: 15, calls: 3, duplicates: 2 });
    // The item keys are the body keys of track.
    expect((await track({ customer_id: "org_bt", feature_id: "spans", idempotency_key: "item-2" })).status).toBe(409);
  });

  it("the request's Idempotency-Key header is claimed for the whole batch: a retried batch is refused with 409", async () => {
    const items = [{ customer_id: "org_bt", feature_id: "spans", value: 5 }];
    expect((await batch(items, key("batch-1"))).status).toBe(202);
    expect((await batch(items, key("batch-1"))).json).toMatchObject({ code: "duplicate_idempotency_key" });
    expect((await getCustomer("org_bt")).balances.spans.usage).toBe(5);
  });
});

describe("balances.limit_reached", () => {
  const limitWebhooks = (customerId: string) => autumn.webhooks({ type: "balances.limit_reached", customer_id: customerId });

  it("is sent once when a track moves a limited feature from allowed to blocked, signed like billing.updated", async () => {
    await autumn.createCustomer("org_l");
    await autumn.setAllowance("org_l", "spans", { granted: 10 });
    await track({ customer_id: "org_l", feature_id: "spans", value: 6 });
    expect(await limitWebhooks("org_l")).toEqual([]);
    await track({ customer_id: "org_l", feature_id: "spans", value: 6 });
    await track({ customer_id: "org_l", feature_id: "spans", value: 1 });
    await track({ customer_id: "org_l", feature_id: "spans", value: 1, overage_behavior: "overflow" });
    const sent = await limitWebhooks("org_l");
    expect(sent).toHaveLength(1);
    expect(sent[0]!.body).toBe(JSON.stringify({ type: "balances.limit_reached", data: { customer_id: "org_l", feature_id: "spans", limit_type: "included" } }));
    expect(verify(sent[0]!)).toEqual(payload(sent[0]!));
    expect(sent[0]!.url).toBeNull();
    expect(sent[0]!.delivered).toBeNull();
  });

  it("is sent again on the next crossing, after a reset or a raised allowance", async () => {
    await autumn.createCustomer("org_l2");
    await autumn.setAllowance("org_l2", "spans", { granted: 5 });
    await track({ customer_id: "org_l2", feature_id: "spans", value: 5 });
    await autumn.resetBalance("org_l2", "spans");
    await track({ customer_id: "org_l2", feature_id: "spans", value: 9 });
    await autumn.setAllowance("org_l2", "spans", { granted: 20 });
    await track({ customer_id: "org_l2", feature_id: "spans", value: 15, overage_behavior: "overflow" });
    expect(await limitWebhooks("org_l2")).toHaveLength(3);
  });

  it("is never sent for an unlimited or overage-allowed feature, for a feature already blocked, or by a credit back", async () => {
    await autumn.createCustomer("org_l3");
    await track({ customer_id: "org_l3", feature_id: "spans", value: 1_000_000 });
    await autumn.setAllowance("org_l3", "logs", { granted: 1, overage_allowed: true });
    await track({ customer_id: "org_l3", feature_id: "logs", value: 5 });
    await autumn.setAllowance("org_l3", "metrics", { granted: 3, usage: 3 });
    await track({ customer_id: "org_l3", feature_id: "metrics", value: 1 });
    await track({ customer_id: "org_l3", feature_id: "metrics", value: -1 });
    expect(await limitWebhooks("org_l3")).toEqual([]);
  });

  it("crossing inside a batch sends it too", async () => {
    await autumn.createCustomer("org_l4");
    await autumn.setAllowance("org_l4", "spans", { granted: 3 });
    await api("/v1/balances.batch_track", [1, 1, 1, 1].map((value) => ({ customer_id: "org_l4", feature_id: "spans", value })));
    expect(await limitWebhooks("org_l4")).toHaveLength(1);
  });

  describe("delivery", () => {
    type Received = { url: string; headers: IncomingHttpHeaders; body: string };
    let receiver: Server;
    let received: Received[] = [];
    let delivering: AutumnStandIn;
    const remote = () => autumnControls(() => delivering.url, SECRET_KEY);

    beforeAll(async () => {
      receiver = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", () => {
          received.push({ url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
          res.writeHead(204).end();
        });
      });
      receiver.listen(0, "127.0.0.1");
      await once(receiver, "listening");
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/api/billing/autumn/webhook`;
      delivering = await startAutumnStandIn({ secretKey: SECRET_KEY, webhook: { url, secret: WEBHOOK_SECRET } });
    });
    afterAll(async () => {
      await delivering.close();
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    });
    afterEach(() => {
      received = [];
    });

    it("goes to the webhook URL with Svix headers, once per crossing", async () => {
      const controls = remote();
      await controls.createCustomer("org_ld", { webhook: false });
      await controls.setAllowance("org_ld", "spans", { granted: 2 });
      for (let i = 0; i < 4; i++) await controls.track("org_ld", "spans");
      const sent = await controls.webhooks({ type: "balances.limit_reached" });
      expect(sent).toHaveLength(1);
      await vi.waitFor(() => expect(received).toHaveLength(1));
      const [request] = received;
      expect(request!.url).toBe("/api/billing/autumn/webhook");
      expect(request!.body).toBe(sent[0]!.body);
      const asReceived = { headers: { "svix-id": String(request!.headers["svix-id"]), "svix-timestamp": String(request!.headers["svix-timestamp"]), "svix-signature": String(request!.headers["svix-signature"]) }, body: request!.body };
      expect(verify(asReceived)).toEqual({ type: "balances.limit_reached", data: { customer_id: "org_ld", feature_id: "spans", limit_type: "included" } });
      await vi.waitFor(async () => expect((await controls.webhooks({ type: "balances.limit_reached" }))[0]!.delivered).toEqual({ status: 204 }));
    });

    it("an allowance with webhook billing.updated sends the plan change's billing.updated; ?deliver=0 builds it without sending", async () => {
      const controls = remote();
      await controls.createCustomer("org_lu", { webhook: false });
      const upgraded = await controls.setAllowance("org_lu", "spans", { granted: 1000 }, { billingUpdated: true });
      expect(upgraded.webhook!.delivered).toEqual({ status: 204 });
      expect(received).toHaveLength(1);
      expect(verify(upgraded.webhook!)).toMatchObject({
        type: "billing.updated",
        data: { object: "billing.updated", customer_id: "org_lu", plan_changes: [{ action: "updated", subscription: { plan_id: "pro" }, previous_attributes: null }], tags: [] },
      });
      expect(upgraded.customer.balances.spans).toMatchObject({ granted: 1000, remaining: 1000 });
      expect(upgraded.balance).toEqual(upgraded.customer.balances.spans);

      const silent = await controls.setAllowance("org_lu", "spans", { granted: 5 }, { billingUpdated: true, webhook: false });
      expect(silent.webhook!.delivered).toBeNull();
      expect((await controls.setAllowance("org_lu", "spans", { granted: 6 })).webhook).toBeNull();
      expect(received).toHaveLength(1);
    });
  });
});

describe("balance controls", () => {
  beforeEach(async () => {
    await autumn.createCustomer("org_c");
  });

  it("an allowance keeps fields it does not name, except unlimited (false unless given)", async () => {
    await track({ customer_id: "org_c", feature_id: "spans", value: 4 });
    expect((await autumn.setAllowance("org_c", "spans", { granted: 10 })).balance).toMatchObject({ granted: 10, usage: 4, unlimited: false, remaining: 6 });
    expect((await autumn.setAllowance("org_c", "spans", { overage_allowed: true })).balance).toMatchObject({ granted: 10, usage: 4, overage_allowed: true });
    expect((await autumn.setAllowance("org_c", "spans", { unlimited: true })).balance).toMatchObject({ unlimited: true, remaining: 0, usage: 4 });
  });

  it("refuses an unknown customer (404), a bad body (400), and a reset of a balance that does not exist (404)", async () => {
    const post = (path: string, body: unknown) => fetch(`${standIn.url}/_control${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const unknown = await post("/customers/org_none/balances/spans", { granted: 1 });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as Json).code).toBe("customer_not_found");
    for (const body of [{ granted: -1 }, { granted: "10" }, { reset_interval_ms: 0 }, { webhook: "invoice.finalized" }]) {
      expect((await post("/customers/org_c/balances/spans", body)).status, JSON.stringify(body)).toBe(400);
    }
    const reset = await post("/customers/org_c/balances/spans/reset", {});
    expect(reset.status).toBe(404);
    expect(((await reset.json()) as Json).code).toBe("balance_not_found");
    expect((await getCustomer("org_c")).balances).toEqual({});
  });

  it("reset: usage back to 0 at `at`, next_reset_at one interval later", async () => {
    await autumn.setAllowance("org_c", "spans", { granted: 10, usage: 7, reset_interval_ms: DAY });
    const { balance } = await autumn.resetBalance("org_c", "spans", T0 + 3_600_000);
    expect(balance).toMatchObject({ usage: 0, remaining: 10, next_reset_at: T0 + 3_600_000 + DAY });
    await autumn.setAllowance("org_c", "logs", { granted: 10, usage: 7 });
    expect((await autumn.resetBalance("org_c", "logs")).balance).toMatchObject({ usage: 0, next_reset_at: null });
  });
});

describe("lazy reset on the stand-in's clock", () => {
  beforeEach(async () => {
    await autumn.createCustomer("org_r");
  });

  it("an interval starts a period now; past next_reset_at usage is 0 and next_reset_at advances past every missed period", async () => {
    const { balance } = await autumn.setAllowance("org_r", "spans", { granted: 100, reset_interval_ms: DAY });
    expect(balance.next_reset_at).toBe(T0 + DAY);
    await track({ customer_id: "org_r", feature_id: "spans", value: 30 });
    clock = T0 + DAY - 1;
    expect((await getCustomer("org_r")).balances.spans).toMatchObject({ usage: 30, next_reset_at: T0 + DAY });
    clock = T0 + DAY;
    expect((await getCustomer("org_r")).balances.spans).toMatchObject({ usage: 0, remaining: 100, next_reset_at: T0 + 2 * DAY });
    await track({ customer_id: "org_r", feature_id: "spans", value: 5 });
    clock = T0 + 5.5 * DAY;
    // The track sees the rolled-over balance before it counts.
    expect((await track({ customer_id: "org_r", feature_id: "spans", value: 2 })).json.balance).toMatchObject({ usage: 2, next_reset_at: T0 + 6 * DAY });
  });

  it("without an interval the balance resets once and next_reset_at becomes null", async () => {
    await autumn.setAllowance("org_r", "spans", { granted: 10, usage: 10, next_reset_at: T0 + 1_000 });
    clock = T0 + 1_000;
    expect((await api("/v1/customers.list", { search: "org_r" })).json.list[0].balances.spans).toMatchObject({ usage: 0, remaining: 10, next_reset_at: null });
    clock = T0 + 100 * DAY;
    await track({ customer_id: "org_r", feature_id: "spans", value: 4 });
    expect((await getCustomer("org_r")).balances.spans).toMatchObject({ usage: 4, next_reset_at: null });
  });

  it("a blocked feature is allowed again after the reset, and the next crossing sends limit_reached again", async () => {
    await autumn.setAllowance("org_r", "spans", { granted: 3, reset_interval_ms: DAY });
    await track({ customer_id: "org_r", feature_id: "spans", value: 3 });
    clock = T0 + DAY;
    expect((await track({ customer_id: "org_r", feature_id: "spans", value: 3 })).json).toMatchObject({ value: 3, balance: { usage: 3, remaining: 0 } });
    expect((await autumn.webhooks({ type: "balances.limit_reached", customer_id: "org_r" })).map((w) => JSON.parse(w.headers["svix-timestamp"]!) * 1000)).toEqual([T0, T0 + DAY]);
  });
});

describe("soak faults", () => {
  beforeEach(async () => {
    await autumn.createCustomer("org_s");
  });
  const statuses = async (n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await track({ customer_id: "org_s", feature_id: "spans" })).status);
    return out;
  };

  it("a rate fault hits the same requests for the same seed, stays installed, and counts what it fired", async () => {
    await autumn.fault({ mode: "http_503", rate: 0.3, seed: 42, paths: ["/v1/balances.track"] });
    const first = await statuses(60);
    const hits = first.filter((s) => s === 503).length;
    expect(hits).toBeGreaterThan(0);
    expect(hits).toBeLessThan(60);
    expect(new Set(first)).toEqual(new Set([200, 503]));
    const { faults } = await fetch(`${standIn.url}/_control/faults`).then((r) => r.json() as Promise<{ faults: Json[] }>);
    expect(faults).toMatchObject([{ mode: "http_503", rate: 0.3, seed: 42, fired: hits }]);
    // Nothing a faulted request carried was applied.
    expect((await getCustomer("org_s")).balances.spans.usage).toBe(60 - hits);

    await autumn.clearFaults();
    expect(await statuses(3)).toEqual([200, 200, 200]);
    await autumn.fault({ mode: "http_503", rate: 0.3, seed: 42, paths: ["/v1/balances.track"] });
    expect(await statuses(60)).toEqual(first);
    await autumn.setFaults([{ mode: "http_503", rate: 0.3, seed: 7, paths: ["/v1/balances.track"] }]);
    expect(await statuses(60)).not.toEqual(first);
  });

  it("rate 0 never fires, rate 1 always; a rate fault without a seed gets one, shown for a replay; skip still applies", async () => {
    await autumn.setFaults([{ mode: "http_500", rate: 0 }]);
    expect(await statuses(5)).toEqual([200, 200, 200, 200, 200]);
    await autumn.setFaults([{ mode: "http_500", rate: 1, skip: 2 }]);
    expect(await statuses(5)).toEqual([200, 200, 500, 500, 500]);
    const { faults } = await fetch(`${standIn.url}/_control/faults`).then((r) => r.json() as Promise<{ faults: Json[] }>);
    expect(faults[0]).toMatchObject({ rate: 1, seed: expect.any(Number), fired: 3 });
    const bad = await fetch(`${standIn.url}/_control/faults`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ mode: "http_500", rate: 1.5 }) });
    expect(bad.status).toBe(400);
  });

  it("a rate miss falls through to the next installed fault", async () => {
    await autumn.setFaults([
      { mode: "http_503", rate: 0, paths: ["/v1/balances.track"] },
      { mode: "http_429", paths: ["/v1/balances.track"] },
    ]);
    expect(await statuses(2)).toEqual([429, 200]);
  });
});

describe("reset and the test helpers", () => {
  it("reset clears balances, idempotency keys, the usage ledger and the webhook log", async () => {
    await autumn.createCustomer("org_z");
    await autumn.setAllowance("org_z", "spans", { granted: 1 });
    await track({ customer_id: "org_z", feature_id: "spans" }, key("z-1"));
    expect(await autumn.webhooks()).not.toEqual([]);
    await fetch(`${standIn.url}/_control/reset`, { method: "POST" });
    await autumn.createCustomer("org_z");
    expect((await getCustomer("org_z")).balances).toEqual({});
    expect((await autumn.usage()).totals).toEqual({ value: 0, recorded: 0, calls: 0, duplicates: 0, dropped: 0 });
    expect((await track({ customer_id: "org_z", feature_id: "spans" }, key("z-1"))).status).toBe(200);
    expect((await autumn.webhooks({ type: "balances.limit_reached" }))).toEqual([]);
  });

  it("track, usage, usageOf, webhooks and DELETE /_control/usage", async () => {
    await autumn.createCustomer("org_h");
    const tracked = await autumn.track("org_h", "spans", { value: 2, idempotencyKey: "h-1", idempotency_key: "h-b" });
    expect(tracked).toMatchObject({ status: 200, body: { customer_id: "org_h", value: 2 } });
    expect((await autumn.track("org_h", "spans", { idempotencyKey: "h-1" })).status).toBe(409);
    expect(await autumn.usageOf("org_h")).toEqual({ spans: { value: 2, recorded: 2, calls: 1, duplicates: 1 } });
    expect(await autumn.usageOf("org_never")).toEqual({});
    const all = await autumn.usage();
    expect(all).toMatchObject({ since: T0, customers: { org_h: { spans: { calls: 1 } } } });
    const webhooks: StandInWebhook[] = await autumn.webhooks({ customer_id: "org_h" });
    expect(webhooks.map((w) => payload(w).type)).toEqual(["billing.updated"]);
    clock = T0 + 5;
    expect(await fetch(`${standIn.url}/_control/usage`, { method: "DELETE" }).then((r) => r.json())).toEqual({
      since: T0 + 5,
      totals: { value: 0, recorded: 0, calls: 0, duplicates: 0, dropped: 0 },
      customers: {},
    });
  });
});
