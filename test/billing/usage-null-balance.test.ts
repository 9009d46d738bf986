import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, mirrorOf, orgStub, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";

/**
 * Promise: a track answer whose balance cannot be read is not taken for room under a held limit.
 * Found by a reviewer (issue 18): before the fix, reportOutcome took a null balance (what the schema makes
 * of one that does not parse, or Autumn's `balance: null`) for "not exhausted", so every such report
 * cost a customers.get (and invoices.list pages while past due).
 */

const REPORT_INTERVAL_MS = 10_000;
const clock = fakeClock();

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

async function report(org: string): Promise<void> {
  clock.set(clock.now + REPORT_INTERVAL_MS);
  await runDurableObjectAlarm(orgStub(org));
}

describe("an unreadable track balance is not taken for room", () => {
  it("a held limit whose report answer carries an unreadable balance (usage 1e400) reads nothing more", async () => {
    const org = uniqueOrg("brknullbal");
    await autumn.createCustomer(org, { webhook: false });
    const reads = async () => (await autumn.calls(org)).filter((c) => c.path === "/v1/customers.get" || c.path === "/v1/invoices.list").length;
    const resetAt = clock.now + 3 * 86_400_000;
    await autumn.setAllowance(org, "spans", { granted: 100, next_reset_at: resetAt });
    let n = 0;
    const msg = (traces: number) => ({ id: `m_${++n}_${org}`, counts: { traces }, first_at: clock.now, last_at: clock.now });
    await orgStub(org).recordUsage([msg(100)]);
    await report(org);
    expect((await mirrorOf(org))!.limits.map((l) => l.feature_id)).toEqual(["spans"]);
    const before = await reads();

    const body = `{"customer_id":"${org}","value":5,"balance":{"feature_id":"spans","granted":100,"remaining":0,"usage":1e400,"unlimited":false,"overage_allowed":false,"next_reset_at":${resetAt}}}`;
    await autumn.fault({ mode: "raw_body", body, paths: ["/v1/balances.track"], customer_id: org, count: 1 });
    await orgStub(org).recordUsage([msg(5)]);
    await report(org);
    expect((await autumn.calls(org)).filter((c) => c.path === "/v1/balances.track").length).toBeGreaterThanOrEqual(2);
    expect(await reads()).toBe(before);
  });
});
