import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, deliver, deliverNow, MIN_NOTICE_MS, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";

/**
 * Autumn's answers at the boundary: a value out of range in one field of one answer (a time
 * `new Date(x).toISOString()` refuses, a number that is not finite) is treated as absent, logged
 * once as `autumn_value_out_of_range`, and never stops the org's decisions.
 */
const clock = fakeClock();
const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
  vi.restoreAllMocks();
});

/** The `autumn_value_out_of_range` lines logged while `run` ran. */
async function outOfRangeLogs(run: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const keep = (entry: unknown) => {
    if (typeof entry === "object" && entry !== null && (entry as { event?: unknown }).event === "autumn_value_out_of_range") lines.push(entry as Record<string, unknown>);
  };
  for (const level of ["log", "warn", "error"] as const) {
    const original = console[level].bind(console);
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      keep(args[0]);
      original(...args);
    });
  }
  await run();
  return lines;
}

describe("a time out of range from Autumn (defect 11)", () => {
  it("a used-up balance whose next_reset_at is 1e16 neither fails the webhook nor keeps the org from being suspended at its deadline", async () => {
    const org = uniqueOrg("reset_1e16");
    await autumn.createCustomer(org);
    await autumn.setAllowance(org, "spans", { granted: 100, usage: 100, next_reset_at: 1e16 });
    const logs = await outOfRangeLogs(async () => {
      const response = await deliver((await autumn.pastDue(org, clock.now - 10 * DAY)).webhook);
      expect(response.status).toBe(200);
    });
    expect(logs).toContainEqual(expect.objectContaining({ event: "autumn_value_out_of_range", path: "/v1/customers.get", org_id: org, fields: ["balance.next_reset_at"] }));
    const deadline = clock.now + MIN_NOTICE_MS;
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "overdue", suspend_at: iso(deadline), last_sync: { ok: true } });
    // The limit is still in force (the balance is used up), with no reset: the bad time is absent.
    expect(state.usage?.features.find((f) => f.feature_id === "spans")?.limit).toMatchObject({ reset_at: null, in_force: true });
    clock.set(deadline);
    await runDurableObjectAlarm(orgStub(org));
    expect(await orgState(org)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: iso(deadline) });
  });

  it("an open invoice created at 1e16 does not start the clock (now does); a paid invoice created at -1e16 still proves payment", async () => {
    const org = uniqueOrg("inv_1e16");
    await autumn.createCustomer(org);
    await autumn.addInvoice(org, { status: "open", total: 29.99, created_at: 1e16 });
    await autumn.pastDue(org, { invoice: false });
    const seen = clock.now;
    expect((await deliverNow(org)).status).toBe(200);
    expect(await orgState(org)).toMatchObject({ state: "overdue", anchor: iso(seen), last_sync: { ok: true } });

    const paying = uniqueOrg("paid_neg");
    await autumn.createCustomer(paying);
    await autumn.addInvoice(paying, { status: "paid", total: 29.99, created_at: -1e16 });
    await autumn.pastDue(paying, clock.now - 10 * DAY);
    expect((await deliverNow(paying)).status).toBe(200);
    const state = await orgState(paying);
    expect(state).toMatchObject({ state: "overdue", reason: "lapsed_customer", suspend_at: null, last_sync: { ok: true } });
    expect(state.evidence?.paid_invoice).toMatchObject({ total: 29.99, created_at: null });
  });
});
