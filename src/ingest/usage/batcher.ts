import { logError } from "../../shared/log.ts";
import { INDEX_SHARDS, shardOf } from "../../shared/index-shard.ts";
import { ACTIVITY_ORGS_PER_MESSAGE, hourOf, type ActivityHour, type ActivityKind, type ActivityMessage, type ActivityPart, type ForwardedKind, type OrgActivity, type UsageCounts, type UsageMessage, type WouldRefuseCode } from "../../shared/usage.ts";

/**
 * The request path's hand-off of usage to the `tollgate-usage` queue (docs/metering.md),
 * one per isolate and queue: counts are added per org in memory and flushed at most once per
 * interval (1 s), at once (by the request that filled it) when `maxOrgs` orgs wait, as one UsageMessage per org metering
 * counted for, in `sendBatch` calls of at most 100 messages, and the window's activity (below). `add` returns the promise of the flush that carries
 * those counts; the request that opened the window hands it to `ctx.waitUntil`, so the isolate stays
 * alive until the window's usage is on the queue, and no response ever waits for it.
 *
 * A failed send is retried a few times with a short backoff; if it still fails, each message's
 * org and counts are logged `usage_lost` (an activity message's orgs and hours: `activity_lost`) at error level. The flush promise never rejects.
 *
 * Each message carries its batch's own id: the isolate's random `stream` and the org's next `seq`
 * (1, 2, 3, … per org), fixed when the flush builds it. A send can throw after the queue took the
 * batch, so a retry may put the same usage on the queue twice under new queue message ids; the org's
 * object folds a stream's number once (src/billing/usage/streams.ts), so it is counted once.
 *
 * Activity (issue 21): what became of each request (`addActivity`), per org and hour, counted whether
 * metering is on or off, with a would-be refusal's code and the metered items of what went upstream (`add`'s
 * `forwarded`). It travels apart from usage, in `ActivityMessage`s (shared/usage.ts): one per flush for up
 * to ACTIVITY_ORGS_PER_MESSAGE orgs, split into parts by the org's index shard, each part numbered per
 * stream and shard, so the consumer makes one call per shard and no org's object is woken for it. Usage
 * messages go only for orgs metering counted something for; with metering off a flush is one message.
 */

export type QueuedMessage = UsageMessage | ActivityMessage;
export type UsageQueue = { sendBatch(messages: Iterable<{ body: QueuedMessage }>): Promise<unknown> };

export type BatcherOptions = {
  intervalMs?: number;
  /** At this many orgs waiting, the add that brought the last one sends them at once (a full sendBatch). */
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
/** Queues take at most 256 KB per sendBatch: a batch is closed before its messages' JSON passes this. */
const SEND_BATCH_BYTES = 200 * 1024;
/** An activity message is closed at this many bytes of JSON (or ACTIVITY_ORGS_PER_MESSAGE orgs): under the queue's 128 KB a message. */
export const ACTIVITY_MESSAGE_BYTES = 64 * 1024;

/** `items` in order, in groups of at most `maxCount` and, past its first item, about `maxBytes` of JSON each. */
function bounded<T>(items: readonly T[], maxCount: number, maxBytes: number): T[][] {
  const groups: T[][] = [];
  let group: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = JSON.stringify(item).length;
    if (group.length > 0 && (group.length === maxCount || bytes + size > maxBytes)) {
      groups.push(group);
      group = [];
      bytes = 0;
    }
    group.push(item);
    bytes += size;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

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
  /** The window's flush, on a timer its opener's request holds (waitUntil); null when no window is open. */
  private next: Promise<void> | null = null;
  /**
   * Flushes sent before the window's timer (a full window, or an add that sends at once) while it was open: they may
   * carry counts of adds that were handed the window's promise, so that promise settles only once they have too.
   */
  private early: Promise<void>[] = [];
  private lastFlushAt = -Infinity;
  /** Random per isolate: sequence numbers restart with every isolate, so they need a stream of their own. */
  readonly stream: string;
  /** The last sequence number sent per org (one number per org this isolate metered: bounded by orgs). */
  private readonly seqs = new Map<string, number>();
  /** The last activity part's number sent per index shard: each shard sees 1, 2, 3, … from this stream. */
  private readonly shardSeqs = new Array<number>(INDEX_SHARDS).fill(0);

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
   * lost). `opened`: this add opened the window, or started a flush of its own (see `ride`), so its request must
   * hold the isolate (`waitUntil(done)`) until that flush; every later add of the window rides on the window's flush,
   * which carries whatever is pending when it runs, and needs no waitUntil of its own (one per window, not one per request).
   */
  add(orgId: string, counts: UsageCounts, at: number, forwarded?: { kind: ForwardedKind; items: number }, sendNow = false): { done: Promise<void>; opened: boolean } {
    const entry = this.entry(orgId, at);
    for (const [signal, value] of Object.entries(counts)) entry.counts[signal] = (entry.counts[signal] ?? 0) + (value ?? 0);
    if (forwarded) {
      // The hour's items of what went upstream (the console's chart, metering on): present even at 0, which says "metered".
      const hour = this.hour(entry, at);
      hour.items ??= {};
      hour.items[forwarded.kind] = (hour.items[forwarded.kind] ?? 0) + forwarded.items;
    }
    return this.ride(sendNow);
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

  /**
   * The flush that will carry what was just added: the window's (scheduled now if none is), or, when this add
   * filled it (`maxOrgs`) or must wait for its counts (`sendNow`: a queue consumer), a flush of its own, sent at once
   * and held by this caller. Never a flush another request started early: Workers runs I/O in the context of the
   * request that starts it, and cancels it when that request ends, so every flush is started and held (waitUntil)
   * by the same request, and no caller does I/O after awaiting another request's (the window's promise waits for
   * early flushes only to settle after them).
   */
  private ride(sendNow = false): { done: Promise<void>; opened: boolean } {
    if (sendNow || this.pending.size >= this.maxOrgs) {
      const done = this.flush();
      if (this.next !== null) this.early.push(done);
      return { done, opened: true };
    }
    const opened = this.next === null;
    const next = (this.next ??= this.schedule());
    return { done: next, opened };
  }

  /**
   * The window's flush: when the interval since the last one has passed (a timer of 0 lets concurrent requests ride
   * along). It also waits for the window's early flushes, started and held by other requests: it only settles after
   * them, and does no I/O of its own after them.
   */
  private schedule(): Promise<void> {
    const delay = Math.max(0, this.lastFlushAt + this.intervalMs - this.now());
    return this.wait(delay).then(async () => {
      this.next = null;
      const early = this.early;
      this.early = [];
      await Promise.all([this.flush(), ...early]);
    });
  }

  /** Sends what is pending (nothing, when a full window was sent early). */
  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    this.lastFlushAt = this.now();
    const usage: UsageMessage[] = [];
    const activity: OrgActivity[] = [];
    for (const [org_id, p] of batch) {
      if (Object.keys(p.counts).length > 0) {
        const seq = (this.seqs.get(org_id) ?? 0) + 1;
        this.seqs.set(org_id, seq);
        usage.push({ org_id, stream: this.stream, seq, counts: p.counts, first_at: p.first_at, last_at: p.last_at });
      }
      // A window spans an hour boundary at most once or twice: the hours stay far under MAX_ACTIVITY_HOURS.
      if (p.activity) activity.push({ org_id, hours: [...p.activity.values()].sort((a, b) => a.hour - b.hour) });
    }
    // As few sendBatch calls as the queue's limits allow: one, for a window of up to about 100 metered orgs.
    const messages: QueuedMessage[] = [...this.activityMessages(activity), ...usage];
    await Promise.all(bounded(messages, SEND_BATCH_MAX, SEND_BATCH_BYTES).map((chunk) => this.send(chunk)));
  }

  /** The window's activity as messages of at most ACTIVITY_ORGS_PER_MESSAGE orgs and about ACTIVITY_MESSAGE_BYTES, each split by shard and numbered. */
  private activityMessages(orgs: OrgActivity[]): ActivityMessage[] {
    const groups = bounded(orgs, ACTIVITY_ORGS_PER_MESSAGE, ACTIVITY_MESSAGE_BYTES);
    return groups.map((members) => {
      const byShard = new Map<number, OrgActivity[]>();
      for (const org of members) {
        const shard = shardOf(org.org_id);
        const list = byShard.get(shard);
        if (list) list.push(org);
        else byShard.set(shard, [org]);
      }
      const parts = [...byShard].sort(([a], [b]) => a - b).map(([shard, list]): ActivityPart => ({ shard, seq: ++this.shardSeqs[shard]!, orgs: list }));
      return { kind: "activity", stream: this.stream, parts };
    });
  }

  private async send(chunk: QueuedMessage[]): Promise<void> {
    let error: unknown;
    for (let attempt = 0; attempt <= this.retryDelaysMs.length; attempt++) {
      if (attempt > 0) await this.wait(this.retryDelaysMs[attempt - 1]!);
      try {
        await this.queue.sendBatch(chunk.map((body) => ({ body })));
        return;
      } catch (caught) {
        error = caught;
      }
    }
    // Never silent: what the queue could not take is named, org by org, for the operator to report by hand.
    const reason = error instanceof Error ? error.message : String(error);
    const attempts = this.retryDelaysMs.length + 1;
    for (const body of chunk) {
      if ("kind" in body) logError({ event: "activity_lost", stream: body.stream, parts: body.parts, attempts, error: reason });
      else logError({ event: "usage_lost", org_id: body.org_id, stream: body.stream, seq: body.seq, counts: body.counts, first_at: body.first_at, last_at: body.last_at, attempts, error: reason });
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
