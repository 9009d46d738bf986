import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { IngestKeyRecord } from "../../src/shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { autumn } from "../support/autumn.ts";
import { admin, alarmOf, deleteAllAlarms, deliver, deliverNow, mirrorOf, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { receiver } from "../support/notify.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";

const clock = fakeClock();

const DAY = 86_400_000;
const GRACE = 3 * DAY;

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

async function keyEntry(key: string): Promise<IngestKeyRecord> {
  const raw = await env.INGEST_KEYS.get(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key)));
  return IngestKeyRecord.parse(JSON.parse(raw!));
}

async function mintKey(orgId: string): Promise<string> {
  const response = await admin(`/orgs/${orgId}/ingest-keys`, { method: "POST" });
  expect(response.status).toBe(201);
  return ((await response.json()) as { key: string }).key;
}

describe("what the object publishes", () => {
  it("copies the verdict, with the pay link, into the mirror and into every active key's entry", async () => {
    const org = uniqueOrg("publish");
    await autumn.createCustomer(org);
    const key = await mintKey(org);
    expect((await keyEntry(key)).verdict).toMatchObject({ state: "ok", pay_url: null });

    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    const { evidence } = await orgState(org);
    const payUrl = evidence!.open_invoices[0]!.hosted_invoice_url!;
    expect(payUrl).toMatch(/^https:\/\//);
    expect(evidence!.pay_url).toBe(payUrl);
    const mirror = await mirrorOf(org);
    expect(mirror).toMatchObject({ state: "overdue", suspend_at: clock.now + GRACE, pay_url: payUrl });
    expect((await keyEntry(key)).verdict).toEqual(mirror);

    await autumn.pay(org, clock.now);
    await deliverNow(org);
    expect((await keyEntry(key)).verdict).toMatchObject({ state: "ok", pay_url: null });
    expect((await keyEntry(key)).org_id).toBe(org);
  });

  it("names the pay link in the suspension events", async () => {
    const org = uniqueOrg("pay_events");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    clock.set(clock.now + GRACE);
    await runDurableObjectAlarm(orgStub(org));
    const payUrl = (await orgState(org)).evidence!.pay_url;
    const events = await receiver.events(org);
    expect(events.map((e) => [e.type, e.pay_url])).toEqual([
      ["org.overdue", payUrl],
      ["org.suspension_warning", payUrl],
      ["org.suspended", payUrl],
    ]);
  });

  it("never publishes a pay link that is not https", async () => {
    const org = uniqueOrg("http_link");
    await autumn.createCustomer(org);
    await autumn.addInvoice(org, { status: "open", total: 29.99, created_at: clock.now - 1_000 });
    const { customer } = await autumn.pastDue(org, { invoice: false, webhook: false });
    expect(customer).toBeTruthy();
    // The stand-in's hosted pages are https; rewrite the one Autumn would show into a javascript: link.
    const real = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      const response = await real(input, init);
      if (!String(input instanceof Request ? input.url : input).endsWith("/v1/customers.get")) return response;
      const body = (await response.json()) as { invoices?: { hosted_invoice_url: string | null }[] };
      for (const invoice of body.invoices ?? []) invoice.hosted_invoice_url = "javascript:alert(1)";
      return Response.json(body, { status: response.status, headers: response.headers });
    };
    try {
      await deliverNow(org);
    } finally {
      globalThis.fetch = real;
    }
    expect((await orgState(org)).evidence).toMatchObject({ pay_url: null });
    expect(await mirrorOf(org)).toMatchObject({ state: "overdue", pay_url: null });
  });

  it("waits for every write of a publication before the next one, so an older entry never lands last", async () => {
    const org = uniqueOrg("race");
    await autumn.createCustomer(org);
    const bindings = env as unknown as Record<string, unknown>;
    const kv = env.BILLING_STATE;
    const index = env.ORG_INDEX;
    let slowPuts = 1;
    let failingUpserts = 1;
    // The first mirror put is slow; the first index upsert fails at once (the old code gave up on the
    // publication while that put was still in flight, and the next publication raced it).
    bindings.BILLING_STATE = {
      get: kv.get.bind(kv),
      put: async (key: string, value: string) => {
        if (key === billingStateKey(org) && slowPuts-- > 0) await new Promise((resolve) => setTimeout(resolve, 300));
        return kv.put(key, value);
      },
    };
    bindings.ORG_INDEX = {
      getByName: (name: string) => {
        const stub = index.getByName(name);
        return { upsert: async (entry: { org_id: string }) => (entry.org_id === org && failingUpserts-- > 0 ? Promise.reject(new Error("index overloaded")) : stub.upsert(entry as never)) };
      },
    };
    try {
      await deliver((await autumn.pastDue(org, clock.now)).webhook);
      await autumn.pay(org, clock.now);
      await deliverNow(org);
      await new Promise((resolve) => setTimeout(resolve, 400));
    } finally {
      bindings.BILLING_STATE = kv;
      bindings.ORG_INDEX = index;
    }
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "ok", mirror: { in_sync: true } });
    expect(await mirrorOf(org)).toMatchObject({ state: "ok", version: state.version });
    expect(await alarmOf(org)).toBeNull();
  });
});

describe("an event the receiver never takes", () => {
  it("is set aside as a dead letter after 3 days, and the events after it go out", { timeout: 120_000 }, async () => {
    const org = uniqueOrg("dead_letter");
    await autumn.createCustomer(org);
    await receiver.down(org);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    const start = clock.now;
    // Retried by the alarm with backoff (at most 15 min apart); the org's later events wait behind it.
    let state = await orgState(org);
    for (let runs = 0; runs < 1_000 && state.dead_letters.length === 0; runs++) {
      clock.set((await alarmOf(org))!);
      await runDurableObjectAlarm(orgStub(org));
      state = await orgState(org);
    }
    expect(clock.now - start).toBeGreaterThanOrEqual(3 * DAY);
    expect(clock.now - start).toBeLessThan(3 * DAY + 16 * 60_000);
    expect(state.dead_letters.map((d) => d.event.type)).toEqual(["org.overdue"]);
    expect(state.dead_letters[0]!.attempts).toBeGreaterThan(10);
    // The receiver is back: the next events are no longer held back by the dead one.
    await receiver.up(org);
    for (let runs = 0; runs < 5 && (await receiver.events(org)).length < 2; runs++) {
      clock.set(Math.max(clock.now, (await alarmOf(org)) ?? clock.now));
      await runDurableObjectAlarm(orgStub(org));
    }
    expect((await receiver.events(org)).map((e) => e.type)).toContain("org.suspended");
  });
});
