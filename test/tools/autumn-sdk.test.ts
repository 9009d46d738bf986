import { Autumn, AutumnError } from "autumn-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AUTUMN_API_VERSION } from "../../src/billing/autumn/client.ts";
import { startAutumnStandIn, type AutumnStandIn } from "../../tools/autumn-standin/server.ts";
import { autumnControls } from "../support/autumn.ts";

/**
 * A second reader of the stand-in: Autumn's own SDK (autumn-js, pinned to the release generated
 * from the 2.3.0 OpenAPI document) parses every answer Tollgate reads with its generated schemas,
 * so the stand-in cannot drift from Autumn without this failing. Only this repository's code read
 * the stand-in before; a shape both got wrong the same way went unnoticed (batch_track's 200).
 *
 * `failOpen: false`: the SDK otherwise turns a 5xx of track into a made-up success body.
 */
const SECRET_KEY = "am_sk_test_sdk_suite";
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 1);

let clock = T0;
let standIn: AutumnStandIn;
let sdk: Autumn;
const autumn = autumnControls(() => standIn.url, SECRET_KEY);

beforeAll(async () => {
  standIn = await startAutumnStandIn({ secretKey: SECRET_KEY, webhook: null, now: () => clock });
  sdk = new Autumn({ secretKey: SECRET_KEY, serverURL: standIn.url, xApiVersion: AUTUMN_API_VERSION, failOpen: false, retryConfig: { strategy: "none" } });
});
afterAll(async () => {
  await standIn.close();
});
beforeEach(async () => {
  clock = T0;
  await fetch(`${standIn.url}/_control/reset`, { method: "POST" });
});

/** A customer with everything Tollgate reads: a past-due base plan and its open invoice, a paid invoice, an add-on, balances. */
async function richCustomer(id: string): Promise<void> {
  await autumn.createCustomer(id, { name: "Acme", email: "billing@acme.test", plan_id: "pro", created_at: T0 - 40 * DAY });
  await autumn.addInvoice(id, { status: "paid", total: 29.99, created_at: T0 - 35 * DAY });
  await autumn.addInvoice(id, { status: "", total: 0, created_at: T0 - 34 * DAY });
  await autumn.addOnWithOpenInvoice(id, { plan_id: "extra_seats", created_at: T0 - 20 * DAY });
  await autumn.pastDue(id, { at: T0 - 5 * DAY, total: 49 });
  await autumn.setAllowance(id, "spans", { granted: 1_000, usage: 1_000, next_reset_at: T0 + 10 * DAY });
  await autumn.setAllowance(id, "log_records", { granted: 100, usage: 5, overage_allowed: true, reset_interval_ms: 30 * DAY });
  await autumn.setAllowance(id, "ingest_bytes", { unlimited: true });
}

describe("autumn-js (API 2.3.0) parses every stand-in answer Tollgate reads", () => {
  it("is the SDK generated from the 2.3.0 document, the version Tollgate pins", async () => {
    const { SDK_METADATA } = await import("autumn-js");
    expect(SDK_METADATA.openapiDocVersion).toBe(AUTUMN_API_VERSION);
  });

  it("customers.get with invoices expanded", async () => {
    await richCustomer("org_sdk_get");
    const customer = await sdk.customers.get({ customerId: "org_sdk_get", expand: ["invoices"] });
    expect(customer.id).toBe("org_sdk_get");
    expect(customer.subscriptions.map((s) => [s.planId, s.addOn, s.pastDue])).toEqual(
      expect.arrayContaining([
        ["pro", false, true],
        ["extra_seats", true, false],
      ]),
    );
    expect(customer.invoices?.map((i) => i.status)).toEqual(expect.arrayContaining(["open", "paid", ""]));
    expect(customer.balances.spans).toMatchObject({ featureId: "spans", granted: 1_000, remaining: 0, usage: 1_000, unlimited: false, overageAllowed: false, nextResetAt: T0 + 10 * DAY });
    expect(customer.balances.ingest_bytes?.unlimited).toBe(true);
  });

  it("customers.get of an unknown customer: 404 customer_not_found", async () => {
    const failure = await sdk.customers.get({ customerId: "org_sdk_missing" }).then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(failure).toBeInstanceOf(AutumnError);
    expect((failure as AutumnError).statusCode).toBe(404);
    expect(JSON.parse((failure as AutumnError).body)).toMatchObject({ code: "customer_not_found" });
  });

  it("customers.list, page after page", async () => {
    await richCustomer("org_sdk_list_a");
    await autumn.createCustomer("org_sdk_list_b", { plan_id: "pro" });
    await autumn.createCustomer("org_sdk_list_c");
    const ids: string[] = [];
    let cursor = "";
    for (let page = 0; page < 10; page += 1) {
      const answer = await sdk.customers.list({ startCursor: cursor, limit: 2 });
      ids.push(...answer.list.map((c) => c.id ?? "?"));
      if (answer.nextCursor === null || answer.nextCursor === undefined) break;
      cursor = answer.nextCursor;
    }
    expect(ids.sort()).toEqual(["org_sdk_list_a", "org_sdk_list_b", "org_sdk_list_c"]);
  });

  it("invoices.list of paid invoices, as Tollgate asks", async () => {
    await richCustomer("org_sdk_inv");
    const answer = await sdk.invoices.list({ customerId: "org_sdk_inv", status: ["paid"], limit: 100, startCursor: "" });
    expect(answer.list.map((i) => [i.status, i.total])).toEqual([["paid", 29.99]]);
    const all = await sdk.invoices.list({ customerId: "org_sdk_inv" });
    expect(all.list.length).toBeGreaterThanOrEqual(4);
  });

  it("balances.track: 200 with the balance, 202 async, and a balance of a feature that had none", async () => {
    await richCustomer("org_sdk_track");
    const tracked = await sdk.track({ customerId: "org_sdk_track", featureId: "log_records", value: 7 });
    expect(tracked).toMatchObject({ customerId: "org_sdk_track", value: 7 });
    const fresh = await sdk.track({ customerId: "org_sdk_track", featureId: "data_points", value: 3 });
    expect(fresh.customerId).toBe("org_sdk_track");
    const queued = await sdk.track({ customerId: "org_sdk_track", featureId: "log_records", value: 1, async: true });
    expect(queued).toMatchObject({ customerId: "org_sdk_track", balance: null });
  });

  it("balances.batch_track: 202 {success: true}, as Autumn answers", async () => {
    await autumn.createCustomer("org_sdk_batch");
    const answer = await sdk.batchTrack([
      { customerId: "org_sdk_batch", featureId: "spans", value: 3 },
      { customerId: "org_sdk_batch", featureId: "spans", value: 4 },
    ]);
    expect(answer).toEqual({ success: true });
    expect((await autumn.balances("org_sdk_batch")).spans?.usage).toBe(7);
  });
});
