import { createExecutionContext, createScheduledController, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { SweepView } from "../../src/billing/reconcile/sweep-record.ts";
import worker from "../../src/billing/worker.ts";
import { autumn } from "../support/autumn.ts";
import { admin, deleteAllAlarms, deliver, deliverNow, MIN_NOTICE_MS, mirrorOf, orgState, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { deleteSweeperAlarm, driveSweep, reconcileNow, sweeper } from "../support/sweep.ts";

const clock = fakeClock();

const DAY = 86_400_000;
const GRACE = 3 * DAY;

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
  await deleteSweeperAlarm();
});

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

  it("hands over an org held as overdue that Autumn no longer lists; absence from Autumn keeps its state and flags it", async () => {
    const org = uniqueOrg("deleted");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    await autumn.deleteCustomer(org);

    const sweep = await reconcileNow();
    expect(sweep.orgs_handed_over.missing_from_autumn).toBeGreaterThanOrEqual(1);
    const state = await orgState(org);
    expect(state).toMatchObject({ state: "overdue", autumn_customer_unknown: true, consecutive_failures: 0, history: [{ from: "ok", to: "overdue" }] });
    // Not hammered: no backoff retry (the next read is the webhook's 1-minute follow-up, then the periodic resync).
    expect(Date.parse(state.next_check_at!)).toBeGreaterThanOrEqual(clock.now + 60_000);
    // Handed over once: the next sweep knows it is missing and leaves it to its object's resync.
    const again = await reconcileNow();
    expect(again.orgs_handed_over.missing_from_autumn).toBe(0);
    expect(again.still_missing).toBeGreaterThanOrEqual(1);
  });

  it("a suspended org whose customer was deleted in Autumn stays suspended after a sweep and a read", async () => {
    const org = uniqueOrg("deleted_suspended");
    await autumn.createCustomer(org);
    await deliver((await autumn.pastDue(org, clock.now - GRACE)).webhook);
    await sitOutMinimumNotice(org, clock);
    expect((await orgState(org)).state).toBe("suspended");
    await autumn.deleteCustomer(org);

    await reconcileNow();
    const resynced = (await (await admin(`/orgs/${org}/resync`, { method: "POST" })).json()) as Awaited<ReturnType<typeof orgState>>;
    expect(resynced).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid", autumn_customer_unknown: true });
    expect(resynced.history.filter((h) => h.kind === "transition").map((h) => h.to)).toEqual(["suspended", "overdue"]);
  });

  it("does not take an org that turned overdue after its page was read for missing from Autumn", async () => {
    await autumn.seed({ count: 1_100, prefix: `after-${crypto.randomUUID().slice(0, 6)}-` });
    const org = uniqueOrg("late_overdue");
    await autumn.createCustomer(org, { created_at: Date.now() + 400 * DAY }); // newest: on the first page
    expect((await admin("/reconcile", { method: "POST" })).status).toBe(202);
    await runDurableObjectAlarm(sweeper()); // page 1, where the org is still in good standing
    expect(await sweeper().status()).toMatchObject({ status: "running", pages: 1 });
    clock.set(clock.now + 1_000);
    await deliver((await autumn.pastDue(org, clock.now)).webhook);
    const readsBefore = (await autumn.calls(org)).length;
    const done = await driveSweep();
    expect(done.status).toBe("finished");
    // Not handed over as missing_from_autumn: no read for it during the rest of the sweep, no note in its history.
    expect((await autumn.calls(org)).length).toBe(readsBefore);
    expect((await orgState(org)).history.filter((h) => h.source === "reconcile")).toEqual([]);
  });

  it("holds a sweep that would restore too many orgs, until an operator confirms it", { timeout: 60_000 }, async () => {
    const orgs = Array.from({ length: 8 }, (_, i) => uniqueOrg(`mass_${i}`));
    for (const org of orgs) {
      await autumn.createCustomer(org);
      await deliver((await autumn.pastDue(org, clock.now)).webhook);
      await autumn.pay(org, { webhook: false });
    }
    const held = await reconcileNow();
    expect(held).toMatchObject({ status: "held", would_restore: { no_longer_past_due: 8 } });
    expect(held.would_restore_sample.length).toBeGreaterThanOrEqual(1);
    for (const org of orgs) expect((await orgState(org)).state).toBe("overdue");

    expect((await admin(`/reconcile/not_a_sweep/confirm`, { method: "POST" })).status).toBe(404);
    const confirmed = await admin(`/reconcile/${held.id}/confirm`, { method: "POST" });
    expect(confirmed.status).toBe(202);
    const done = await driveSweep();
    expect(done).toMatchObject({ id: held.id, status: "finished", confirmed: true });
    expect(done.orgs_handed_over.no_longer_past_due).toBe(8);
    for (const org of orgs) expect((await orgState(org)).state).toBe("ok");
  });

  it("a held sweep is discarded by the next one", { timeout: 60_000 }, async () => {
    const orgs = Array.from({ length: 7 }, (_, i) => uniqueOrg(`discard_${i}`));
    for (const org of orgs) {
      await autumn.createCustomer(org);
      await deliver((await autumn.pastDue(org, clock.now)).webhook);
      await autumn.deleteCustomer(org);
    }
    const held = await reconcileNow();
    expect(held).toMatchObject({ status: "held", would_restore: { missing_from_autumn: 7 } });
    const next = (await (await admin("/reconcile", { method: "POST" })).json()) as SweepView;
    expect(next.id).not.toBe(held.id);
    expect((await sweeper().recent(2)).map((s) => s.status)).toEqual(["running", "discarded"]);
    expect((await admin(`/reconcile/${held.id}/confirm`, { method: "POST" })).status).toBe(409);
    // The new sweep finds the same and is held too; confirmed, it hands them over (they stay overdue: Autumn does not know them).
    const again = await driveSweep();
    expect(again).toMatchObject({ status: "held", would_restore: { missing_from_autumn: 7 } });
    expect((await admin(`/reconcile/${again.id}/confirm`, { method: "POST" })).status).toBe(202);
    expect(await driveSweep()).toMatchObject({ status: "finished", orgs_handed_over: { missing_from_autumn: 7 } });
    for (const org of orgs) expect(await orgState(org)).toMatchObject({ state: "overdue", autumn_customer_unknown: true });
  });

  it("lifts a plan limit whose upgrade webhook was lost", async () => {
    const org = uniqueOrg("limit_lost");
    await autumn.createCustomer(org, { webhook: false });
    await autumn.setAllowance(org, "spans", { granted: 10, next_reset_at: null });
    await autumn.track(org, "spans", { value: 10 });
    await deliverNow(org);
    expect((await mirrorOf(org))!.limits).toMatchObject([{ feature_id: "spans" }]);
    await autumn.setAllowance(org, "spans", { granted: 1_000 }, { webhook: false });

    const sweep = await reconcileNow();
    expect(sweep.orgs_handed_over.limit_lifted).toBeGreaterThanOrEqual(1);
    expect((await mirrorOf(org))!.limits).toEqual([]);
    expect((await orgState(org)).history[0]).toMatchObject({ kind: "limit_cleared", source: "reconcile", note: "limit_lifted" });
  });

  it("finds a plan limit Tollgate does not hold", async () => {
    const org = uniqueOrg("limit_unseen");
    await autumn.createCustomer(org, { webhook: false });
    await autumn.setAllowance(org, "log_records", { granted: 10, next_reset_at: null });
    await autumn.track(org, "log_records", { value: 10 });

    const sweep = await reconcileNow();
    expect(sweep.orgs_handed_over.limit_reached).toBeGreaterThanOrEqual(1);
    expect((await mirrorOf(org))!.limits).toMatchObject([{ feature_id: "log_records" }]);
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
