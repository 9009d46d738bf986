import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startAutumnStandIn, type AutumnStandIn } from "../../tools/autumn-standin/server.ts";
import { autumnControls } from "../support/autumn.ts";

const SECRET_KEY = "am_sk_test_standin_suite";
const WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DAY = 86_400_000;
/** Near the real time, so `Webhook.verify` (which checks the timestamp against Date.now) accepts it. */
const T0 = Math.floor(Date.now() / 1000) * 1000;

const CUSTOMER_REQUIRED = ["id", "name", "email", "created_at", "fingerprint", "stripe_id", "env", "metadata", "send_email_receipts", "billing_controls", "subscriptions", "purchases", "licenses", "balances", "flags"];
const SUBSCRIPTION_REQUIRED = ["id", "plan_id", "auto_enable", "add_on", "status", "past_due", "canceled_at", "expires_at", "trial_ends_at", "started_at", "current_period_start", "current_period_end", "quantity", "scope"];
const CUSTOMER_INVOICE_FIELDS = ["plan_ids", "stripe_id", "processor_type", "status", "total", "currency", "created_at", "hosted_invoice_url"];
const LIST_INVOICE_REQUIRED = ["plan_ids", "stripe_id", "status", "total", "currency", "created_at", "id", "customer_id", "entity_id", "amount_paid", "refunded_amount", "processor_type", "hosted_invoice_url"];
const PLAN_CHANGE_SUBSCRIPTION_KEYS = ["plan_id", "status", "past_due", "started_at", "canceled_at", "expires_at", "trial_ends_at", "current_period_start", "current_period_end"];

type Json = Record<string, any>;
type WebhookRecord = { id: string; url: string | null; headers: Record<string, string>; body: string; delivered?: null | { status: number } | { error: string } };
type ControlResult = { customer: Json; webhook: WebhookRecord };

let clock = T0;
let standIn: AutumnStandIn;

beforeAll(async () => {
  standIn = await startAutumnStandIn({ secretKey: SECRET_KEY, webhook: { url: null, secret: WEBHOOK_SECRET }, now: () => clock });
});
afterAll(async () => {
  await standIn.close();
});
beforeEach(async () => {
  clock = T0;
  await control("POST", "/reset");
});

async function call(base: string, path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${base}${path}`, { method: init.method ?? "POST", headers: init.headers ?? {}, ...(init.body === undefined ? {} : { body: init.body }) });
  const text = await response.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** An Autumn API call as a correct client makes it. */
function api(path: string, body: unknown = {}, headers: Record<string, string> = { authorization: `Bearer ${SECRET_KEY}`, "x-api-version": "2.3.0" }, base = standIn.url) {
  return call(base, path, { body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/json", ...headers } });
}

async function control<T = ControlResult>(method: string, path: string, body?: unknown, base = standIn.url): Promise<T> {
  const result = await call(base, `/_control${path}`, { method, headers: { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  if (result.status !== 200) throw new Error(`control ${method} ${path} answered ${result.status}: ${result.text}`);
  return result.json as T;
}

const getCustomer = async (id: string, expand?: string[]) => {
  const result = await api("/v1/customers.get", { customer_id: id, ...(expand ? { expand } : {}) });
  expect(result.status).toBe(200);
  return result.json as Json;
};
const payload = (webhook: WebhookRecord) => JSON.parse(webhook.body) as { type: string; data: Json };
const calls = async () => (await control<{ calls: { path: string; body: unknown; status: number; at: number; fault?: string }[] }>("GET", "/calls")).calls;

/** Standard Webhooks' verifier reads webhook-* headers; Svix (Autumn) sends the same values as svix-*. */
function verify(webhook: { headers: Record<string, string>; body: string }, secret = WEBHOOK_SECRET): unknown {
  const h = webhook.headers;
  return new Webhook(secret).verify(webhook.body, { "webhook-id": h["svix-id"] ?? "", "webhook-timestamp": h["svix-timestamp"] ?? "", "webhook-signature": h["svix-signature"] ?? "" });
}

describe("auth, version pinning and errors", () => {
  it("answers 401 no_secret_key without Authorization and 401 invalid_secret_key with a wrong key", async () => {
    const missing = await api("/v1/customers.list", {}, { "x-api-version": "2.3.0" });
    expect(missing.status).toBe(401);
    expect(missing.json).toEqual({ message: expect.any(String), code: "no_secret_key", env: "sandbox" });
    const wrong = await api("/v1/customers.list", {}, { authorization: "Bearer am_sk_test_wrong", "x-api-version": "2.3.0" });
    expect(wrong.status).toBe(401);
    expect(wrong.json).toEqual({ message: expect.any(String), code: "invalid_secret_key", env: "sandbox" });
    const notBearer = await api("/v1/customers.list", {}, { authorization: SECRET_KEY, "x-api-version": "2.3.0" });
    expect(notBearer.json.code).toBe("invalid_secret_key");
  });

  it("requires x-api-version 2.3.0 exactly", async () => {
    for (const headers of [{}, { "x-api-version": "2.2.0" }, { "x-api-version": "2.3" }, { "x-api-version": "" }] as Record<string, string>[]) {
      const result = await api("/v1/customers.list", {}, { authorization: `Bearer ${SECRET_KEY}`, ...headers });
      expect(result.status).toBe(400);
      expect(result.json).toEqual({ message: expect.any(String), code: "invalid_api_version", env: "sandbox" });
    }
    expect((await api("/v1/customers.list", {})).status).toBe(200);
  });

  it("checks auth before the version, and both before the path", async () => {
    expect((await api("/v1/nope", {}, {})).json.code).toBe("no_secret_key");
    expect((await api("/v1/nope", {}, { authorization: `Bearer ${SECRET_KEY}` })).json.code).toBe("invalid_api_version");
  });

  it("answers 404 not_found for unknown paths and methods, 400 invalid_inputs for bodies the schema refuses", async () => {
    const unknown = await api("/v1/customers.delete", { customer_id: "x" });
    expect(unknown.status).toBe(404);
    expect(unknown.json).toEqual({ message: expect.any(String), code: "not_found", env: "sandbox" });
    const get = await call(standIn.url, "/v1/customers.get", { method: "GET", headers: { authorization: `Bearer ${SECRET_KEY}`, "x-api-version": "2.3.0" } });
    expect(get.status).toBe(404);
    expect((await call(standIn.url, "/elsewhere", { method: "GET" })).json.code).toBe("not_found");

    // Autumn reads a body that is not JSON as {} (validatorMiddleware), so "{not json" lacks customer_id.
    for (const body of ["{not json", "{}", "null", JSON.stringify({ customer_id: 42 }), JSON.stringify({ customer_id: "" }), JSON.stringify({ customer_id: "a", expand: "invoices" })]) {
      const result = await api("/v1/customers.get", body);
      expect(result.status, body).toBe(400);
      expect(result.json).toEqual({ message: expect.any(String), code: "invalid_inputs", env: "sandbox" });
    }
    for (const body of [{ limit: 0 }, { limit: 5001 }, { limit: 1.5 }, { limit: "many" }, { status: ["pending"] }, { status: "paid" }]) {
      const result = await api("/v1/invoices.list", body);
      expect(result.status, JSON.stringify(body)).toBe(400);
      expect(result.json.code, JSON.stringify(body)).toBe("invalid_inputs");
    }
    expect((await api("/v1/invoices.list", { start_cursor: "garbage" })).json).toEqual({ message: expect.any(String), code: "invalid_cursor", env: "sandbox" });
    // Within the schema's 5000 but above the per-org maximum of 1000.
    expect((await api("/v1/invoices.list", { limit: 1001 })).json).toEqual({ message: "limit 1001 exceeds max of 1000 for this org", code: "invalid_request", env: "sandbox" });
    expect((await api("/v1/customers.list", { limit: 0 })).json.code).toBe("invalid_inputs");
  });

  it("answers 404 customer_not_found for an unknown customer", async () => {
    const result = await api("/v1/customers.get", { customer_id: "org_missing" });
    expect(result.status).toBe(404);
    expect(result.json).toEqual({ message: expect.any(String), code: "customer_not_found", env: "sandbox" });
  });

  it("reports env live for a live key", async () => {
    const live = await startAutumnStandIn({ secretKey: "am_sk_live_x" });
    try {
      const result = await api("/v1/customers.get", { customer_id: "nobody" }, { authorization: "Bearer am_sk_live_x", "x-api-version": "2.3.0" }, live.url);
      expect(result.json).toMatchObject({ code: "customer_not_found", env: "live" });
    } finally {
      await live.close();
    }
  });
});

describe("customers.get", () => {
  it("returns every required field of the 2.3 schema, snake_case, without invoices unless expanded", async () => {
    await control("POST", "/customers", { id: "org_a", name: "Acme", email: "billing@acme.test" });
    const customer = await getCustomer("org_a");
    for (const key of CUSTOMER_REQUIRED) expect(customer, key).toHaveProperty(key);
    expect(customer).not.toHaveProperty("invoices");
    expect(customer).not.toHaveProperty("createdAt");
    expect(customer).toMatchObject({
      id: "org_a",
      name: "Acme",
      email: "billing@acme.test",
      created_at: T0,
      fingerprint: null,
      env: "sandbox",
      metadata: {},
      send_email_receipts: false,
      purchases: [],
      licenses: [],
      balances: {},
      flags: {},
    });
    expect(customer.stripe_id).toMatch(/^cus_/);
    expect(customer.subscriptions).toHaveLength(1);
    const [sub] = customer.subscriptions;
    expect(Object.keys(sub).sort()).toEqual([...SUBSCRIPTION_REQUIRED].sort());
    expect(sub).toMatchObject({
      plan_id: "pro",
      auto_enable: false,
      add_on: false,
      status: "active",
      past_due: false,
      canceled_at: null,
      expires_at: null,
      trial_ends_at: null,
      started_at: T0,
      current_period_start: T0,
      quantity: 1,
      scope: "customer",
    });
    expect(sub.current_period_end).toBeGreaterThan(T0);

    expect((await getCustomer("org_a", ["entities"])).invoices).toBeUndefined();
    const expanded = await getCustomer("org_a", ["invoices"]);
    expect(expanded.invoices).toEqual([]);
  });

  it("expands invoices to the 10 most recent, newest first, with the invoice fields", async () => {
    await control("POST", "/customers", { id: "org_inv" });
    const createdAt = [5, 1, 12, 3, 9, 7, 11, 2, 8, 4, 10, 6].map((d) => T0 - d * DAY);
    for (const [i, at] of createdAt.entries()) await control("POST", "/customers/org_inv/invoices", { status: i % 2 ? "paid" : "open", total: 10 + i, created_at: at });
    const { invoices } = await getCustomer("org_inv", ["invoices", "entities"]);
    expect(invoices).toHaveLength(10);
    expect(invoices.map((i: Json) => i.created_at)).toEqual([...createdAt].sort((a, b) => b - a).slice(0, 10));
    for (const invoice of invoices) {
      expect(Object.keys(invoice).sort()).toEqual([...CUSTOMER_INVOICE_FIELDS].sort());
      expect(invoice.stripe_id).toMatch(/^in_/);
      expect(invoice.processor_type).toBe("stripe");
      expect(invoice.currency).toBe("usd");
      expect(invoice.plan_ids).toEqual(["pro"]);
      expect(invoice.hosted_invoice_url).toMatch(/^https:\/\//);
    }
    // The oldest two (11 and 12 days ago) are left out.
    expect(invoices.some((i: Json) => i.created_at === T0 - 12 * DAY || i.created_at === T0 - 11 * DAY)).toBe(false);
  });

  it("keeps amounts in major units", async () => {
    await control("POST", "/customers", { id: "org_units" });
    await control("POST", "/customers/org_units/past-due", { total: 29.99 });
    expect((await getCustomer("org_units", ["invoices"])).invoices[0]).toMatchObject({ total: 29.99, status: "open" });
  });
});

describe("invoices.list", () => {
  beforeEach(async () => {
    await control("POST", "/customers", { id: "org_x" });
    await control("POST", "/customers", { id: "org_y" });
    // org_x: 7 invoices, one a day, alternating statuses; org_y: 2.
    const statuses = ["paid", "open", "void", "paid", "uncollectible", "draft", ""];
    for (const [i, status] of statuses.entries()) await control("POST", "/customers/org_x/invoices", { status, total: i + 0.5, created_at: T0 - (i + 1) * DAY });
    await control("POST", "/customers/org_y/invoices", { status: "paid", total: 99, created_at: T0 - 100 * DAY, plan_ids: ["team", "seats"], currency: "eur" });
    await control("POST", "/customers/org_y/invoices", { status: "open", total: 5, created_at: T0 });
  });

  it("lists every invoice newest first with every required field", async () => {
    const { status, json } = await api("/v1/invoices.list", {});
    expect(status).toBe(200);
    expect(Object.keys(json).sort()).toEqual(["list", "next_cursor"]);
    expect(json.next_cursor).toBeNull();
    expect(json.list).toHaveLength(9);
    const times = json.list.map((i: Json) => i.created_at);
    expect(times).toEqual([...times].sort((a, b) => b - a));
    for (const invoice of json.list) {
      expect(Object.keys(invoice).sort()).toEqual([...LIST_INVOICE_REQUIRED].sort());
      expect(invoice.id).toMatch(/^inv_/);
      expect(invoice.stripe_id).toMatch(/^in_/);
      expect(invoice.entity_id).toBeNull();
      expect(invoice.refunded_amount).toBe(0);
      expect(invoice.amount_paid).toBe(invoice.status === "paid" ? invoice.total : 0);
    }
    expect(json.list.at(-1)).toMatchObject({ customer_id: "org_y", plan_ids: ["team", "seats"], currency: "eur", total: 99, amount_paid: 99 });
  });

  it("filters by customer and by status", async () => {
    const mine = (await api("/v1/invoices.list", { customer_id: "org_x" })).json;
    expect(mine.list).toHaveLength(7);
    expect(mine.list.every((i: Json) => i.customer_id === "org_x")).toBe(true);

    const paid = (await api("/v1/invoices.list", { customer_id: "org_x", status: ["paid"] })).json;
    expect(paid.list.map((i: Json) => [i.status, i.total])).toEqual([
      ["paid", 0.5],
      ["paid", 3.5],
    ]);
    const openOrVoid = (await api("/v1/invoices.list", { status: ["open", "void"] })).json;
    expect(openOrVoid.list.map((i: Json) => `${i.customer_id}:${i.status}`)).toEqual(["org_y:open", "org_x:open", "org_x:void"]);
    expect((await api("/v1/invoices.list", { customer_id: "org_nobody" })).json).toEqual({ list: [], next_cursor: null });
    expect((await api("/v1/invoices.list", { customer_id: "org_x", status: ["paid"], limit: 1, start_cursor: "" })).json.list[0].total).toBe(0.5);
  });

  it("pages with an opaque cursor until next_cursor is null", async () => {
    const seen: Json[] = [];
    let cursor = "";
    let pages = 0;
    do {
      const { status, json } = await api("/v1/invoices.list", { customer_id: "org_x", limit: 3, start_cursor: cursor });
      expect(status).toBe(200);
      expect(json.list.length).toBeLessThanOrEqual(3);
      seen.push(...json.list);
      cursor = json.next_cursor;
      if (cursor !== null) expect(typeof cursor).toBe("string");
      pages += 1;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen.map((i) => i.total)).toEqual([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5]);
    expect(new Set(seen.map((i) => i.id)).size).toBe(7);
  });

  it("defaults to 50 per page and accepts up to 1000", async () => {
    await control("POST", "/customers", { id: "org_many" });
    for (let i = 0; i < 55; i++) await control("POST", "/customers/org_many/invoices?deliver=0", { status: "open", total: 1, created_at: T0 - i });
    const first = (await api("/v1/invoices.list", { customer_id: "org_many" })).json;
    expect(first.list).toHaveLength(50);
    expect(first.next_cursor).toEqual(expect.any(String));
    const rest = (await api("/v1/invoices.list", { customer_id: "org_many", start_cursor: first.next_cursor })).json;
    expect(rest.list).toHaveLength(5);
    expect(rest.next_cursor).toBeNull();
    expect((await api("/v1/invoices.list", { customer_id: "org_many", limit: 1000 })).json.list).toHaveLength(55);
  });
});

describe("customers.list", () => {
  it("pages through every customer, newest first, in the customer shape without invoices", async () => {
    for (let i = 0; i < 5; i++) {
      clock = T0 + i * 1000;
      await control("POST", "/customers", { id: `org_${i}` });
      await control("POST", `/customers/org_${i}/past-due`);
    }
    const ids: string[] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const { json }: { json: Json } = await api("/v1/customers.list", { limit: 2, start_cursor: cursor });
      expect(Object.keys(json).sort()).toEqual(["list", "next_cursor"]);
      for (const customer of json.list) {
        for (const key of CUSTOMER_REQUIRED) expect(customer).toHaveProperty(key);
        expect(customer).not.toHaveProperty("invoices");
        expect(customer.subscriptions[0].past_due).toBe(true);
      }
      ids.push(...json.list.map((c: Json) => c.id));
      cursor = json.next_cursor;
    }
    expect(ids).toEqual(["org_4", "org_3", "org_2", "org_1", "org_0"]);
    expect((await api("/v1/customers.list", {})).json.list).toHaveLength(5);
    // A cursor from another list is refused.
    const invoiceCursor = (await api("/v1/invoices.list", { limit: 1 })).json.next_cursor;
    expect((await api("/v1/customers.list", { start_cursor: invoiceCursor })).status).toBe(400);
  });

  /** Every customer of a walk, page by page; `between` runs after each page but the last. */
  async function walk(body: Json, between?: (page: number, ids: string[]) => Promise<void>) {
    const ids: string[] = [];
    let cursor: string | null = "";
    for (let page = 1; cursor !== null; page++) {
      const result: { status: number; json: Json } = await api("/v1/customers.list", { ...body, start_cursor: cursor });
      expect(result.status).toBe(200);
      ids.push(...result.json.list.map((c: Json) => c.id));
      cursor = result.json.next_cursor;
      if (cursor !== null && between) await between(page, ids);
      if (page > 500) throw new Error("walk does not end");
    }
    return ids;
  }
  const decodeCursor = (cursor: string) => JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));

  it("returns each customer exactly as customers.get does, subscriptions with past_due and add_on included", async () => {
    await control("POST", "/customers", { id: "org_full", name: "Full", email: "f@full.test" });
    await control("POST", "/customers/org_full/subscriptions", { plan_id: "support", add_on: true, past_due: true });
    await control("POST", "/customers/org_full/past-due");
    await control("POST", "/customers", { id: "org_plain" });
    const { json } = await api("/v1/customers.list", {});
    expect(json.next_cursor).toBeNull();
    const listed = json.list.find((c: Json) => c.id === "org_full");
    expect(listed).toEqual(await getCustomer("org_full"));
    expect(listed.subscriptions).toMatchObject([
      { plan_id: "pro", add_on: false, past_due: true, status: "active" },
      { plan_id: "support", add_on: true, past_due: true, status: "active" },
    ]);
    expect(json.list.find((c: Json) => c.id === "org_plain")).toEqual(await getCustomer("org_plain"));
  });

  it("issues Autumn's cursor (base64url JSON of the page's last created_at and id) and refuses one that does not decode", async () => {
    for (let i = 0; i < 3; i++) await control("POST", "/customers", { id: `org_c${i}`, created_at: T0 + i });
    const first = (await api("/v1/customers.list", { limit: 2 })).json;
    expect(first.list.map((c: Json) => c.id)).toEqual(["org_c2", "org_c1"]);
    expect(first.next_cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(first.next_cursor)).toEqual({ v: 0, id: "org_c1", t: T0 + 1 });
    const last = (await api("/v1/customers.list", { limit: 2, start_cursor: first.next_cursor })).json;
    expect(last).toMatchObject({ list: [{ id: "org_c0" }], next_cursor: null });
    // A full last page says so with next_cursor null, not with an empty page after it.
    expect((await api("/v1/customers.list", { limit: 3 })).json.next_cursor).toBeNull();

    const encode = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
    for (const cursor of ["garbage", encode("not json"), encode({ v: 1, id: "org_c1", t: T0 }), encode({ v: 0, id: "", t: T0 }), encode({ v: 0, id: "org_c1", t: -1 }), encode({ v: 0, id: "org_c1" }), encode(null)]) {
      const result = await api("/v1/customers.list", { start_cursor: cursor });
      expect(result.status, cursor).toBe(400);
      expect(result.json).toEqual({ message: expect.any(String), code: "invalid_cursor", env: "sandbox" });
    }
  });

  it("pages 50 by default and up to 1000; 1001 to 5000 is over the per-org maximum, beyond is a schema error", async () => {
    await control("POST", "/seed", { count: 1001, prefix: "lim-" });
    const first = (await api("/v1/customers.list", {})).json;
    expect(first.list).toHaveLength(50);
    expect((await api("/v1/customers.list", { limit: 1000 })).json.list).toHaveLength(1000);
    expect((await api("/v1/customers.list", { limit: "7" })).json.list).toHaveLength(7);
    for (const limit of [1001, 5000]) {
      const result = await api("/v1/customers.list", { limit });
      expect(result.status).toBe(400);
      expect(result.json).toEqual({ message: `limit ${limit} exceeds max of 1000 for this org`, code: "invalid_request", env: "sandbox" });
    }
    for (const body of [{ limit: 5001 }, { limit: 0 }, { limit: -1 }, { limit: 2.5 }, { limit: "lots" }, { start_cursor: 7 }, { sort_order: "newest" }, { subscription_status: "past_due" }, { processors: ["paypal"] }, { plans: [{ versions: [1] }] }, { created_at_range: { start: 2, end: 1 } }]) {
      const result = await api("/v1/customers.list", body);
      expect(result.status, JSON.stringify(body)).toBe(400);
      expect(result.json, JSON.stringify(body)).toEqual({ message: expect.any(String), code: "invalid_inputs", env: "sandbox" });
    }
    // A body that is not JSON is read as {} (the first page), as Autumn's validator does.
    expect((await api("/v1/customers.list", "{broken")).json.list).toHaveLength(50);
  });

  it("a walk over a store that changes mid-walk sees every customer that existed throughout exactly once", async () => {
    // Clashing creation times on purpose: the order falls back to the id.
    const original: string[] = [];
    for (let i = 0; i < 40; i++) {
      const id = `org_w${String(i).padStart(2, "0")}`;
      await control("POST", "/customers", { id, created_at: T0 + Math.floor(i / 3) * 1000 });
      original.push(id);
    }
    for (const sortOrder of ["desc", "asc"] as const) {
      await control("POST", "/reset");
      for (const [i, id] of original.entries()) await control("POST", "/customers", { id, created_at: T0 + Math.floor(i / 3) * 1000 });
      const deleted = new Set<string>();
      let added = 0;
      const ids = await walk({ limit: 4, sort_order: sortOrder }, async (page, seen) => {
        const [last] = seen.slice(-1);
        const lastAt = (await getCustomer(last!)).created_at as number;
        // New customers before, at and after the cursor's position, and a few deleted on either side of it.
        for (const at of [T0 - 1000, lastAt, T0 + 100_000]) await control("POST", "/customers", { id: `org_new_${sortOrder}_${page}_${added++}`, created_at: at });
        const unseen = original.filter((id) => !seen.includes(id) && !deleted.has(id));
        const seenBefore = original.filter((id) => seen.includes(id) && !deleted.has(id));
        for (const id of [unseen.at(-1), seenBefore[0]]) {
          if (id === undefined) continue;
          await control("DELETE", `/customers/${id}`);
          deleted.add(id);
        }
      });
      expect(new Set(ids).size, sortOrder).toBe(ids.length);
      const throughout = original.filter((id) => !deleted.has(id));
      for (const id of throughout) expect(ids, `${sortOrder}: ${id}`).toContain(id);
      expect(deleted.size).toBeGreaterThan(10);
      // Order of the survivors is the (created_at, id) order asked for.
      const survivors = ids.filter((id) => throughout.includes(id));
      expect(survivors).toEqual(sortOrder === "desc" ? [...throughout].reverse() : throughout);
    }
  });

  it("sorts oldest first on request and filters by search, creation time, plan, processor and subscription status", async () => {
    await control("POST", "/customers", { id: "org_a1", name: "Alpha Corp", email: "ops@alpha.test", created_at: T0 });
    await control("POST", "/customers", { id: "org_b2", name: "Beta", email: "billing@BETA.test", plan_id: "team", created_at: T0 + 10 });
    await control("POST", "/customers", { id: "org_c3", created_at: T0 + 20 });
    await control("POST", "/customers/org_c3/subscriptions", { plan_id: "team", add_on: true });
    await control("POST", "/customers/org_b2/past-due");
    const ids = async (body: Json) => (await api("/v1/customers.list", body)).json.list.map((c: Json) => c.id);

    expect(await ids({})).toEqual(["org_c3", "org_b2", "org_a1"]);
    expect(await ids({ sort_order: "asc" })).toEqual(["org_a1", "org_b2", "org_c3"]);
    expect(await ids({ search: "  beta " })).toEqual(["org_b2"]);
    expect(await ids({ search: "ALPHA" })).toEqual(["org_a1"]);
    expect(await ids({ search: "c3" })).toEqual(["org_c3"]);
    expect(await ids({ created_at_range: { start: T0 + 10 } })).toEqual(["org_c3", "org_b2"]);
    expect(await ids({ created_at_range: { start: T0, end: T0 + 10 } })).toEqual(["org_b2", "org_a1"]);
    expect(await ids({ plans: [{ id: "team" }] })).toEqual(["org_c3", "org_b2"]);
    expect(await ids({ plans: [{ id: "team", versions: [2] }] })).toEqual([]);
    expect(await ids({ plans: [{ id: "team", versions: [1] }, { id: "pro" }] })).toEqual(["org_c3", "org_b2", "org_a1"]);
    expect(await ids({ processors: ["stripe"] })).toHaveLength(3);
    expect(await ids({ processors: ["revenuecat", "vercel"] })).toEqual([]);

    // Autumn keeps a past-due subscription in status past_due: "active" leaves it out of subscriptions
    // (and out of a plans filter), so a reconciliation must not pass subscription_status.
    const activeOnly = (await api("/v1/customers.list", { subscription_status: "active" })).json.list;
    expect(activeOnly.map((c: Json) => c.id)).toEqual(["org_c3", "org_b2", "org_a1"]);
    expect(activeOnly.find((c: Json) => c.id === "org_b2").subscriptions).toEqual([]);
    expect(await ids({ subscription_status: "active", plans: [{ id: "team" }] })).toEqual(["org_c3"]);
    const scheduled = (await api("/v1/customers.list", { subscription_status: "scheduled" })).json.list;
    expect(scheduled.every((c: Json) => c.subscriptions.length === 0)).toBe(true);
    expect((await api("/v1/customers.list", {})).json.list.find((c: Json) => c.id === "org_b2").subscriptions).toMatchObject([{ plan_id: "team", past_due: true }]);
  });
});

describe("control API", () => {
  it("creates customers once, with the plan asked for", async () => {
    const created = await control("POST", "/customers", { id: "org_c", plan_id: "team" });
    expect(created.customer.subscriptions).toMatchObject([{ plan_id: "team", add_on: false, past_due: false, status: "active" }]);
    expect(created.customer.invoices).toEqual([]);
    expect(payload(created.webhook).data.plan_changes).toMatchObject([{ action: "activated", subscription: { plan_id: "team", status: "active", past_due: false }, previous_attributes: null }]);
    const again = await call(standIn.url, "/_control/customers", { body: JSON.stringify({ id: "org_c" }) });
    expect(again.status).toBe(409);
    expect((await call(standIn.url, "/_control/customers", { body: JSON.stringify({}) })).status).toBe(400);
    expect((await call(standIn.url, "/_control/customers/org_unknown/pay", { body: "{}" })).json.code).toBe("customer_not_found");
    expect((await call(standIn.url, "/_control/customers/org_c/whatever", { body: "{}" })).status).toBe(404);
  });

  it("past-due: the base subscription goes past due and an open invoice appears at `at`", async () => {
    await control("POST", "/customers", { id: "org_pd" });
    const at = T0 - 3 * DAY;
    const result = await control("POST", "/customers/org_pd/past-due", { at, total: 49.5 });
    expect(result.customer.subscriptions[0].past_due).toBe(true);
    expect(result.customer.invoices).toMatchObject([{ status: "open", total: 49.5, created_at: at, plan_ids: ["pro"] }]);
    const body = payload(result.webhook);
    expect(body).toEqual({
      type: "billing.updated",
      data: { object: "billing.updated", customer_id: "org_pd", entity_id: null, plan_changes: [expect.any(Object)], tags: [] },
    });
    const [change] = body.data.plan_changes;
    expect(Object.keys(change).sort()).toEqual(["action", "item_changes", "previous_attributes", "subscription"]);
    expect(change).toMatchObject({ action: "updated", subscription: { plan_id: "pro", status: "active", past_due: true }, previous_attributes: { past_due: false }, item_changes: [] });
    expect(Object.keys(change.subscription).sort()).toEqual([...PLAN_CHANGE_SUBSCRIPTION_KEYS].sort());
    expect((await getCustomer("org_pd")).subscriptions[0].past_due).toBe(true);

    // Default total and created_at = now().
    clock = T0 + 5000;
    const second = await control("POST", "/customers/org_pd/past-due");
    expect(second.customer.invoices[0]).toMatchObject({ status: "open", total: 29.99, created_at: T0 + 5000 });
  });

  it("pay: every open invoice is paid and the subscription recovers", async () => {
    await control("POST", "/customers", { id: "org_pay" });
    await control("POST", "/customers/org_pay/past-due", { at: T0 - 2 * DAY });
    await control("POST", "/customers/org_pay/invoices", { status: "open", total: 12, created_at: T0 - DAY });
    await control("POST", "/customers/org_pay/invoices", { status: "void", total: 7, created_at: T0 - 3 * DAY });
    const result = await control("POST", "/customers/org_pay/pay", { at: T0 });
    expect(result.customer.subscriptions[0].past_due).toBe(false);
    expect(result.customer.invoices.map((i: Json) => i.status)).toEqual(["paid", "paid", "void"]);
    expect(payload(result.webhook).data.plan_changes).toMatchObject([{ action: "updated", subscription: { past_due: false }, previous_attributes: { past_due: true } }]);
    const listed = (await api("/v1/invoices.list", { customer_id: "org_pay", status: ["paid"] })).json.list;
    expect(listed.map((i: Json) => [i.total, i.amount_paid])).toEqual([
      [12, 12],
      [29.99, 29.99],
    ]);
  });

  it("invoices: adds any invoice, with tag invoice_created and no plan changes", async () => {
    await control("POST", "/customers", { id: "org_add" });
    const result = await control("POST", "/customers/org_add/invoices", { status: "", total: 3, created_at: T0 - 9 * DAY, plan_ids: ["legacy"] });
    expect(result.customer.invoices).toMatchObject([{ status: "", total: 3, created_at: T0 - 9 * DAY, plan_ids: ["legacy"], currency: "usd" }]);
    expect(payload(result.webhook).data).toMatchObject({ plan_changes: [], tags: ["invoice_created"] });
    const draft = await control("POST", "/customers/org_add/invoices", { status: "draft", total: 1 });
    expect(draft.customer.invoices[0]).toMatchObject({ status: "draft", created_at: T0, hosted_invoice_url: null });
    expect((await call(standIn.url, "/_control/customers/org_add/invoices", { body: JSON.stringify({ status: "pending", total: 1 }) })).status).toBe(400);
    expect((await call(standIn.url, "/_control/customers/org_add/invoices", { body: JSON.stringify({ status: "paid" }) })).status).toBe(400);
  });

  it("trial-invoice: a $0 paid invoice, tagged trial_started", async () => {
    await control("POST", "/customers", { id: "org_trial" });
    const result = await control("POST", "/customers/org_trial/trial-invoice", { at: T0 - 20 * DAY });
    expect(result.customer.invoices).toMatchObject([{ status: "paid", total: 0, created_at: T0 - 20 * DAY }]);
    expect(payload(result.webhook).data).toMatchObject({ plan_changes: [], tags: ["trial_started"] });
    expect((await api("/v1/invoices.list", { customer_id: "org_trial" })).json.list[0]).toMatchObject({ status: "paid", total: 0, amount_paid: 0 });
  });

  it("expire: the base subscription drops out of subscriptions", async () => {
    await control("POST", "/customers", { id: "org_exp" });
    await control("POST", "/customers/org_exp/subscriptions", { plan_id: "extra_seats", add_on: true });
    const at = T0 - DAY;
    const result = await control("POST", "/customers/org_exp/expire", { at });
    expect(result.customer.subscriptions.map((s: Json) => s.plan_id)).toEqual(["extra_seats"]);
    expect((await getCustomer("org_exp")).subscriptions).toHaveLength(1);
    expect(payload(result.webhook).data.plan_changes).toEqual([
      {
        action: "expired",
        subscription: { plan_id: "pro", status: "expired", past_due: false, started_at: T0, canceled_at: at, expires_at: at, trial_ends_at: null, current_period_start: null, current_period_end: null },
        previous_attributes: { status: "active" },
        item_changes: [],
      },
    ]);
    // Nothing left to expire or to put past due.
    expect((await call(standIn.url, "/_control/customers/org_exp/expire", { body: "{}" })).status).toBe(409);
  });

  it("subscriptions: adds e.g. an add-on that is past due, leaving the base subscription alone", async () => {
    await control("POST", "/customers", { id: "org_addon" });
    const result = await control("POST", "/customers/org_addon/subscriptions", { plan_id: "support", add_on: true, past_due: true });
    expect(result.customer.subscriptions).toMatchObject([
      { plan_id: "pro", add_on: false, past_due: false },
      { plan_id: "support", add_on: true, past_due: true, status: "active" },
    ]);
    expect(payload(result.webhook).data.plan_changes).toMatchObject([{ action: "activated", subscription: { plan_id: "support", past_due: true }, previous_attributes: null }]);
    // pay clears base subscriptions only.
    const paid = await control("POST", "/customers/org_addon/pay");
    expect(payload(paid.webhook).data.plan_changes).toEqual([]);
    expect(paid.customer.subscriptions[1].past_due).toBe(true);
  });

  it("void-invoices: open invoices are voided and past due clears", async () => {
    await control("POST", "/customers", { id: "org_void" });
    await control("POST", "/customers/org_void/past-due");
    const result = await control("POST", "/customers/org_void/void-invoices");
    expect(result.customer.invoices[0].status).toBe("void");
    expect(result.customer.subscriptions[0].past_due).toBe(false);
  });

  it("GET /_control/customers/:id shows the customer with invoices", async () => {
    await control("POST", "/customers", { id: "org/slash" });
    await control("POST", `/customers/${encodeURIComponent("org/slash")}/trial-invoice`);
    const { customer } = await control("GET", `/customers/${encodeURIComponent("org/slash")}`);
    expect(customer.id).toBe("org/slash");
    expect(customer.invoices).toHaveLength(1);
  });

  it("past-due with invoice: false: a net-terms invoice open for weeks becomes overdue, no new invoice", async () => {
    await control("POST", "/customers", { id: "org_net" });
    const opened = await control("POST", "/customers/org_net/invoices", { status: "open", total: 500, created_at: T0 - 20 * DAY });
    // Open but not past due yet: net terms.
    expect(opened.customer.subscriptions[0].past_due).toBe(false);
    expect(opened.customer.invoices).toMatchObject([{ status: "open", plan_ids: ["pro"], created_at: T0 - 20 * DAY }]);
    const overdue = await control("POST", "/customers/org_net/past-due", { invoice: false });
    expect(overdue.customer.subscriptions[0].past_due).toBe(true);
    expect(overdue.customer.invoices).toEqual(opened.customer.invoices);
    expect(payload(overdue.webhook).data.plan_changes).toMatchObject([{ action: "updated", subscription: { plan_id: "pro", past_due: true }, previous_attributes: { past_due: false } }]);
    expect((await call(standIn.url, "/_control/customers/org_net/past-due", { body: JSON.stringify({ invoice: "no" }) })).status).toBe(400);
  });

  it("subscriptions with an invoice: an add-on's own old invoice names the add-on; the base plan's past-due invoice names the base plan", async () => {
    await control("POST", "/customers", { id: "org_addinv" });
    const added = await control("POST", "/customers/org_addinv/subscriptions", {
      plan_id: "support",
      add_on: true,
      started_at: T0 - 40 * DAY,
      invoice: { total: 9, created_at: T0 - 20 * DAY },
    });
    expect(added.customer.subscriptions[1]).toMatchObject({ plan_id: "support", add_on: true, past_due: false, started_at: T0 - 40 * DAY });
    expect(added.customer.invoices).toMatchObject([{ status: "open", total: 9, plan_ids: ["support"], created_at: T0 - 20 * DAY }]);
    const pastDue = await control("POST", "/customers/org_addinv/past-due", { at: T0 - DAY });
    expect(pastDue.customer.invoices).toMatchObject([
      { status: "open", plan_ids: ["pro"], created_at: T0 - DAY },
      { status: "open", plan_ids: ["support"], created_at: T0 - 20 * DAY },
    ]);
    expect(pastDue.customer.subscriptions.map((s: Json) => [s.plan_id, s.past_due])).toEqual([
      ["pro", true],
      ["support", false],
    ]);
    const listed = (await api("/v1/invoices.list", { customer_id: "org_addinv", status: ["open"] })).json.list;
    expect(listed.map((i: Json) => i.plan_ids)).toEqual([["pro"], ["support"]]);
    // Any status; created_at defaults to now.
    const paidOne = await control("POST", "/customers/org_addinv/subscriptions", { plan_id: "seats", add_on: true, invoice: { status: "paid", total: 3 } });
    expect(paidOne.customer.invoices[0]).toMatchObject({ status: "paid", total: 3, plan_ids: ["seats"], created_at: T0 });
    expect((await call(standIn.url, "/_control/customers/org_addinv/subscriptions", { body: JSON.stringify({ plan_id: "x", add_on: true, invoice: {} }) })).status).toBe(400);
  });

  it("invoice-finalized: Autumn's signed invoice.finalized, data the invoices.list row with items; customer_id null on request", async () => {
    await control("POST", "/customers", { id: "org_fin" });
    await control("POST", "/customers/org_fin/subscriptions", { plan_id: "support", add_on: true, invoice: { total: 10, created_at: T0 - 5 * DAY } });
    await control("POST", "/customers/org_fin/past-due", { at: T0 - DAY, total: 29.99 });
    const result = await control("POST", "/customers/org_fin/invoice-finalized");
    expect(verify(result.webhook)).toEqual(JSON.parse(result.webhook.body));
    const { type, data } = payload(result.webhook);
    expect(type).toBe("invoice.finalized");
    expect(Object.keys(payload(result.webhook)).sort()).toEqual(["data", "type"]);
    const row = (await api("/v1/invoices.list", { customer_id: "org_fin" })).json.list[0];
    const { items, ...rest } = data;
    expect(rest).toEqual(row);
    expect(rest).not.toHaveProperty("object");
    expect(data).toMatchObject({ customer_id: "org_fin", plan_ids: ["pro"], status: "open", total: 29.99, created_at: T0 - DAY });
    expect(items).toEqual([
      { id: expect.stringMatching(/^invoice_li_/), description: expect.any(String), period_start: T0 - DAY, period_end: expect.any(Number), plan_id: "pro", feature_id: null, feature_name: null, quantity: null, amount: 29.99, entities: [] },
    ]);

    const older = (await api("/v1/invoices.list", { customer_id: "org_fin" })).json.list[1];
    const chosen = await control("POST", "/customers/org_fin/invoice-finalized", { stripe_id: older.stripe_id, null_customer_id: true });
    expect(payload(chosen.webhook).data).toMatchObject({ id: older.id, stripe_id: older.stripe_id, customer_id: null, plan_ids: ["support"], items: [{ plan_id: "support", amount: 10 }] });
    expect((await call(standIn.url, "/_control/customers/org_fin/invoice-finalized", { body: JSON.stringify({ stripe_id: "in_nope" }) })).json.code).toBe("invoice_not_found");
    await control("POST", "/customers", { id: "org_noinv" });
    const none = await call(standIn.url, "/_control/customers/org_noinv/invoice-finalized", { body: "{}" });
    expect(none.status).toBe(404);
    expect(none.json.code).toBe("invoice_not_found");
  });

  it("DELETE /_control/customers/:id: gone from customers.get and customers.list", async () => {
    await control("POST", "/customers", { id: "org_gone" });
    await control("POST", "/customers", { id: "org_stays" });
    expect(await control<Json>("DELETE", "/customers/org_gone")).toEqual({ deleted: "org_gone" });
    expect((await api("/v1/customers.get", { customer_id: "org_gone" })).json.code).toBe("customer_not_found");
    expect((await api("/v1/customers.list", {})).json.list.map((c: Json) => c.id)).toEqual(["org_stays"]);
    expect((await call(standIn.url, "/_control/customers/org_gone", { method: "DELETE" })).status).toBe(404);
  });

  it("seed: many customers in one call, some past due, all or nothing", async () => {
    const seeded = await control<Json>("POST", "/seed", { count: 20_000, past_due: 300, prefix: "bench-" });
    expect(seeded.created).toBe(20_000);
    expect(seeded.ids).toEqual({ first: "bench-00000", last: "bench-19999" });
    expect(seeded.past_due_ids).toHaveLength(300);
    expect(new Set(seeded.past_due_ids).size).toBe(300);
    // A full walk in pages of 1000 sees all of them once, exactly the seeded ones past due.
    const pastDue: string[] = [];
    const seen = new Set<string>();
    let cursor: string | null = "";
    let pages = 0;
    while (cursor !== null) {
      const { json }: { json: Json } = await api("/v1/customers.list", { limit: 1000, start_cursor: cursor });
      for (const customer of json.list) {
        seen.add(customer.id);
        if (customer.subscriptions.some((s: Json) => !s.add_on && s.past_due)) pastDue.push(customer.id);
      }
      cursor = json.next_cursor;
      pages += 1;
    }
    expect(pages).toBe(20);
    expect(seen.size).toBe(20_000);
    expect(pastDue.sort()).toEqual([...seeded.past_due_ids].sort());
    const one = await getCustomer(seeded.past_due_ids[0], ["invoices"]);
    expect(one).toMatchObject({ created_at: T0, subscriptions: [{ plan_id: "pro", past_due: true }], invoices: [{ status: "open", plan_ids: ["pro"], total: 29.99, created_at: T0 }] });

    // Overlapping ids refuse the whole seed and change nothing.
    await control("POST", "/reset");
    await control("POST", "/customers", { id: "s-2" });
    const clash = await call(standIn.url, "/_control/seed", { body: JSON.stringify({ count: 5, prefix: "s-" }) });
    expect(clash.status).toBe(409);
    expect((await api("/v1/customers.list", {})).json.list.map((c: Json) => c.id)).toEqual(["s-2"]);
    for (const body of [{}, { count: 0 }, { count: 3, past_due: 4 }, { count: 1_000_001 }]) {
      expect((await call(standIn.url, "/_control/seed", { body: JSON.stringify(body) })).status, JSON.stringify(body)).toBe(400);
    }
    const options = await control<Json>("POST", "/seed", { count: 3, past_due: 3, prefix: "o-", plan_id: "team", created_at: T0 - DAY, past_due_at: T0 - 2 * DAY, total: 5 });
    expect(options.past_due_ids).toEqual(["o-0", "o-1", "o-2"]);
    expect(await getCustomer("o-1", ["invoices"])).toMatchObject({ created_at: T0 - DAY, subscriptions: [{ plan_id: "team", past_due: true }], invoices: [{ total: 5, created_at: T0 - 2 * DAY, plan_ids: ["team"] }] });
  });

  it("reset clears customers, faults and calls", async () => {
    await control("POST", "/customers", { id: "org_r" });
    await control("POST", "/faults", { mode: "http_500" });
    await api("/v1/customers.list", {});
    await control("POST", "/reset");
    expect(await calls()).toEqual([]);
    expect((await control<{ faults: unknown[] }>("GET", "/faults")).faults).toEqual([]);
    expect((await api("/v1/customers.get", { customer_id: "org_r" })).status).toBe(404);
  });
});

describe("faults", () => {
  beforeEach(async () => {
    await control("POST", "/customers", { id: "org_f" });
  });
  const get = (customerId = "org_f") => api("/v1/customers.get", { customer_id: customerId });

  it("http_500", async () => {
    await control("POST", "/faults", { mode: "http_500" });
    const result = await get();
    expect(result.status).toBe(500);
    expect(result.json).toEqual({ message: "Internal error", code: "internal_error", env: "sandbox" });
    expect((await get()).status).toBe(200);
  });

  it("http_429 and http_503 with Retry-After", async () => {
    await control("POST", "/faults", { mode: "http_429", retry_after: 120 });
    await control("POST", "/faults", { mode: "http_503", retry_after: 7 });
    await control("POST", "/faults", { mode: "http_429" });
    const limited = await get();
    expect(limited.status).toBe(429);
    expect(limited.json).toEqual({ message: "Rate limit exceeded.", code: "rate_limit_exceeded", env: "sandbox" });
    expect(limited.headers.get("retry-after")).toBe("120");
    const unavailable = await get();
    expect(unavailable.status).toBe(503);
    expect(unavailable.json).toMatchObject({ code: "service_unavailable", env: "sandbox" });
    expect(unavailable.headers.get("retry-after")).toBe("7");
    const bare = await get();
    expect(bare.status).toBe(429);
    expect(bare.headers.get("retry-after")).toBeNull();
    expect((await get()).status).toBe(200);
  });

  it("invalid_json: 200 with a body that is not JSON", async () => {
    await control("POST", "/faults", { mode: "invalid_json" });
    const result = await get();
    expect(result.status).toBe(200);
    expect(result.text).toBe("{not json");
    expect(result.json).toBeUndefined();
  });

  it("raw_body: that exact text and status instead of the answer, nothing applied (a mutated answer for fuzzing)", async () => {
    await control("POST", "/faults", { mode: "raw_body", body: '{"id":"org_f","next_reset_at":1e400}', paths: ["/v1/customers.get"] });
    await control("POST", "/faults", { mode: "raw_body", body: "[]", status: 202, paths: ["/v1/balances.track"] });
    const result = await get();
    expect(result).toMatchObject({ status: 200, text: '{"id":"org_f","next_reset_at":1e400}' });
    const tracked = await api("/v1/balances.track", { customer_id: "org_f", feature_id: "spans", value: 5 });
    expect(tracked).toMatchObject({ status: 202, text: "[]" });
    expect((await get()).json.balances).toEqual({});
  });

  it("out_of_range: applied, 200 with amounts negative or past 2^53 and times past the largest Date", async () => {
    await control("POST", "/faults", { mode: "out_of_range" });
    const result = await get();
    expect(result.status).toBe(200);
    const created = result.json.created_at;
    expect(created).toBe(8.64e15 + 1);
    expect(Number.isNaN(new Date(created).getTime())).toBe(true);
    expect((await get()).json.created_at).toBeLessThan(8.64e15);
  });

  it("http_404_unknown_code", async () => {
    await control("POST", "/faults", { mode: "http_404_unknown_code" });
    const result = await get();
    expect(result.status).toBe(404);
    expect(result.json).toMatchObject({ code: "something_else", env: "sandbox" });
  });

  it("slow: waits delay_ms, then answers normally", async () => {
    await control("POST", "/faults", { mode: "slow", delay_ms: 400 });
    const started = performance.now();
    const result = await get();
    expect(performance.now() - started).toBeGreaterThanOrEqual(380);
    expect(result.status).toBe(200);
    expect(result.json.id).toBe("org_f");
    const fast = performance.now();
    await get();
    expect(performance.now() - fast).toBeLessThan(300);
  });

  it("timeout and timeout_after_apply: a 503 after delay_ms on the read paths too, with Retry-After when asked", async () => {
    await control("POST", "/faults", { mode: "timeout", delay_ms: 300, retry_after: 3 });
    await control("POST", "/faults", { mode: "timeout_after_apply", delay_ms: 300 });
    const started = performance.now();
    const timedOut = await get();
    expect(performance.now() - started).toBeGreaterThanOrEqual(280);
    expect([timedOut.status, timedOut.headers.get("retry-after")]).toEqual([503, "3"]);
    expect(timedOut.json).toEqual({ message: expect.any(String), code: "service_unavailable", env: "sandbox" });
    expect((await get()).status).toBe(503);
    expect((await get()).status).toBe(200);
    expect((await calls()).map((c) => c.fault)).toEqual(["timeout", "timeout_after_apply", undefined]);
  });

  it("each matching request consumes one of count; entries run in order", async () => {
    await control("POST", "/faults", { mode: "http_500", count: 2 });
    await control("POST", "/faults", { mode: "http_503", count: 1 });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await get()).status);
    expect(statuses).toEqual([500, 500, 503, 200, 200]);
  });

  it("matches only the given paths and customer", async () => {
    await control("POST", "/customers", { id: "org_other" });
    await control("POST", "/faults", { mode: "http_500", paths: ["/v1/invoices.list"] });
    await control("POST", "/faults", { mode: "http_503", customer_id: "org_other" });
    expect((await get()).status).toBe(200);
    expect((await api("/v1/customers.list", {})).status).toBe(200);
    expect((await api("/v1/invoices.list", {})).status).toBe(500);
    expect((await api("/v1/invoices.list", {})).status).toBe(200);
    expect((await get()).status).toBe(200);
    expect((await get("org_other")).status).toBe(503);
    expect((await get("org_other")).status).toBe(200);
  });

  it("skip lets that many matching calls through first: page 2 of a walk fails once, then the walk resumes from its cursor", async () => {
    for (let i = 0; i < 5; i++) await control("POST", "/customers", { id: `org_p${i}`, created_at: T0 + i });
    await control("POST", "/faults", { mode: "http_503", retry_after: 2, paths: ["/v1/customers.list"], skip: 1 });
    // Calls to other paths do not count against skip.
    expect((await get()).status).toBe(200);
    const page1 = await api("/v1/customers.list", { limit: 2 });
    expect(page1.status).toBe(200);
    const failed = await api("/v1/customers.list", { limit: 2, start_cursor: page1.json.next_cursor });
    expect(failed.status).toBe(503);
    expect(failed.headers.get("retry-after")).toBe("2");
    expect(failed.json).toEqual({ message: expect.any(String), code: "service_unavailable", env: "sandbox" });
    const retried = await api("/v1/customers.list", { limit: 2, start_cursor: page1.json.next_cursor });
    expect(retried.json.list.map((c: Json) => c.id)).toEqual(["org_p2", "org_p1"]);
    expect((await control<{ faults: unknown[] }>("GET", "/faults")).faults).toEqual([]);
    expect((await calls()).filter((c) => c.path === "/v1/customers.list").map((c) => c.status)).toEqual([200, 503, 200]);
  });

  it("every mode applies to customers.list; skip counts per entry while an earlier entry fires", async () => {
    await control("POST", "/faults", { mode: "http_429", retry_after: 30, paths: ["/v1/customers.list"] });
    await control("POST", "/faults", { mode: "invalid_json", paths: ["/v1/customers.list"], skip: 1 });
    await control("POST", "/faults", { mode: "http_500", paths: ["/v1/customers.list"], skip: 2, count: 2 });
    const limited = await api("/v1/customers.list", {});
    expect([limited.status, limited.headers.get("retry-after"), limited.json.code]).toEqual([429, "30", "rate_limit_exceeded"]);
    expect((await api("/v1/customers.list", {})).text).toBe("{not json");
    expect((await api("/v1/customers.list", {})).status).toBe(500);
    expect((await api("/v1/customers.list", {})).status).toBe(500);
    expect((await api("/v1/customers.list", {})).status).toBe(200);
    await control("POST", "/faults", { mode: "slow", delay_ms: 300, paths: ["/v1/customers.list"] });
    const started = performance.now();
    expect((await api("/v1/customers.list", {})).json.list).toHaveLength(1);
    expect(performance.now() - started).toBeGreaterThanOrEqual(280);
    expect((await call(standIn.url, "/_control/faults", { body: JSON.stringify({ mode: "http_500", skip: -1 }) })).status).toBe(400);
  });

  it("does not fire on requests that fail auth, and DELETE clears them", async () => {
    await control("POST", "/faults", { mode: "http_500" });
    expect((await api("/v1/customers.get", { customer_id: "org_f" }, { "x-api-version": "2.3.0" })).status).toBe(401);
    expect((await get()).status).toBe(500);
    await control("POST", "/faults", { mode: "http_500", count: 3 });
    expect((await control<{ faults: Json[] }>("GET", "/faults")).faults).toMatchObject([{ mode: "http_500", count: 3 }]);
    await control("DELETE", "/faults");
    expect((await get()).status).toBe(200);
    expect((await call(standIn.url, "/_control/faults", { body: JSON.stringify({ mode: "http_418" }) })).status).toBe(400);
  });
});

describe("stats", () => {
  it("counts /v1 calls per path and status, faulted ones apart; DELETE and reset clear them", async () => {
    await control("POST", "/customers", { id: "org_st" });
    clock = T0 + 50;
    expect(await control<Json>("DELETE", "/stats")).toEqual({ since: T0 + 50, total: 0, paths: {} });
    await control("POST", "/faults", { mode: "http_503", paths: ["/v1/customers.list"] });
    await api("/v1/customers.list", {});
    await api("/v1/customers.list", {});
    await api("/v1/customers.get", { customer_id: "org_st" });
    await api("/v1/customers.get", { customer_id: "nobody" });
    await api("/v1/customers.list", {}, {});
    expect(await control<Json>("GET", "/stats")).toEqual({
      since: T0 + 50,
      total: 5,
      paths: {
        "/v1/customers.list": { total: 3, status: { "200": 1, "401": 1, "503": 1 }, faults: 1 },
        "/v1/customers.get": { total: 2, status: { "200": 1, "404": 1 }, faults: 0 },
      },
    });
    await control("POST", "/reset");
    expect((await control<Json>("GET", "/stats")).total).toBe(0);
  });
});

describe("call log", () => {
  it("records every /v1 call with its body, status and time, faulted ones included", async () => {
    await control("POST", "/customers", { id: "org_log" });
    await control("POST", "/faults", { mode: "http_429" });
    clock = T0 + 1;
    await api("/v1/customers.get", { customer_id: "org_log" });
    clock = T0 + 2;
    await api("/v1/customers.get", { customer_id: "org_log", expand: ["invoices"] });
    clock = T0 + 3;
    await api("/v1/invoices.list", { customer_id: "org_log", status: ["open"] }, {});
    await api("/v1/customers.get", "{broken");
    expect(await calls()).toEqual([
      { path: "/v1/customers.get", body: { customer_id: "org_log" }, status: 429, at: T0 + 1, fault: "http_429" },
      { path: "/v1/customers.get", body: { customer_id: "org_log", expand: ["invoices"] }, status: 200, at: T0 + 2 },
      { path: "/v1/invoices.list", body: { customer_id: "org_log", status: ["open"] }, status: 401, at: T0 + 3 },
      { path: "/v1/customers.get", body: "{broken", status: 400, at: T0 + 3 },
    ]);
    await control("DELETE", "/calls");
    expect(await calls()).toEqual([]);
  });
});

describe("test helpers (test/support/autumn.ts)", () => {
  const helpers = () => autumnControls(() => standIn.url, SECRET_KEY);

  it("drive every control the workerd tests use", async () => {
    const autumn = helpers();
    await autumn.createCustomer("org_h");
    await autumn.createCustomer("org_h2", { name: "H2", plan_id: "team", created_at: T0 - DAY, webhook: false });
    expect((await autumn.customer("org_h2")).subscriptions[0].plan_id).toBe("team");

    // Old signatures still work: pastDue(id, at), pay(id, at).
    const pastDue = await autumn.pastDue("org_h", T0 - 2 * DAY);
    expect(pastDue.customer.invoices[0]).toMatchObject({ status: "open", created_at: T0 - 2 * DAY, plan_ids: ["pro"] });
    expect(payload(pastDue.webhook).type).toBe("billing.updated");
    expect((await autumn.pay("org_h", T0)).customer.subscriptions[0].past_due).toBe(false);

    const silent = await autumn.pastDue("org_h", { at: T0 - DAY, total: 12, webhook: false });
    expect(silent.customer.invoices[0]).toMatchObject({ total: 12, created_at: T0 - DAY });
    expect((await autumn.pay("org_h", { webhook: false })).customer.subscriptions[0].past_due).toBe(false);

    await autumn.netTermsInvoice("org_h2", { created_at: T0 - 30 * DAY, total: 100 });
    expect((await autumn.customer("org_h2")).subscriptions[0].past_due).toBe(false);
    const netTerms = await autumn.pastDue("org_h2", { invoice: false });
    expect(netTerms.customer.invoices).toMatchObject([{ status: "open", total: 100, plan_ids: ["team"], created_at: T0 - 30 * DAY }]);
    expect(netTerms.customer.subscriptions[0].past_due).toBe(true);

    const addOn = await autumn.addOnWithOpenInvoice("org_h", { plan_id: "support", created_at: T0 - 20 * DAY });
    expect(addOn.customer.invoices.find((i: Json) => i.plan_ids[0] === "support")).toMatchObject({ status: "open", created_at: T0 - 20 * DAY });
    expect(addOn.customer.subscriptions[1]).toMatchObject({ plan_id: "support", add_on: true, past_due: false });
    await autumn.addSubscription("org_h", { plan_id: "seats", add_on: true, past_due: true, invoice: { total: 1, created_at: T0 } });

    const finalized = await autumn.invoiceFinalized("org_h2", { null_customer_id: true });
    expect(payload(finalized.webhook)).toMatchObject({ type: "invoice.finalized", data: { customer_id: null, plan_ids: ["team"] } });

    await autumn.resetStats();
    const seeded = await autumn.seed({ count: 10, past_due: 2, prefix: "h-" });
    expect(seeded.past_due_ids).toEqual(["h-0", "h-5"]);
    const page = await autumn.listCustomers({ limit: 5, search: "h-" });
    expect(page.list).toHaveLength(5);
    expect(page.next_cursor).toEqual(expect.any(String));
    expect((await autumn.stats()).paths["/v1/customers.list"]).toEqual({ total: 1, status: { "200": 1 }, faults: 0 });

    await autumn.setFaults([{ mode: "http_503", retry_after: 1, paths: ["/v1/customers.list"], skip: 1 }]);
    await autumn.listCustomers({ limit: 5 });
    await expect(autumn.listCustomers({ limit: 5, start_cursor: page.next_cursor! })).rejects.toThrow(/503/);
    expect((await autumn.listCustomers({ limit: 5, start_cursor: page.next_cursor! })).list).toHaveLength(5);
    await autumn.fault({ mode: "http_500", customer_id: "org_h" });
    await autumn.clearFaults();
    expect(await autumn.calls("org_h")).toEqual([]);

    expect(await autumn.deleteCustomer("org_h")).toEqual({ deleted: "org_h" });
    await expect(autumn.customer("org_h")).rejects.toThrow(/404/);
  });
});

describe("webhooks", () => {
  it("are signed the Svix way and verify with standardwebhooks", async () => {
    const { webhook } = await control("POST", "/customers", { id: "org_sig" });
    expect(Object.keys(webhook.headers).sort()).toEqual(["content-type", "svix-id", "svix-signature", "svix-timestamp"]);
    expect(webhook.id).toMatch(/^msg_[A-Za-z0-9]+$/);
    expect(webhook.headers["svix-id"]).toBe(webhook.id);
    expect(webhook.headers["svix-timestamp"]).toBe(String(Math.floor(T0 / 1000)));
    expect(webhook.headers["svix-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(webhook.headers["content-type"]).toBe("application/json");
    expect(webhook.url).toBeNull();
    expect(webhook.delivered).toBeNull();
    expect(verify(webhook)).toEqual(JSON.parse(webhook.body));

    expect(() => verify({ ...webhook, body: webhook.body.replace("org_sig", "org_evil") })).toThrow();
    expect(() => verify(webhook, "whsec_plJ3nmyCDGBKInavdOK15jsl")).toThrow();
    const other = await control("POST", "/customers/org_sig/past-due");
    expect(other.webhook.id).not.toBe(webhook.id);
    expect(verify(other.webhook)).toMatchObject({ type: "billing.updated", data: { customer_id: "org_sig" } });
  });

  it("carry no signature when no secret is configured", async () => {
    const unsigned = await startAutumnStandIn({ secretKey: SECRET_KEY });
    try {
      const { webhook } = await control("POST", "/customers", { id: "org_u" }, unsigned.url);
      expect(webhook.headers["svix-signature"]).toBeUndefined();
      expect(webhook.headers["svix-id"]).toBe(webhook.id);
      expect(webhook.delivered).toBeNull();
    } finally {
      await unsigned.close();
    }
  });

  describe("delivery", () => {
    type Received = { method: string; url: string; headers: IncomingHttpHeaders; body: string };
    let receiver: Server;
    let receiverUrl: string;
    let received: Received[] = [];
    let answerStatus = 204;
    let delivering: AutumnStandIn;

    beforeAll(async () => {
      receiver = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", () => {
          received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
          res.writeHead(answerStatus).end();
        });
      });
      receiver.listen(0, "127.0.0.1");
      await once(receiver, "listening");
      receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
      delivering = await startAutumnStandIn({ secretKey: SECRET_KEY, webhook: { url: `${receiverUrl}/api/billing/autumn/webhook`, secret: WEBHOOK_SECRET } });
    });
    afterAll(async () => {
      await delivering.close();
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    });
    afterEach(() => {
      received = [];
      answerStatus = 204;
    });

    it("POSTs the signed body to the webhook URL and records the answer", async () => {
      const { webhook } = await control("POST", "/customers", { id: "org_d" }, delivering.url);
      expect(webhook.url).toBe(`${receiverUrl}/api/billing/autumn/webhook`);
      expect(webhook.delivered).toEqual({ status: 204 });
      expect(received).toHaveLength(1);
      const [request] = received;
      expect(request).toMatchObject({ method: "POST", url: "/api/billing/autumn/webhook", body: webhook.body });
      for (const [name, value] of Object.entries(webhook.headers)) expect(request!.headers[name]).toBe(value);
      const asReceived = { headers: { "svix-id": String(request!.headers["svix-id"]), "svix-timestamp": String(request!.headers["svix-timestamp"]), "svix-signature": String(request!.headers["svix-signature"]) }, body: request!.body };
      expect(verify(asReceived)).toMatchObject({ type: "billing.updated", data: { customer_id: "org_d", plan_changes: [{ action: "activated" }] } });

      answerStatus = 500;
      const failed = await control("POST", "/customers/org_d/past-due", {}, delivering.url);
      expect(failed.webhook.delivered).toEqual({ status: 500 });
      expect(received).toHaveLength(2);
    });

    it("skips delivery with ?deliver=0 but still returns the signed message", async () => {
      await control("POST", "/customers?deliver=0", { id: "org_nd" }, delivering.url);
      const { webhook } = await control("POST", "/customers/org_nd/past-due?deliver=0", {}, delivering.url);
      expect(webhook.delivered).toBeNull();
      expect(webhook.url).toBe(`${receiverUrl}/api/billing/autumn/webhook`);
      expect(verify(webhook)).toMatchObject({ data: { customer_id: "org_nd" } });
      expect(received).toEqual([]);
      // A lost payment webhook: the customer pays, Autumn's webhook never arrives.
      const paid = await control("POST", "/customers/org_nd/pay?deliver=false", {}, delivering.url);
      expect(paid.webhook.delivered).toBeNull();
      expect(paid.customer.subscriptions[0].past_due).toBe(false);
      await control("POST", "/customers/org_nd/invoice-finalized?deliver=0", {}, delivering.url);
      expect(received).toEqual([]);
    });

    it("delivers invoice.finalized like billing.updated", async () => {
      await control("POST", "/customers?deliver=0", { id: "org_fd" }, delivering.url);
      await control("POST", "/customers/org_fd/past-due?deliver=0", {}, delivering.url);
      const { webhook } = await control("POST", "/customers/org_fd/invoice-finalized", { null_customer_id: true }, delivering.url);
      expect(webhook.delivered).toEqual({ status: 204 });
      expect(received).toHaveLength(1);
      const [request] = received;
      expect(request!.body).toBe(webhook.body);
      const asReceived = { headers: { "svix-id": String(request!.headers["svix-id"]), "svix-timestamp": String(request!.headers["svix-timestamp"]), "svix-signature": String(request!.headers["svix-signature"]) }, body: request!.body };
      expect(verify(asReceived)).toMatchObject({ type: "invoice.finalized", data: { customer_id: null, status: "open" } });
    });

    it("records a delivery error when nothing listens", async () => {
      const closedPort = await new Promise<number>((resolve) => {
        const probe = createServer().listen(0, "127.0.0.1", () => {
          const { port } = probe.address() as AddressInfo;
          probe.close(() => resolve(port));
        });
      });
      const broken = await startAutumnStandIn({ secretKey: SECRET_KEY, webhook: { url: `http://127.0.0.1:${closedPort}/hook`, secret: WEBHOOK_SECRET } });
      try {
        const { webhook } = await control("POST", "/customers", { id: "org_e" }, broken.url);
        expect(webhook.delivered).toEqual({ error: expect.any(String) });
      } finally {
        await broken.close();
      }
    });
  });
});

describe("CLI", () => {
  it("starts from the environment, prints its URL and stops on SIGTERM", async () => {
    const main = fileURLToPath(new URL("../../tools/autumn-standin/main.ts", import.meta.url));
    const child = spawn(process.execPath, [main], {
      env: { ...process.env, AUTUMN_STANDIN_PORT: "0", AUTUMN_SECRET_KEY: "", AUTUMN_WEBHOOK_TARGET: "", AUTUMN_WEBHOOK_SECRET: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let output = "";
      child.stdout.setEncoding("utf8");
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (chunk: string) => {
          output += chunk;
          const match = /http:\/\/127\.0\.0\.1:\d+/.exec(output);
          if (match) resolve(match[0]);
        });
        child.once("exit", (code) => reject(new Error(`exited with ${code}: ${output}`)));
      });
      expect(output.trim().split("\n")).toHaveLength(1);
      const result = await api("/v1/customers.list", {}, { authorization: "Bearer am_sk_test_local_demo", "x-api-version": "2.3.0" }, url);
      expect(result.json).toEqual({ list: [], next_cursor: null });
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const [code] = await exited;
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("refuses a webhook target without a secret", async () => {
    const main = fileURLToPath(new URL("../../tools/autumn-standin/main.ts", import.meta.url));
    const child = spawn(process.execPath, [main], {
      env: { ...process.env, AUTUMN_STANDIN_PORT: "0", AUTUMN_WEBHOOK_TARGET: "http://127.0.0.1:1/hook", AUTUMN_WEBHOOK_SECRET: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const [code] = await once(child, "exit");
    expect(code).toBe(2);
  });
});
