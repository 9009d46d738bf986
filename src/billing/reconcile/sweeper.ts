import { DurableObject } from "cloudflare:workers";
import { log, logError, logWarn } from "../../shared/log.ts";
import { createAutumnClient } from "../autumn/client.ts";
import { autumnSettings, reconcileMaxRestoreShare, settingOrError, ConfigError, usageSettings } from "../config.ts";
import { orgIndex } from "../index/object.ts";
import { orgBilling } from "../org/object.ts";
import { retryDelay } from "../org/record.ts";
import { meteredFeatures } from "../autumn/answers.ts";
import { disagreements, HandOver, missingFromListing, readCustomers, RESTORING, type Held } from "./compare.ts";
import { fanOut } from "../../shared/fan-out.ts";
import { newSweep, SAMPLE_LIMIT, SweepRecord, sweepView, withErrors, type SweepView } from "./sweep-record.ts";

/** customers.list pages of the maximum the budget allows: 20,000 customers are 20 Autumn calls. */
export const PAGE_SIZE = 1_000;
/** Objects asked at once: enough to finish a page quickly, few enough not to crowd Autumn's per-customer limits. */
export const HAND_OVER_CONCURRENCY = 8;
/** A page that fails this many times in a row (about an hour: backoff 5 s, 10 s, ... capped at 15 min) fails the sweep; the next cron starts afresh. */
export const MAX_PAGE_ATTEMPTS = 12;
/** Hand-overs per alarm run: each is a full read of Autumn, so a page full of disagreements is spread over several runs. */
export const HAND_OVER_CHUNK = 50;
/**
 * A sweep may always move this many orgs toward ok without an operator, whatever the share says: with a
 * handful of restricted orgs, 10 % is less than one org, and a few payments between two sweeps are normal.
 */
export const RESTORE_FLOOR = 5;
/** Finished sweeps kept for the admin API and the console. */
const KEPT_SWEEPS = 20;

type PendingRow = { org_id: string; kind: string };

/**
 * The reconciliation sweep: one object (named "sweeper") walks Autumn's `customers.list` a page
 * per alarm and hands each org Autumn and Tollgate disagree about to its own object, which reads
 * Autumn afresh and decides. Being a single Durable Object, it never runs two sweeps at once;
 * its cursor, counters and status are in its SQLite storage, so a crash or a deploy resumes the
 * page it was on; a failed page is retried with backoff that honours Retry-After (capped).
 * Hand-overs that could restore an org wait until the whole listing is read: a sweep that would
 * move too many orgs toward ok is held for an operator (a wrong account or URL looks like that).
 */
export class Reconciler extends DurableObject<BillingEnv> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: BillingEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS sweeps (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS sweep_listed (org_id TEXT PRIMARY KEY);
      CREATE TABLE IF NOT EXISTS sweep_pending (org_id TEXT PRIMARY KEY, kind TEXT NOT NULL, restoring INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS sweep_missing (org_id TEXT PRIMARY KEY);
      CREATE TABLE IF NOT EXISTS known_missing (org_id TEXT PRIMARY KEY);
    `);
  }

  /** Starts a sweep now, or returns the one already running. A held sweep is discarded: the new one reads Autumn afresh. */
  async start(trigger: SweepRecord["trigger"]): Promise<{ started: boolean; sweep: SweepView }> {
    const current = this.current();
    if (current?.status === "running") {
      // A running sweep always owes an alarm; re-arm in case one was lost.
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(current.next_at ?? Date.now());
      return { started: false, sweep: this.view(current) };
    }
    const now = Date.now();
    const sweep = newSweep(`sweep_${new Date(now).toISOString().replace(/[-:.]/g, "")}_${crypto.randomUUID().slice(0, 8)}`, trigger, now);
    this.ctx.storage.transactionSync(() => {
      if (current?.status === "held") this.save({ ...current, status: "discarded", phase: "done", finished_at: now, next_at: null });
      this.sql.exec("DELETE FROM sweep_listed");
      this.sql.exec("DELETE FROM sweep_pending");
      this.sql.exec("DELETE FROM sweep_missing");
      this.save(sweep);
      this.sql.exec("DELETE FROM sweeps WHERE seq NOT IN (SELECT seq FROM sweeps ORDER BY seq DESC LIMIT ?)", KEPT_SWEEPS);
    });
    if (current?.status === "held") log({ event: "reconcile_discarded", sweep_id: current.id, by: sweep.id });
    await this.ctx.storage.setAlarm(now);
    log({ event: "reconcile_started", sweep_id: sweep.id, trigger });
    return { started: true, sweep: this.view(sweep) };
  }

  /**
   * An operator confirms a held sweep: it hands over what it found. Only the current sweep, only while
   * held: a discarded or finished one is refused (its findings may be stale).
   */
  async confirm(id: string): Promise<{ ok: true; sweep: SweepView } | { ok: false; error: "sweep_not_found" | "sweep_not_held"; status?: string }> {
    const current = this.current();
    if (current === null || current.id !== id) {
      const row = this.sql.exec<{ doc: string }>("SELECT doc FROM sweeps WHERE id = ?", id).toArray()[0];
      return row === undefined ? { ok: false, error: "sweep_not_found" } : { ok: false, error: "sweep_not_held", status: SweepRecord.parse(JSON.parse(row.doc)).status };
    }
    if (current.status !== "held") return { ok: false, error: "sweep_not_held", status: current.status };
    const now = Date.now();
    const confirmed: SweepRecord = { ...current, status: "running", phase: "finishing", confirmed: true, confirmed_at: now, next_at: now };
    this.ctx.storage.transactionSync(() => {
      this.save(confirmed);
      this.adoptMissing();
    });
    await this.ctx.storage.setAlarm(now);
    log({ event: "reconcile_confirmed", sweep_id: id, would_restore: current.would_restore });
    return { ok: true, sweep: this.view(confirmed) };
  }

  /** The running sweep, or the last one; null before the first. */
  async status(): Promise<SweepView | null> {
    const current = this.current();
    return current === null ? null : this.view(current);
  }

  /** Recent sweeps, newest first. */
  async recent(limit = 5): Promise<SweepView[]> {
    const rows = this.sql.exec<{ doc: string }>("SELECT doc FROM sweeps ORDER BY seq DESC LIMIT ?", limit).toArray();
    return rows.map((row, i) => {
      const sweep = SweepRecord.parse(JSON.parse(row.doc));
      return i === 0 ? this.view(sweep) : sweepView(sweep);
    });
  }

  override async alarm(): Promise<void> {
    const sweep = this.current();
    if (sweep === null || sweep.status !== "running") return;
    // While pages are read, only hand-overs that restore no one go out; the rest wait for the weighing.
    const chunk = this.pendingChunk(sweep.phase === "finishing");
    const next =
      chunk.length > 0
        ? await this.handOverChunk(sweep, chunk)
        : sweep.phase === "pages"
          ? await this.page(sweep)
          : sweep.phase === "missing"
            ? await this.missing(sweep)
            : this.finish(sweep, "finished");
    this.save(next);
    if (next.status === "running") await this.ctx.storage.setAlarm(next.next_at ?? Date.now());
    else if (next.status === "held") logWarn({ event: "reconcile_held", ...this.counts(next), would_restore: next.would_restore, restricted_held: next.restricted_held, restore_allowance: next.restore_allowance });
    else log({ event: "reconcile_finished", ...this.counts(next), status: next.status, duration_ms: (next.finished_at ?? Date.now()) - next.started_at });
  }

  /** One page of customers.list: compare with the index, queue the disagreements, advance the cursor. */
  private async page(sweep: SweepRecord): Promise<SweepRecord> {
    const now = Date.now();
    const settings = settingOrError(() => autumnSettings(this.env));
    if (settings instanceof ConfigError) {
      logError({ event: "not_configured", variable: settings.variable, message: settings.message });
      return this.finish(withErrors(sweep, [{ at: now, page: sweep.pages + 1, message: settings.message, org_id: null }]), "failed");
    }
    // Plan limits are compared only while metering is configured (USAGE_FEATURES); otherwise there are none to hold.
    const usage = settingOrError(() => usageSettings(this.env));
    const metered = usage instanceof ConfigError ? [] : [...meteredFeatures(usage.features).keys()];
    const result = await createAutumnClient(settings).listCustomers(sweep.cursor, PAGE_SIZE);
    const called = { ...sweep, autumn_calls: sweep.autumn_calls + 1 };
    if (!result.ok) return this.retryPage(called, new PageFailure(result.failure.message, result.failure.retryAfterMs), now);
    const { customers, unreadable } = readCustomers(result.value.list);
    // Counted when asked, answered or not: the formula is about calls made.
    const asked = { ...called, index_calls: called.index_calls + 1 };
    let held: Map<string, Held>;
    try {
      const ids = customers.flatMap((customer) => (customer.id === null ? [] : [customer.id]));
      held = new Map((await orgIndex(this.env).heldAmong(ids)).map((entry) => [entry.org_id, entry]));
    } catch (error) {
      return this.retryPage(asked, new PageFailure(`the index could not be read: ${String(error)}`), now);
    }
    const handOvers = disagreements(customers, held, metered);
    // Listed orgs that are (or will be, once handed over) not ok: the last step must not take them for missing.
    this.ctx.storage.transactionSync(() => {
      for (const orgId of [...held.keys(), ...handOvers.map((h) => h.org_id)]) this.sql.exec("INSERT OR IGNORE INTO sweep_listed (org_id) VALUES (?)", orgId);
      this.queue(handOvers);
    });
    const page = sweep.pages + 1;
    const next: SweepRecord = {
      ...withErrors(asked, unreadable.slice(0, 3).map((message) => ({ at: now, page, message, org_id: null }))),
      error_count: asked.error_count + unreadable.length,
      pages: page,
      customers_seen: sweep.customers_seen + result.value.list.length,
      cursor: result.value.next_cursor ?? "",
      phase: result.value.next_cursor ? "pages" : "missing",
      attempts: 0,
      next_at: Date.now(),
    };
    log({ event: "reconcile_page", ...this.counts(next), page, customers: result.value.list.length, unreadable: unreadable.length, to_hand_over: handOvers.length });
    return next;
  }

  /**
   * After the last page: queue the orgs held as not ok that the listing never showed (deleted in Autumn, or
   * never there), then weigh everything that would move toward ok against what Tollgate holds restricted.
   * More than the allowance holds the sweep for an operator; the hand-overs stay queued until confirmed.
   */
  private async missing(sweep: SweepRecord): Promise<SweepRecord> {
    let notOk: Held[];
    let restricted: number;
    let share: number;
    try {
      share = reconcileMaxRestoreShare(this.env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      logError({ event: "not_configured", variable: error.variable, message: error.message });
      return this.finish(withErrors(sweep, [{ at: Date.now(), page: sweep.pages, message: error.message, org_id: null }]), "failed");
    }
    try {
      const index = orgIndex(this.env);
      sweep = { ...sweep, index_calls: sweep.index_calls + 2 };
      [notOk, restricted] = await Promise.all([index.notOk(), index.restrictedCount()]);
    } catch (error) {
      return this.retryPage(sweep, new PageFailure(`the index could not be read: ${String(error)}`), Date.now());
    }
    // Looked up row by row (primary keys), not loaded: both tables grow with the orgs held not ok (M).
    const inTable = (table: "sweep_listed" | "known_missing") => ({ has: (orgId: string) => this.sql.exec(`SELECT 1 FROM ${table} WHERE org_id = ?`, orgId).toArray().length > 0 });
    const listed = inTable("sweep_listed");
    const known = inTable("known_missing");
    const missing = missingFromListing(notOk, listed, sweep.started_at);
    // An org already missing at the last sweep that acted was handed over then, and its object kept its state
    // (Autumn does not know the customer): only newly missing orgs are handed over and weighed, or every sweep
    // after one deleted customer would be held.
    const fresh = missing.filter((handOver) => !known.has(handOver.org_id));
    this.ctx.storage.transactionSync(() => {
      for (const { org_id } of missing) this.sql.exec("INSERT OR IGNORE INTO sweep_missing (org_id) VALUES (?)", org_id);
      this.queue(fresh);
    });
    const wouldRestore = { no_longer_past_due: 0, missing_from_autumn: 0, limit_lifted: 0 };
    for (const row of this.sql.exec<{ kind: keyof typeof wouldRestore; n: number }>("SELECT kind, COUNT(*) AS n FROM sweep_pending WHERE restoring = 1 GROUP BY kind")) wouldRestore[row.kind] = row.n;
    const restoring = wouldRestore.no_longer_past_due + wouldRestore.missing_from_autumn + wouldRestore.limit_lifted;
    const allowance = Math.max(RESTORE_FLOOR, Math.floor(share * restricted));
    const sample = this.sql
      .exec<PendingRow>("SELECT org_id, kind FROM sweep_pending WHERE restoring = 1 ORDER BY kind, org_id LIMIT ?", SAMPLE_LIMIT)
      .toArray()
      .map((row) => HandOver.parse(row));
    const weighed = { ...sweep, would_restore: wouldRestore, would_restore_sample: sample, restricted_held: restricted, restore_allowance: allowance, still_missing: missing.length - fresh.length };
    if (restoring > allowance) return { ...weighed, status: "held", phase: "held", next_at: null };
    this.ctx.storage.transactionSync(() => this.adoptMissing());
    return { ...weighed, phase: "finishing", next_at: Date.now() };
  }

  /** The sweep acts (not held, or confirmed): the orgs it found missing are the ones the next sweep already knows. */
  private adoptMissing(): void {
    this.sql.exec("DELETE FROM known_missing");
    this.sql.exec("INSERT INTO known_missing (org_id) SELECT org_id FROM sweep_missing");
  }

  /** Queues hand-overs as rows (one per org: one read settles every disagreement about it). Inside a transaction. */
  private queue(handOvers: HandOver[]): void {
    for (const { org_id, kind } of handOvers) this.sql.exec("INSERT OR IGNORE INTO sweep_pending (org_id, kind, restoring) VALUES (?, ?, ?)", org_id, kind, RESTORING.has(kind) ? 1 : 0);
  }

  /** The next hand-overs due: every kind once the sweep is finishing, before that only those that restore no one. */
  private pendingChunk(all: boolean): HandOver[] {
    return this.sql
      .exec<PendingRow>(`SELECT org_id, kind FROM sweep_pending ${all ? "" : "WHERE restoring = 0"} ORDER BY rowid LIMIT ?`, HAND_OVER_CHUNK)
      .toArray()
      .map((row) => HandOver.parse(row));
  }

  /**
   * Hands a chunk of queued orgs to their objects (HAND_OVER_CONCURRENCY at a time), saving progress
   * after each chunk. An unreachable object is counted, not retried: the next sweep finds it again.
   */
  private async handOverChunk(sweep: SweepRecord, chunk: HandOver[]): Promise<SweepRecord> {
    const results = await fanOut(chunk, HAND_OVER_CONCURRENCY, ({ org_id, kind }) => orgBilling(this.env, org_id).reconcile(kind));
    const errors: SweepRecord["errors"] = [];
    const handedOver = { ...sweep.orgs_handed_over };
    results.forEach((result, i) => {
      if (result.status === "fulfilled") handedOver[chunk[i]!.kind] += 1;
      else errors.push({ at: Date.now(), page: sweep.pages, message: `hand-over failed: ${String(result.reason)}`, org_id: chunk[i]!.org_id });
    });
    this.ctx.storage.transactionSync(() => {
      for (const { org_id } of chunk) this.sql.exec("DELETE FROM sweep_pending WHERE org_id = ?", org_id);
    });
    return {
      ...withErrors(sweep, errors),
      orgs_handed_over: handedOver,
      hand_over_failures: sweep.hand_over_failures + errors.length,
      object_calls: sweep.object_calls + chunk.length,
      next_at: Date.now(),
    };
  }

  private retryPage(sweep: SweepRecord, failure: PageFailure, now: number): SweepRecord {
    const attempts = sweep.attempts + 1;
    const failed = withErrors(sweep, [{ at: now, page: sweep.pages + 1, message: failure.message, org_id: null }]);
    if (attempts >= MAX_PAGE_ATTEMPTS) return this.finish({ ...failed, attempts }, "failed");
    const nextAt = now + retryDelay(attempts, failure.retryAfterMs);
    logWarn({ event: "reconcile_page_failed", sweep_id: sweep.id, page: sweep.pages + 1, attempts, error: failure.message, retry_at: nextAt });
    return { ...failed, attempts, next_at: nextAt };
  }

  private finish(sweep: SweepRecord, status: "finished" | "failed"): SweepRecord {
    return { ...sweep, status, phase: "done", finished_at: Date.now(), next_at: null };
  }

  private counts(sweep: SweepRecord) {
    return { sweep_id: sweep.id, pages: sweep.pages, customers_seen: sweep.customers_seen, orgs_handed_over: sweep.orgs_handed_over, autumn_calls: sweep.autumn_calls, object_calls: sweep.object_calls, index_calls: sweep.index_calls, errors: sweep.error_count };
  }

  /** The current sweep's view, with the count of its pending rows (a past sweep's rows are gone). */
  private view(sweep: SweepRecord): SweepView {
    const pending = sweep.status === "running" || sweep.status === "held" ? this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sweep_pending").one().n : 0;
    return sweepView(sweep, pending);
  }

  private current(): SweepRecord | null {
    const row = this.sql.exec<{ doc: string }>("SELECT doc FROM sweeps ORDER BY seq DESC LIMIT 1").toArray()[0];
    return row ? SweepRecord.parse(JSON.parse(row.doc)) : null;
  }

  private save(sweep: SweepRecord): void {
    this.sql.exec("INSERT INTO sweeps (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc", sweep.id, JSON.stringify(sweep));
  }
}

class PageFailure extends Error {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The single reconciliation sweeper. */
export function reconciler(env: { RECONCILER?: DurableObjectNamespace<Reconciler> }): DurableObjectStub<Reconciler> {
  if (!env.RECONCILER) {
    throw new Error("The RECONCILER Durable Object binding is missing: did you forget to add it (class Reconciler, migration v3) to your wrangler.jsonc?");
  }
  return env.RECONCILER.getByName("sweeper");
}
