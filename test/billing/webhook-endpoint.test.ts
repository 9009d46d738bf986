import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { handleWebhook } from "../../src/billing/webhook/receiver.ts";
import { toResponse } from "../../src/shared/result.ts";
import { autumn } from "../support/autumn.ts";
import { BILLING, billingUpdated, deleteAllAlarms, deliver, orgState, signWebhook, uniqueOrg } from "../support/billing.ts";

afterEach(deleteAllAlarms);

async function expectRefusal(response: Response, status: number, error: string) {
  expect(response.status).toBe(status);
  const body = (await response.json()) as { error: string; message: string };
  expect(body.error).toBe(error);
  expect(body.message).toEqual(expect.any(String));
}

/** A past-due customer whose webhook, if processed, would change its state. */
async function pastDueCustomer(): Promise<string> {
  const org = uniqueOrg("refused");
  await autumn.createCustomer(org);
  await autumn.pastDue(org);
  return org;
}

async function expectUntouched(org: string) {
  const state = await orgState(org);
  expect(state).toMatchObject({ state: "ok", reason: "never_synced", version: 0 });
  expect(await autumn.calls(org)).toHaveLength(0);
}

describe("POST /api/billing/autumn/webhook", () => {
  it("processes a billing.updated signed by Autumn's stand-in", async () => {
    const org = uniqueOrg("signed");
    await autumn.createCustomer(org);
    const { webhook } = await autumn.pastDue(org);
    const response = await deliver(webhook);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "processed", org_id: org, state: "overdue" });
  });

  it("routes the legacy customer.products.updated by data.customer.id", async () => {
    const org = await pastDueCustomer();
    const response = await deliver(signWebhook({ type: "customer.products.updated", data: { scenario: "past_due", customer: { id: org } } }));
    expect(await response.json()).toMatchObject({ status: "processed", org_id: org, state: "overdue" });
  });

  it("routes balances.limit_reached and balances.usage_alert_triggered by data.customer_id; without it, 400", async () => {
    const org = await pastDueCustomer();
    const reached = await deliver(signWebhook({ type: "balances.limit_reached", data: { customer_id: org, feature_id: "spans", limit_type: "included" } }));
    expect(await reached.json()).toMatchObject({ status: "processed", org_id: org });
    const alert = { customer_id: org, feature_id: "spans", usage_alert: { threshold: 80, threshold_type: "usage_percentage", basis: "balance" }, balance: { usage: 80, granted: 100, included: 100, remaining: 20 } };
    expect(await (await deliver(signWebhook({ type: "balances.usage_alert_triggered", data: alert }))).json()).toMatchObject({ status: "processed", org_id: org });
    const missing = await deliver(signWebhook({ type: "balances.limit_reached", data: { feature_id: "spans" } }));
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: "invalid_payload", message: "balances.limit_reached needs data.customer_id" });
  });

  it("accepts webhook-* headers from unbranded senders", async () => {
    const org = await pastDueCustomer();
    const signed = signWebhook(billingUpdated(org));
    const headers = Object.fromEntries(Object.entries(signed.headers).map(([k, v]) => [k.replace(/^svix-/, "webhook-"), v]));
    expect((await deliver({ headers, body: signed.body })).status).toBe(200);
    expect((await orgState(org)).state).toBe("overdue");
  });

  it("acknowledges and ignores other event types", async () => {
    const response = await deliver(signWebhook({ type: "customer.threshold_reached", data: { customer_id: "org_x" } }));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ignored", type: "customer.threshold_reached" });
  });

  it("accepts a body signed under either of two rotated secrets", async () => {
    const org = await pastDueCustomer();
    const other = "whsec_b3RoZXItc2VjcmV0LWR1cmluZy1yb3RhdGlvbg==";
    const rotated = { ...env, AUTUMN_WEBHOOK_SECRET: `${other} ${env.AUTUMN_WEBHOOK_SECRET}` };
    const signed = signWebhook(billingUpdated(org), { secret: other });
    const request = new Request(`${BILLING}/api/billing/autumn/webhook`, { method: "POST", headers: signed.headers, body: signed.body });
    expect((await handleWebhook(request, rotated)).status).toBe(200);
    expect((await orgState(org)).state).toBe("overdue");
  });

  describe("refusals change no state", () => {
    it("a tampered body: 401 invalid_signature", async () => {
      const org = await pastDueCustomer();
      const signed = signWebhook(billingUpdated("someone_else"));
      await expectRefusal(await deliver({ ...signed, body: signed.body.replace("someone_else", org) }), 401, "invalid_signature");
      await expectUntouched(org);
    });

    it("the wrong secret: 401 invalid_signature", async () => {
      const org = await pastDueCustomer();
      await expectRefusal(await deliver(signWebhook(billingUpdated(org), { secret: "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==" })), 401, "invalid_signature");
      await expectUntouched(org);
    });

    it("an old timestamp: 401 timestamp_out_of_tolerance", async () => {
      const org = await pastDueCustomer();
      await expectRefusal(await deliver(signWebhook(billingUpdated(org), { at: Date.now() - 6 * 60_000 })), 401, "timestamp_out_of_tolerance");
      await expectUntouched(org);
    });

    it("a future timestamp: 401 timestamp_out_of_tolerance", async () => {
      const org = await pastDueCustomer();
      await expectRefusal(await deliver(signWebhook(billingUpdated(org), { at: Date.now() + 6 * 60_000 })), 401, "timestamp_out_of_tolerance");
      await expectUntouched(org);
    });

    it("missing headers: 401 missing_signature_headers", async () => {
      const org = await pastDueCustomer();
      const signed = signWebhook(billingUpdated(org));
      const { "svix-signature": _dropped, ...headers } = signed.headers;
      await expectRefusal(await deliver({ headers, body: signed.body }), 401, "missing_signature_headers");
      await expectUntouched(org);
    });

    it("a bare v1, signature: 401 invalid_signature", async () => {
      const org = await pastDueCustomer();
      const signed = signWebhook(billingUpdated(org));
      await expectRefusal(await deliver({ headers: { ...signed.headers, "svix-signature": "v1," }, body: signed.body }), 401, "invalid_signature");
      await expectUntouched(org);
    });

    it.each([
      ["not JSON", "not json at all"],
      ["no type", JSON.stringify({ data: {} })],
      ["billing.updated without customer_id", JSON.stringify({ type: "billing.updated", data: { plan_changes: [] } })],
      ["customer.products.updated without customer", JSON.stringify({ type: "customer.products.updated", data: {} })],
      ["a customer id that is not an org id", JSON.stringify({ type: "billing.updated", data: { customer_id: "../../etc" } })],
    ])("a signed body with %s: 400 invalid_payload", async (_name, body) => {
      await expectRefusal(await deliver(signWebhook(body)), 400, "invalid_payload");
    });

    it("over 256 KiB: 413 payload_too_large, exactly 256 KiB is read and verified", async () => {
      await expectRefusal(await deliver(signWebhook("a".repeat(256 * 1024 + 1))), 413, "payload_too_large");
      // The public 256 KiB vector's size passes the cap; its body is not JSON.
      await expectRefusal(await deliver(signWebhook("a".repeat(256 * 1024))), 400, "invalid_payload");
    });

    it("1,000 v1 entries on a 256 KiB body: 401 too_many_signatures, with no HMAC computed", async () => {
      const org = await pastDueCustomer();
      const signed = signWebhook(JSON.stringify({ ...(billingUpdated(org) as object), padding: "a".repeat(250_000) }));
      const flood = [...Array.from({ length: 999 }, () => "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="), signed.headers["svix-signature"]].join(" ");
      const sign = vi.spyOn(crypto.subtle, "sign");
      const verify = vi.spyOn(crypto.subtle, "verify");
      try {
        await expectRefusal(await deliver({ headers: { ...signed.headers, "svix-signature": flood }, body: signed.body }), 401, "too_many_signatures");
        expect(sign.mock.calls.length + verify.mock.calls.length).toBe(0);
      } finally {
        vi.restoreAllMocks();
      }
      await expectUntouched(org);
    });

    it("an unset secret: 503 not_configured, naming the variable", async () => {
      const org = await pastDueCustomer();
      const signed = signWebhook(billingUpdated(org));
      const request = new Request(`${BILLING}/api/billing/autumn/webhook`, { method: "POST", headers: signed.headers, body: signed.body });
      const response = toResponse(await handleWebhook(request, { ...env, AUTUMN_WEBHOOK_SECRET: "" }));
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ error: "not_configured", message: expect.stringContaining("AUTUMN_WEBHOOK_SECRET") });
      await expectUntouched(org);
    });
  });
});
