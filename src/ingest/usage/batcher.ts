import { logError } from "../../shared/log.ts";
import { hourOf, type ActivityHour, type ActivityKind, type ForwardedKind, type UsageCounts, type UsageMessage, type WouldRefuseCode } from "../../shared/usage.ts";

/**
 * The request path's hand-off of usage to the `tollgate-usage` queue (docs/metering.md),
 * one per isolate and queue: counts are added per org in memory and flushed at most once per
 * interval (1 s), at once when more than `maxOrgs` orgs wait, as one UsageMessage per org in
 * `sendBatch` calls of at most 100 messages. `add` returns the promise of the flush that carries
 * those counts; the request that opened the window hands it to `ctx.waitUntil`, so the isolate stays
 * alive until the window's usage is on the queue, and no response ever waits for it.
 *
 * A failed send is retried a few times with a short backoff; if it still fails, each message's
 * org and counts are logged `usage_lost` at error level. The flush promise never rejects.
 *
 * Each message carries its batch's own id: the isolate's random `stream` and the org's next `seq`
 * (1, 2, 3, … per org), fixed when the flush builds it. A send can throw after the queue took the
 * batch, so a retry may put the same usage on the queue twice under new queue message ids; the org's
 * object folds a stream's number once (src/billing/usage/streams.ts), so it is counted once.
 *
 * Activity (issue 21) rides the same messages: what became of each request (`addActivity`), per
 * hour, sent whether metering is on or off; an org with only activity in the window gets a message
 * with empty `counts`. A would-be refusal carries its code (`would_refuse_codes`), and metered items of
 * the requests that went upstream are added to their hour too (`add`'s `forwarded`). No extra send:
 * still one message per org per window.
 */

export type UsageQueue = { sendBatch(messages: Iterable<{ body: UsageMessage }>): Promise<unknown> };

export type BatcherOptions = {
  intervalMs?: number;
  /** Past this many orgs waiting, the flush runs at once (a full sendBatch). */
  maxOrgs?: number;
  /** Waits before each retry of a failed send. */
  retryDelaysMs?: readonly number[];
  /** Injected for tests: resolves after `ms` (a timer) and the clock. */
  wait?: (ms: number) => Promise<void>;
  now?: () => number;
  /** The isolate's stream id (default: random). */
  stream?: string;
};

export const USAGE_FLUSH_INTERVAL_MS = 1_000;
export const USAGE_MAX_ORGS = 100;
/** Queues take at most 100 messages per sendBatch. */
export const SEND_BATCH_MAX = 100;
export const USAGE_RETRY_DELAYS_MS = [100, 400, 1_600] as const;

type Pending = { counts: Record<string, number>; first_at: number; last_at: number; activity: Map<number, ActivityHour> | null };

export class UsageBatcher {
  private readonly queue: UsageQueue;
  private readonly intervalMs: number;
  private readonly maxOrgs: number;
  private readonly retryDelaysMs: readonly number[];
  private readonly wait: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private pending = new Map<string, Pending>();
  /** The flush that will carry what is pending now, and the way to start it early. */
  private next: { done: Promise<void>; start: () => void } | null = null;
  private lastFlushAt = -Infinity;
  /** Random per isolate: sequence numbers restart with every isolate, so they need a stream of their own. */
  readonly stream: string;
  /** The last sequence number sent per org (one number per org this isolate metered: bounded by orgs). */
  private readonly seqs = new Map<string, number>();

  constructor(queue: UsageQueue, options: BatcherOptions = {}) {
    this.queue = queue;
    this.intervalMs = options.intervalMs ?? USAGE_FLUSH_INTERVAL_MS;
    this.maxOrgs = options.maxOrgs ?? USAGE_MAX_ORGS;
    this.retryDelaysMs = options.retryDelaysMs ?? USAGE_RETRY_DELAYS_MS;
    this.wait = options.wait ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.now = options.now ?? Date.now;
    this.stream = options.stream ?? crypto.randomUUID().replaceAll("-", "");
  }

  /** Orgs waiting for the next flush. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Adds one acceptance's counts for an org. `done` resolves once they are on the queue (or logged
   * lost). `opened`: this add opened the window, so its request must hold the isolate (`waitUntil(done)`)
   * until the flush; every later add of the window rides on that flush, which carries whatever is
   * pending when it runs, and needs no waitUntil of its own (one per window, not one per request).
   */
  add(orgId: string, counts: UsageCounts, at: number, forwarded?: { kind: ForwardedKind; items: number }): { done: Promise<void>; opened: boolean } {
    const entry = this.entry(orgId, at);
    for (const [signal, value] of Object.entries(counts)) entry.counts[signal] = (entry.counts[signal] ?? 0) + (value ?? 0);
    if (forwarded) {
      // The hour's items of what went upstream (the console's chart, metering on): present even at 0, which says "metered".
      const hour = this.hour(entry, at);
      hour.items ??= {};
      hour.items[forwarded.kind] = (hour.items[forwarded.kind] ?? 0) + forwarded.items;
    }
    return this.ride();
  }

  /**
   * Counts one request's outcome for its org in the hour holding `at`; `done` and `opened` as for `add`.
   * `code`: a would-be refusal's (observe mode), counted in the hour's `would_refuse_codes` as well.
   */
  addActivity(orgId: string, kind: ActivityKind, at: number, code?: WouldRefuseCode): { done: Promise<void>; opened: boolean } {
    const counts = this.hour(this.entry(orgId, at), at);
    counts[kind] = (counts[kind] ?? 0) + 1;
    // The code of every request observe mode let through, whatever became of it (forwarded: `would_refuse`;
    // parked in an outage: `parked`): the org's tally per code, as Analytics Engine's.
    if (code !== undefined) {
      counts.would_refuse_codes ??= {};
      counts.would_refuse_codes[code] = (counts.would_refuse_codes[code] ?? 0) + 1;
    }
    return this.ride();
  }

  /** The entry's counts for the hour holding `at`. */
  private hour(entry: Pending, at: number): ActivityHour {
    entry.activity ??= new Map();
    const hour = hourOf(at);
    let counts = entry.activity.get(hour);
    if (!counts) entry.activity.set(hour, (counts = { hour }));
    return counts;
  }

  /** The org's pending entry, its window stretched to `at`. */
  private entry(orgId: string, at: number): Pending {
    const entry = this.pending.get(orgId);
    if (entry) {
      entry.first_at = Math.min(entry.first_at, at);
      entry.last_at = Math.max(entry.last_at, at);
      return entry;
    }
    const created: Pending = { counts: {}, first_at: at, last_at: at, activity: null };
    this.pending.set(orgId, created);
    return created;
  }

  /** The flush that will carry what was just added (scheduled now if none is). */
  private ride(): { done: Promise<void>; opened: boolean } {
    const opened = this.next === null;
    const next = (this.next ??= this.schedule());
    if (this.pending.size >= this.maxOrgs) next.start();
    return { done: next.done, opened };
  }

  /** The next flush: when the interval since the last one has passed (a timer of 0 lets concurrent requests ride along). */
  private schedule(): { done: Promise<void>; start: () => void } {
    let start!: () => void;
    const started = new Promise<void>((resolve) => (start = resolve));
    const delay = Math.max(0, this.lastFlushAt + this.intervalMs - this.now());
    const done = Promise.race([this.wait(delay), started]).then(() => this.flush());
    return { done, start };
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    this.next = null;
    this.lastFlushAt = this.now();
    const messages = [...batch].map(([org_id, p]): { body: UsageMessage } => {
      const seq = (this.seqs.get(org_id) ?? 0) + 1;
      this.seqs.set(org_id, seq);
      const body: UsageMessage = { org_id, stream: this.stream, seq, counts: p.counts, first_at: p.first_at, last_at: p.last_at };
      // A window spans an hour boundary at most once or twice: the hours stay far under MAX_ACTIVITY_HOURS.
      if (p.activity) body.activity = { unit: "requests", hours: [...p.activity.values()].sort((a, b) => a.hour - b.hour) };
      return { body };
    });
    const chunks: { body: UsageMessage }[][] = [];
    for (let i = 0; i < messages.length; i += SEND_BATCH_MAX) chunks.push(messages.slice(i, i + SEND_BATCH_MAX));
    await Promise.all(chunks.map((chunk) => this.send(chunk)));
  }

  private async send(chunk: { body: UsageMessage }[]): Promise<void> {
    let error: unknown;
    for (let attempt = 0; attempt <= this.retryDelaysMs.length; attempt++) {
      if (attempt > 0) await this.wait(this.retryDelaysMs[attempt - 1]!);
      try {
        await this.queue.sendBatch(chunk);
        return;
      } catch (caught) {
        error = caught;
      }
    }
    // Never silent: what the queue could not take is named, org by org, for the operator to report by hand.
    const reason = error instanceof Error ? error.message : String(error);
    for (const { body } of chunk) {
      logError({ event: "usage_lost", org_id: body.org_id, stream: body.stream, seq: body.seq, counts: body.counts, activity: body.activity, first_at: body.first_at, last_at: body.last_at, attempts: this.retryDelaysMs.length + 1, error: reason });
    }
  }
}

const batchers = new WeakMap<object, UsageBatcher>();

/** The isolate's batcher for a queue binding (tests hand each env its own queue, so its own batcher). */
export function batcherFor(queue: UsageQueue): UsageBatcher {
  let batcher = batchers.get(queue);
  if (!batcher) {
    batcher = new UsageBatcher(queue);
    batchers.set(queue, batcher);
  }
  return batcher;
}
