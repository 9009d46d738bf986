import { runDurableObjectAlarm } from "cloudflare:test";
import { fakeUrl } from "../support/fake-urls.ts";
import { afterEach, describe, expect, it } from "vitest";
import { AUTUMN_API_VERSION, createAutumnClient } from "../../src/billing/autumn/client.ts";
import { isAutumnTime } from "../../src/billing/autumn/answers.ts";
import { readCustomers } from "../../src/billing/reconcile/compare.ts";
import { autumn } from "../support/autumn.ts";
import { billingUpdated, deleteAllAlarms, deliver, orgState, orgStub, signWebhook, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { prng, type Rng } from "../support/prng.ts";
import { TEST_AUTUMN_SECRET_KEY } from "../support/secrets.ts";

/**
 * Seeded fuzzing of Autumn's answers, as fuzz.test.ts fuzzes requests: the stand-in answers
 * customers.get, invoices.list and balances.track for one org with a mutated copy of its real
 * answer (times out of range, numbers that are not finite or huge, wrong types, missing and extra
 * fields), served through its `raw_body` fault, while webhooks, usage reports and alarms drive a
 * real OrgBilling object. The webhook may answer only 200 or the documented retryable 503
 * `temporarily_unavailable`; the object never throws (its view stays readable); and once Autumn
 * answers well again, the org is decided: overdue, then suspended at its deadline.
 */
const clock = fakeClock();
afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

const SEED = 0x5eed_a11;
const ROUNDS = 15;
const FUZZ_TIMEOUT_MS = 180_000;
const DAY = 86_400_000;
const REPORT_INTERVAL_MS = 10_000;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A number JSON can carry but JavaScript cannot write: replaced in the serialized text. */
const raw = (token: string) => `@@raw@@${token}@@`;
const OUT_OF_RANGE_TIMES = [1e16, -1e16, 8.64e15 + 1, 9_007_199_254_740_991, 946_684_799_999, 7_258_118_400_001, 0, -1, 1.5];
const ODD_NUMBERS: Json[] = [raw("1e400"), raw("-1e400"), 1e308, -1e308, raw("-0"), 5e-324, 2 ** 53 + 1, "NaN", "Infinity", "1e16"];
const WRONG_TYPES: Json[] = ["x", "", 1, -1, true, false, null, {}, [], [1], { a: 1 }];

type Slot = { parent: { [key: string]: Json } | Json[]; key: string | number; value: Json };
function slots(value: Json, out: Slot[] = []): Slot[] {
  if (Array.isArray(value)) value.forEach((child, key) => (out.push({ parent: value, key, value: child }), slots(child, out)));
  else if (value !== null && typeof value === "object") for (const [key, child] of Object.entries(value)) out.push({ parent: value, key, value: child }), slots(child, out);
  return out;
}
const set = (slot: Slot, value: Json) => ((slot.parent as Record<string | number, Json>)[slot.key] = value);

/** 1 to 3 mutations of a deep copy of `answer`, described for the failure message. */
function mutate(rng: Rng, answer: Json): { text: string; done: string[] } {
  const copy = JSON.parse(JSON.stringify(answer)) as Json;
  const done: string[] = [];
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const all = slots(copy);
    if (all.length === 0) break;
    const times = all.filter((s) => typeof s.key === "string" && s.key.endsWith("_at") && typeof s.value === "number");
    const numbers = all.filter((s) => typeof s.value === "number");
    const kind = rng.pick(["time", "time", "number", "type", "missing", "extra"] as const);
    if (kind === "time" && times.length > 0) {
      const slot = rng.pick(times);
      const value = rng.chance(0.2) ? rng.pick([raw("1e400"), raw("-1e400")]) : rng.pick(OUT_OF_RANGE_TIMES);
      set(slot, value);
      done.push(`${slot.key}=${value}`);
    } else if ((kind === "number" || kind === "time") && numbers.length > 0) {
      const slot = rng.pick(numbers);
      set(slot, rng.pick(ODD_NUMBERS));
      done.push(`${slot.key}=${JSON.stringify(slot.parent[slot.key as never])}`);
    } else if (kind === "type" || kind === "time" || kind === "number") {
      const slot = rng.pick(all);
      set(slot, rng.pick(WRONG_TYPES));
      done.push(`${slot.key}:type`);
    } else if (kind === "missing") {
      const objects = all.filter((s) => !Array.isArray(s.parent));
      if (objects.length === 0) continue;
      const slot = rng.pick(objects);
      delete (slot.parent as Record<string, Json>)[slot.key as string];
      done.push(`-${slot.key}`);
    } else {
      const objects = [copy, ...all.map((s) => s.value)].filter((v): v is { [key: string]: Json } => v !== null && typeof v === "object" && !Array.isArray(v));
      if (objects.length === 0) continue;
      const target = rng.pick(objects);
      const key = rng.pick(["zz_extra", "next_reset_at", "created_at", "past_due", "balance", "__proto__"]);
      target[key] = rng.pick([...WRONG_TYPES, ...ODD_NUMBERS, ...OUT_OF_RANGE_TIMES]);
      done.push(`+${key}`);
    }
  }
  const text = JSON.stringify(copy).replace(/"@@raw@@([^@]*)@@"/g, "$1");
  return { text, done };
}

/** A real Autumn call to the stand-in (not counted against the org: no fault is installed yet). */
async function answer(path: string, body: unknown): Promise<Json> {
  const response = await fetch(`${fakeUrl("autumnUrl")}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TEST_AUTUMN_SECRET_KEY}`, "x-api-version": AUTUMN_API_VERSION, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as Json;
}

/** Webhook answers that are allowed: 200, or the documented retryable 503. */
async function expectAccepted(response: Response, note: string): Promise<void> {
  if (response.status === 200) return;
  const body = (await response.json().catch(() => null)) as { error?: string } | null;
  expect({ status: response.status, error: body?.error, note }).toEqual({ status: 503, error: "temporarily_unavailable", note });
}

describe("Autumn's answers, fuzzed", () => {
  it(
    `${ROUNDS} seeded rounds: mutated customers.get, invoices.list and balances.track never make a 5xx, a throw or an org that cannot be decided`,
    async () => {
      const rng = prng(SEED);
      const served: Record<string, number> = {};
      for (let round = 0; round < ROUNDS; round++) {
        const org = uniqueOrg(`afuzz${round}`);
        await autumn.createCustomer(org, { webhook: false });
        await autumn.setAllowance(org, "spans", { granted: 100, usage: 100, next_reset_at: clock.now + 30 * DAY });
        await autumn.setAllowance(org, "log_records", { granted: 1_000, usage: 10, reset_interval_ms: 30 * DAY });
        await autumn.addInvoice(org, { status: "paid", total: 0, created_at: clock.now - 20 * DAY }, { webhook: false });
        await autumn.pastDue(org, { at: clock.now - 10 * DAY, webhook: false });

        const customer = (await answer("/v1/customers.get", { customer_id: org, expand: ["invoices"] })) as { balances: Record<string, Json> };
        const answers: Record<string, Json> = {
          "/v1/customers.get": customer,
          "/v1/invoices.list": await answer("/v1/invoices.list", { customer_id: org, status: ["paid"], limit: 100, start_cursor: "" }),
          "/v1/balances.track": { customer_id: org, value: 5, balance: customer.balances.spans ?? null, balances: { spans: customer.balances.spans ?? null } },
        };
        const path = rng.pick(Object.keys(answers));
        const { text, done } = mutate(rng, answers[path]!);
        const note = `round ${round} (seed ${SEED}): ${path} ${done.join(", ")} -> ${text.slice(0, 300)}`;
        served[path] = (served[path] ?? 0) + 1;
        await autumn.fault({ mode: "raw_body", body: text, paths: [path], customer_id: org, count: 1 + rng.int(3) });

        // A webhook makes the object read Autumn (customers.get, then invoices.list: no paid invoice with money).
        await expectAccepted(await deliver(signWebhook(billingUpdated(org))), note);
        // Usage makes it report (balances.track); alarms retry whatever failed.
        await orgStub(org).recordUsage([{ id: `m_${org}`, counts: { traces: 5 }, first_at: clock.now, last_at: clock.now }]);
        for (let i = 0; i < 3; i++) {
          clock.set(clock.now + REPORT_INTERVAL_MS);
          await runDurableObjectAlarm(orgStub(org));
        }
        await expectAccepted(await deliver(signWebhook(billingUpdated(org))), note);
        const during = await orgState(org);
        expect(["ok", "overdue"], note).toContain(during.state);

        // Autumn answers well again: the org is decided, and suspended at its deadline.
        await autumn.clearFaults();
        expect((await deliver(signWebhook(billingUpdated(org)))).status, note).toBe(200);
        const overdue = await orgState(org);
        expect(overdue, note).toMatchObject({ state: "overdue", reason: "in_grace_period", last_sync: { ok: true } });
        clock.set(Date.parse(overdue.suspend_at!));
        await runDurableObjectAlarm(orgStub(org));
        expect((await orgState(org)).state, note).toBe("suspended");
      }
      // Every kind of answer was mutated at least once.
      expect(Object.keys(served).sort()).toEqual(["/v1/balances.track", "/v1/customers.get", "/v1/invoices.list"]);
    },
    FUZZ_TIMEOUT_MS,
  );

  it("customers.list pages, mutated 200 times: the client and the sweep's reader never throw, and every customer read has its times in range", async () => {
    const rng = prng(SEED + 1);
    const org = uniqueOrg("afuzz_list");
    await autumn.createCustomer(org, { webhook: false });
    await autumn.setAllowance(org, "spans", { granted: 100, usage: 100, next_reset_at: clock.now + 30 * DAY });
    await autumn.pastDue(org, { at: clock.now - 10 * DAY, webhook: false });
    const page = (await answer("/v1/customers.list", { limit: 3 })) as { list: Json[]; next_cursor: string | null };
    page.list = [(await answer("/v1/customers.get", { customer_id: org })) as Json, ...page.list];
    const client = createAutumnClient({ baseUrl: fakeUrl("autumnUrl"), secretKey: TEST_AUTUMN_SECRET_KEY, timeoutMs: 5_000 });
    const outcomes = { read: 0, unreadable_page: 0, unreadable_customers: 0 };
    for (let round = 0; round < 200; round++) {
      const { text, done } = mutate(rng, page);
      // One answer only, and only for this call: no other test's sweep is served a mutated page.
      await autumn.fault({ mode: "raw_body", body: text, paths: ["/v1/customers.list"], count: 1 });
      const result = await client.listCustomers(`fuzz-${round}`, 10);
      if (!result.ok) {
        expect(result.failure.kind, done.join(", ")).toBe("invalid_response");
        outcomes.unreadable_page += 1;
        continue;
      }
      const { customers, unreadable } = readCustomers(result.value.list);
      outcomes.read += customers.length;
      outcomes.unreadable_customers += unreadable.length;
      for (const customer of customers) {
        for (const balance of Object.values(customer.balances ?? {})) expect(balance.next_reset_at === null || isAutumnTime(balance.next_reset_at), done.join(", ")).toBe(true);
      }
    }
    expect(outcomes.read).toBeGreaterThan(0);
    expect(outcomes.unreadable_page).toBeGreaterThan(0);
  });
});
