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
    // The first 12 retries and the last hour run at their alarms; the days between are skipped (one
    // late alarm, as after an outage of the runtime), which spares some 280 runs and proves the same.
    let state = await orgState(org);
    const runAlarm = async (at?: number) => {
      clock.set(at ?? (await alarmOf(org))!);
      await runDurableObjectAlarm(orgStub(org));
      state = await orgState(org);
    };
    for (let runs = 0; runs < 12; runs++) await runAlarm();
    expect(state.dead_letters).toEqual([]);
    await runAlarm(start + 3 * DAY - 60 * 60_000);
    expect(state.dead_letters).toEqual([]);
    for (let runs = 0; runs < 100 && state.dead_letters.length === 0; runs++) await runAlarm();
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

describe("ingest keys and publications", () => {
  it("a key revoked while a publication is in flight stays revoked", async () => {
    const org = uniqueOrg("revoke_race");
    await autumn.createCustomer(org);
    const key = await mintKey(org);
    const keyId = (await keyEntry(key)).key_id;
    const bindings = env as unknown as Record<string, unknown>;
    const keys = env.INGEST_KEYS;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // The publication's key write is slow: the revocation happens while it is in flight.
    bindings.INGEST_KEYS = {
      get: keys.get.bind(keys),
      delete: keys.delete.bind(keys),
      put: async (name: string, value: string) => {
        if (JSON.parse(value).verdict?.state === "overdue") await held;
        return keys.put(name, value);
      },
    };
    try {
      const webhook = deliver((await autumn.pastDue(org, clock.now)).webhook);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const revoked = admin(`/orgs/${org}/ingest-keys/${keyId}`, { method: "DELETE" });
      await new Promise((resolve) => setTimeout(resolve, 100));
      release();
      expect((await revoked).status).toBe(200);
      await webhook;
    } finally {
      bindings.INGEST_KEYS = keys;
    }
    expect(await env.INGEST_KEYS.get(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key)))).toBeNull();
  });

  it("revoking a revoked key deletes its entry again (idempotent), an unknown key is 404", async () => {
    const org = uniqueOrg("revoke_twice");
    await autumn.createCustomer(org);
    const key = await mintKey(org);
    const keyId = (await keyEntry(key)).key_id;
    expect((await admin(`/orgs/${org}/ingest-keys/${keyId}`, { method: "DELETE" })).status).toBe(200);
    expect((await admin(`/orgs/${org}/ingest-keys/${keyId}`, { method: "DELETE" })).status).toBe(200);
    expect((await admin(`/orgs/${org}/ingest-keys/ik_0000000000000000`, { method: "DELETE" })).status).toBe(404);
  });

  it("refuses more than 20 active keys per org, so a publication stays a bounded number of writes", async () => {
    const org = uniqueOrg("many_keys");
    for (let i = 0; i < 20; i++) await mintKey(org);
    const response = await admin(`/orgs/${org}/ingest-keys`, { method: "POST" });
    expect(response.status).toBe(409);
    expect(await response.json()).toMatchObject({ error: "too_many_keys" });
  });
});

describe("events kept while notifications were off", () => {
  it("are not given up on their first attempt once notifications are back", async () => {
    const org = uniqueOrg("kept_events");
    await autumn.createCustomer(org);
    const bindings = env as unknown as Record<string, string>;
    const url = bindings.NOTIFY_URL!;
    await receiver.down(org);
    try {
      await deliver((await autumn.pastDue(org, clock.now)).webhook);
      bindings.NOTIFY_URL = "";
      clock.set(clock.now + 4 * DAY);
      bindings.NOTIFY_URL = url;
      await runDurableObjectAlarm(orgStub(org));
      expect((await orgState(org)).dead_letters).toEqual([]);
      expect((await receiver.attempts(org)).length).toBeGreaterThanOrEqual(2);
    } finally {
      bindings.NOTIFY_URL = url;
      await receiver.up(org);
    }
  });
});

describe("a malformed NOTIFY_SECRET", () => {
  it("turns notifications off instead of spinning the alarm on the queued event", async () => {
    const org = uniqueOrg("bad_secret");
    await autumn.createCustomer(org);
    const bindings = env as unknown as Record<string, string>;
    const secret = bindings.NOTIFY_SECRET!;
    bindings.NOTIFY_SECRET = "none";
    try {
      await deliver((await autumn.pastDue(org, clock.now)).webhook);
      let runs = 0;
      while (runs < 20 && (await alarmOf(org))! <= clock.now) {
        await runDurableObjectAlarm(orgStub(org));
        runs++;
      }
      expect(runs).toBe(0);
      expect(await alarmOf(org)).toBe(clock.now + 60_000);
    } finally {
      bindings.NOTIFY_SECRET = secret;
    }
  });
});
