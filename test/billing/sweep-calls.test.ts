import { afterEach, describe, expect, it } from "vitest";
import { PAGE_SIZE } from "../../src/billing/reconcile/sweeper.ts";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, deliver, orgState, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { deleteSweeperAlarm, reconcileNow } from "../support/sweep.ts";

/**
 * The sweep's cost formula (docs/scale.md, Reconciler), counted: a sweep over C customers of which D
 * disagree with Tollgate makes ceil(C / PAGE_SIZE) customers.list calls, the same number of index calls
 * plus two after the last page, one object call per disagreeing org, and per-customer Autumn reads
 * (those objects' own fresh reads) for disagreeing customers only. bench/scale/sweep.ts measures the
 * same formula at a million customers.
 */
const clock = fakeClock();
afterEach(async () => {
  await deleteAllAlarms();
  await deleteSweeperAlarm();
});

describe("what one sweep costs", () => {
  it("one list call and one index call a page, two index calls after, and one object call and one fresh read per disagreeing org only", { timeout: 120_000 }, async () => {
    // More than two pages of our own, 1 % past due and unknown to Tollgate (lost webhooks).
    const prefix = `cost-${crypto.randomUUID().slice(0, 6)}-`;
    const seeded = await autumn.seed({ count: 2_500, past_due: 25, prefix });
    // One org Tollgate holds overdue whose customer Autumn no longer has.
    const gone = uniqueOrg("cost_gone");
    await autumn.createCustomer(gone);
    await deliver((await autumn.pastDue(gone, clock.now)).webhook);
    await autumn.deleteCustomer(gone);
    const pastDue = new Set(seeded.past_due_ids);
    const agreeing = Array.from({ length: 2_500 }, (_, i) => `${prefix}${String(i).padStart(4, "0")}`).filter((id) => !pastDue.has(id));
    expect(agreeing).toHaveLength(2_475);
    const callsBefore = (await autumn.calls()).length;

    const sweep = await reconcileNow(500);
    expect(sweep).toMatchObject({ status: "finished", error_count: 0 });
    // Pages: every page full but the last.
    expect(sweep.customers_seen).toBeGreaterThanOrEqual(2_500);
    expect(sweep.pages).toBe(Math.ceil(sweep.customers_seen / PAGE_SIZE));
    expect(sweep.autumn_calls).toBe(sweep.pages);
    expect(sweep.index_calls).toBe(sweep.pages + 2);
    // One object call per org handed over; ours are among them (other files' customers share the stand-in).
    const handedOver = Object.values(sweep.orgs_handed_over).reduce((sum, n) => sum + n, 0);
    expect(sweep.object_calls).toBe(handedOver);
    expect(sweep.orgs_handed_over.unknown_past_due).toBeGreaterThanOrEqual(25);
    expect(sweep.orgs_handed_over.missing_from_autumn).toBeGreaterThanOrEqual(1);

    // Per-customer reads: each disagreeing org's object read it once (customers.get, and invoices.list as it never paid); none for the rest.
    const calls = (await autumn.calls()).slice(callsBefore);
    const named = (id: string) => calls.filter((call) => call.body?.customer_id === id).map((call) => call.path);
    for (const id of pastDue) expect(named(id), id).toEqual(["/v1/customers.get", "/v1/invoices.list"]);
    expect(named(gone)).toEqual(["/v1/customers.get"]);
    const agreeingSet = new Set(agreeing);
    expect(calls.filter((call) => agreeingSet.has(call.body?.customer_id ?? ""))).toEqual([]);
    for (const id of seeded.past_due_ids.slice(0, 3)) expect((await orgState(id)).state).toBe("overdue");
  });
});
