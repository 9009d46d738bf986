import { DurableObject } from "cloudflare:workers";
import { log, logError, logWarn } from "../../shared/log.ts";
import { createAutumnClient } from "../autumn-client.ts";
import { autumnSettings, settingOrError, ConfigError } from "../config.ts";
import { orgBilling, orgIndex } from "../org-stub.ts";
import { retryDelay } from "../schedule.ts";
import { disagreements, missingFromListing, readCustomers, type Held } from "./compare.ts";
import { fanOut } from "./fan-out.ts";
import { newSweep, SweepRecord, sweepView, withErrors, type SweepView } from "./sweep-record.ts";

/** customers.list pages of the maximum the budget allows: 20,000 customers are 20 Autumn calls. */
export const PAGE_SIZE = 1_000;
/** Objects asked at once: enough to finish a page quickly, few enough not to crowd Autumn's per-customer limits. */
export const HAND_OVER_CONCURRENCY = 8;
/** A page that fails this many times in a row (about an hour: backoff 5 s, 10 s, ... capped at 15 min) fails the sweep; the next cron starts afresh. */
export const MAX_PAGE_ATTEMPTS = 12;
/** Hand-overs per alarm run: each is a full read of Autumn, so a page full of disagreements is spread over several runs. */
export const HAND_OVER_CHUNK = 50;
/** Finished sweeps kept for the admin API and the console. */
const KEPT_SWEEPS = 20;

/**
 * The reconciliation sweep: one object (named "sweeper") walks Autumn's `customers.list` a page
 * per alarm and hands each org Autumn and Tollgate disagree about to its own object, which reads
 * Autumn afresh and decides. Being a single Durable Object, it never runs two sweeps at once;
 * its cursor, counters and status are in its SQLite storage, so a crash or a deploy resumes the
 * page it was on; a failed page is retried with backoff that honours Retry-After (capped).
 */
export class Reconciler extends DurableObject<BillingEnv> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: BillingEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS sweeps (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS sweep_listed (org_id TEXT PRIMARY KEY);
    `);
  }

  /** Starts a sweep now, or returns the one already running. */
  async start(trigger: SweepRecord["trigger"]): Promise<{ started: boolean; sweep: SweepView }> {
    const current = this.current();
    if (current?.status === "running") {
      // A running sweep always owes an alarm; re-arm in case one was lost.
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(current.next_at ?? Date.now());
      return { started: false, sweep: sweepView(current) };
    }
    const now = Date.now();
    const sweep = newSweep(`sweep_${new Date(now).toISOString().replace(/[-:.]/g, "")}_${crypto.randomUUID().slice(0, 8)}`, trigger, now);
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM sweep_listed");
      this.save(sweep);
      this.sql.exec("DELETE FROM sweeps WHERE seq NOT IN (SELECT seq FROM sweeps ORDER BY seq DESC LIMIT ?)", KEPT_SWEEPS);
    });
    await this.ctx.storage.setAlarm(now);
    log({ event: "reconcile_started", sweep_id: sweep.id, trigger });
    return { started: true, sweep: sweepView(sweep) };
  }

  /** The running sweep, or the last one; null before the first. */
  async status(): Promise<SweepView | null> {
    const current = this.current();
    return current === null ? null : sweepView(current);
  }

  /** Recent sweeps, newest first. */
  async recent(limit = 5): Promise<SweepView[]> {
    return this.sql
      .exec<{ doc: string }>("SELECT doc FROM sweeps ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((row) => sweepView(SweepRecord.parse(JSON.parse(row.doc))));
  }

  override async alarm(): Promise<void> {
    const sweep = this.current();
    if (sweep === null || sweep.status !== "running") return;
    const next =
      sweep.pending.length > 0
        ? await this.handOverChunk(sweep)
        : sweep.phase === "pages"
          ? await this.page(sweep)
          : sweep.phase === "missing"
            ? await this.missing(sweep)
            : this.finish(sweep, "finished");
    this.save(next);
    if (next.status === "running") await this.ctx.storage.setAlarm(next.next_at ?? Date.now());
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
    const result = await createAutumnClient(settings).listCustomers(sweep.cursor, PAGE_SIZE);
    const called = { ...sweep, autumn_calls: sweep.autumn_calls + 1 };
    if (!result.ok) return this.retryPage(called, new PageFailure(result.failure.message, result.failure.retryAfterMs), now);
    const { customers, unreadable } = readCustomers(result.value.list);
    let held: Map<string, Held>;
    try {
      const ids = customers.flatMap((customer) => (customer.id === null ? [] : [customer.id]));
      held = new Map((await orgIndex(this.env).notOkAmong(ids)).map((entry) => [entry.org_id, entry]));
    } catch (error) {
      return this.retryPage(called, new PageFailure(`the index could not be read: ${String(error)}`), now);
    }
    const handOvers = disagreements(customers, held);
    // Listed orgs that are (or will be, once handed over) not ok: the last step must not take them for missing.
    this.ctx.storage.transactionSync(() => {
      for (const orgId of [...held.keys(), ...handOvers.map((h) => h.org_id)]) this.sql.exec("INSERT OR IGNORE INTO sweep_listed (org_id) VALUES (?)", orgId);
    });
    const page = sweep.pages + 1;
    const next: SweepRecord = {
      ...withErrors(called, unreadable.slice(0, 3).map((message) => ({ at: now, page, message, org_id: null }))),
      error_count: called.error_count + unreadable.length,
      pages: page,
      customers_seen: sweep.customers_seen + result.value.list.length,
      pending: handOvers,
      cursor: result.value.next_cursor ?? "",
      phase: result.value.next_cursor ? "pages" : "missing",
      attempts: 0,
      next_at: Date.now(),
    };
    log({ event: "reconcile_page", ...this.counts(next), page, customers: result.value.list.length, unreadable: unreadable.length, to_hand_over: handOvers.length });
    return next;
  }

  /** After the last page: queue the orgs held as not ok that the listing never showed (deleted in Autumn, or never there). */
  private async missing(sweep: SweepRecord): Promise<SweepRecord> {
    let notOk: Held[];
    try {
      notOk = await orgIndex(this.env).notOk();
    } catch (error) {
      return this.retryPage(sweep, new PageFailure(`the index could not be read: ${String(error)}`), Date.now());
    }
    const listed = new Set(this.sql.exec<{ org_id: string }>("SELECT org_id FROM sweep_listed").toArray().map((row) => row.org_id));
    return { ...sweep, pending: missingFromListing(notOk, listed), phase: "finishing", next_at: Date.now() };
  }

  /**
   * Hands the next HAND_OVER_CHUNK queued orgs to their objects (HAND_OVER_CONCURRENCY at a time), saving
   * progress after each chunk. An unreachable object is counted, not retried: the next sweep finds it again.
   */
  private async handOverChunk(sweep: SweepRecord): Promise<SweepRecord> {
    const chunk = sweep.pending.slice(0, HAND_OVER_CHUNK);
    const results = await fanOut(chunk, HAND_OVER_CONCURRENCY, ({ org_id, kind }) => orgBilling(this.env, org_id).reconcile(kind));
    const errors: SweepRecord["errors"] = [];
    const handedOver = { ...sweep.orgs_handed_over };
    results.forEach((result, i) => {
      if (result.status === "fulfilled") handedOver[chunk[i]!.kind] += 1;
      else errors.push({ at: Date.now(), page: sweep.pages, message: `hand-over failed: ${String(result.reason)}`, org_id: chunk[i]!.org_id });
    });
    return {
      ...withErrors(sweep, errors),
      orgs_handed_over: handedOver,
      hand_over_failures: sweep.hand_over_failures + errors.length,
      object_calls: sweep.object_calls + chunk.length,
      pending: sweep.pending.slice(chunk.length),
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
    return { sweep_id: sweep.id, pages: sweep.pages, customers_seen: sweep.customers_seen, orgs_handed_over: sweep.orgs_handed_over, autumn_calls: sweep.autumn_calls, object_calls: sweep.object_calls, errors: sweep.error_count };
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
