import { createExecutionContext, createScheduledController, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { SweepView } from "../../src/billing/reconcile/sweep-record.ts";
import worker from "../../src/billing/worker.ts";
import { autumn } from "../support/autumn.ts";
import { admin, deleteAllAlarms, deliver, MIN_NOTICE_MS, orgState, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";

const clock = fakeClock();

const DAY = 86_400_000;
const GRACE = 3 * DAY;

const sweeper = () => env.RECONCILER.getByName("sweeper");

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
  await runInDurableObject(sweeper(), (_instance, state) => state.storage.deleteAlarm());
});

/** Runs the sweeper's alarm (one page, or one retry) until the sweep is no longer running. */
async function driveSweep(limit = 100): Promise<SweepView> {
  for (let i = 0; i < limit; i++) {
    const status = (await sweeper().status())!;
    if (status.status !== "running") return status;
    await runDurableObjectAlarm(sweeper());
  }
  throw new Error(`the sweep was still running after ${limit} alarm runs`);
}

async function reconcileNow(): Promise<SweepView> {
  const response = await admin("/reconcile", { method: "POST" });
  expect(response.status).toBe(202);
  return driveSweep();
}

describe("the reconciliation sweep", () => {
  it("finds a past-due org whose webhook was lost, and leaves agreeing orgs alone", async () => {
    const lost = uniqueOrg("lost");
    await autumn.createCustomer(lost);
    await autumn.pastDue(lost, { at: clock.now - 10 * DAY, webhook: false });
    const known = uniqueOrg("known");
    await autumn.createCustomer(known);
    expect((await deliver((await autumn.pastDue(known, clock.now)).webhook)).status).toBe(200);
    const paying = uniqueOrg("paying");
    await autumn.createCustomer(paying);
    const readsBefore = { lost: (await autumn.calls(lost)).length, known: (await autumn.calls(known)).length, paying: (await autumn.calls(paying)).length };

    const sweep = await reconcileNow();
    expect(sweep).toMatchObject({ status: "finished", trigger: "admin", phase: "done", error_count: 0 });
    expect(sweep.pages).toBeGreaterThanOrEqual(1);
    expect(sweep.orgs_handed_over.unknown_past_due).toBeGreaterThanOrEqual(1);
    expect(sweep.autumn_calls).toBe(sweep.pages);

    // First seen now, ten days past due: overdue with the minimum notice, never suspended on sight.
    const state = await orgState(lost);
    expect(state).toMatchObject({ state: "overdue", reason: "in_grace_period", noticed_at: new Date(clock.now).toISOString(), suspend_at: new Date(clock.now + MIN_NOTICE_MS).toISOString() });
    expect(state.history[0]).toMatchObject({ from: "ok", to: "overdue", source: "reconcile", note: "unknown_past_due" });
    // Handed over once: one fresh read (customers.get, then invoices.list as it never paid), not again as "missing".
    expect((await autumn.calls(lost)).slice(readsBefore.lost).map((c) => c.path)).toEqual(["/v1/customers.get", "/v1/invoices.list"]);
    expect(sweep.orgs_handed_over.missing_from_autumn).toBe(0);
    // Agreeing customers cost no per-customer call and no object call.
    expect((await autumn.calls(known)).length).toBe(readsBefore.known);
    expect((await autumn.calls(paying)).length).toBe(readsBefore.paying);
    expect((await orgState(known)).history).toHaveLength(1);
  });

  it("restores a suspended org whose payment webhook was lost", async () => {
    const org = uniqueOrg("paid_quietly");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now - GRACE)).webhook);
    await sitOutMinimumNotice(org, clock);
    expect((await orgState(org)).state).toBe("suspended");
    await autumn.pay(org, { webhook: false });

    const sweep = await reconcileNow();
    expect(sweep.orgs_handed_over.no_longer_past_due).toBeGreaterThanOrEqual(1);
    const state = await orgState(org);
    expect(state.state).toBe("ok");
    expect(state.history[0]).toMatchObject({ from: "suspended", to: "ok", source: "reconcile", note: "no_longer_past_due" });
  });

  it("hands over an org held as overdue that Autumn no longer lists", async () => {
    const org = uniqueOrg("deleted");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    await autumn.deleteCustomer(org);

    const sweep = await reconcileNow();
    expect(sweep.orgs_handed_over.missing_from_autumn).toBeGreaterThanOrEqual(1);
    expect(await orgState(org)).toMatchObject({ state: "ok", history: [{ from: "overdue", to: "ok", source: "reconcile", note: "missing_from_autumn" }, {}] });
  });

  it("resumes after a page fails mid-way, waiting as long as Retry-After asks", async () => {
    await autumn.seed({ count: 1_200, prefix: `resume-${crypto.randomUUID().slice(0, 6)}-` });
    const late = uniqueOrg("late_page");
    await autumn.createCustomer(late, { created_at: 0 }); // oldest: on the last page
    await autumn.pastDue(late, { webhook: false });
    // Page 1 goes through, page 2 answers 503 with Retry-After: 9 once.
    await autumn.fault({ mode: "http_503", retry_after: 9, paths: ["/v1/customers.list"], skip: 1, count: 1 });

    expect((await admin("/reconcile", { method: "POST" })).status).toBe(202);
    await runDurableObjectAlarm(sweeper());
    expect(await sweeper().status()).toMatchObject({ status: "running", pages: 1, page_attempts: 0 });
    await runDurableObjectAlarm(sweeper());
    const failed = (await sweeper().status())!;
    expect(failed).toMatchObject({ status: "running", pages: 1, page_attempts: 1, error_count: 1 });
    expect(failed.errors[0]).toMatchObject({ page: 2, message: expect.stringContaining("503") });
    expect(await runInDurableObject(sweeper(), (_i, state) => state.storage.getAlarm())).toBe(clock.now + 9_000);

    const done = await driveSweep();
    expect(done).toMatchObject({ status: "finished", error_count: 1, page_attempts: 0 });
    expect(done.pages).toBeGreaterThanOrEqual(2);
    expect(done.customers_seen).toBeGreaterThanOrEqual(1_201);
    expect((await orgState(late)).state).toBe("overdue");
  });

  it("runs one sweep at a time: concurrent starts get the same sweep", async () => {
    const [a, b] = await Promise.all([admin("/reconcile", { method: "POST" }), admin("/reconcile", { method: "POST" })]);
    expect([a.status, b.status].sort()).toEqual([200, 202]);
    const [first, second] = [(await a.json()) as SweepView & { started: boolean }, (await b.json()) as SweepView & { started: boolean }];
    expect(first.id).toBe(second.id);
    expect([first.started, second.started].sort()).toEqual([false, true]);
    const done = await driveSweep();
    expect(done.id).toBe(first.id);
    const status = await admin("/reconcile");
    expect(await status.json()).toMatchObject({ id: first.id, status: "finished" });
  });

  it("is started by the Cron Trigger", async () => {
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "*/30 * * * *", scheduledTime: clock.now }), env, ctx);
    await waitOnExecutionContext(ctx);
    expect(await sweeper().status()).toMatchObject({ trigger: "cron", status: "running" });
    expect(await driveSweep()).toMatchObject({ trigger: "cron", status: "finished" });
  });

  it("hands a page full of disagreements over in chunks, saving progress between alarm runs", { timeout: 120_000 }, async () => {
    const seeded = await autumn.seed({ count: 60, past_due: 60, prefix: `chunk-${crypto.randomUUID().slice(0, 6)}-` });
    expect((await admin("/reconcile", { method: "POST" })).status).toBe(202);
    // Run pages until ours is read: its 60 disagreements cannot all go in one run.
    let status = (await sweeper().status())!;
    for (let i = 0; i < 50 && status.pending_hand_overs === 0 && status.status === "running"; i++) {
      await runDurableObjectAlarm(sweeper());
      status = (await sweeper().status())!;
    }
    expect(status.pending_hand_overs).toBeGreaterThanOrEqual(60);
    await runDurableObjectAlarm(sweeper());
    const afterOneChunk = (await sweeper().status())!;
    expect(status.pending_hand_overs - afterOneChunk.pending_hand_overs).toBe(50);
    const done = await driveSweep();
    expect(done).toMatchObject({ status: "finished", pending_hand_overs: 0 });
    for (const id of seeded.past_due_ids.slice(0, 3)) expect((await orgState(id)).state).toBe("overdue");
  });

  it("skips a customer Autumn sends malformed, reports it, and reads the rest of the page", async () => {
    const org = uniqueOrg("beside_bad");
    await autumn.createCustomer(org);
    await autumn.pastDue(org, { webhook: false });
    const real = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      const response = await real(input, init);
      if (!String(input instanceof Request ? input.url : input).endsWith("/v1/customers.list")) return response;
      const body = (await response.json()) as { list: unknown[]; next_cursor: string | null };
      body.list.unshift({ id: "broken_customer", subscriptions: "not a list" });
      return Response.json(body, { status: response.status });
    };
    let sweep: SweepView;
    try {
      sweep = await reconcileNow();
    } finally {
      globalThis.fetch = real;
    }
    expect(sweep).toMatchObject({ status: "finished" });
    expect(sweep.error_count).toBeGreaterThanOrEqual(1);
    expect(sweep.errors.some((e) => e.message.includes("customer broken_customer is unreadable"))).toBe(true);
    expect((await orgState(org)).state).toBe("overdue");
  });

  it("fails a sweep whose page keeps failing, and the next start begins afresh", async () => {
    await autumn.fault({ mode: "http_500", paths: ["/v1/customers.list"], count: 50 });
    const failed = await reconcileNow();
    expect(failed).toMatchObject({ status: "failed", pages: 0, page_attempts: 12, error_count: 12 });
    await autumn.clearFaults();
    expect(await reconcileNow()).toMatchObject({ status: "finished", error_count: 0 });
  });
});
