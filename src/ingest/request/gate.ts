import type { EnforcementMode, MirrorEntry, OrgState } from "../../shared/billing-state.ts";
import type { IngestKeyRecord } from "../../shared/ingest-key.ts";
import type { FeatureLimit } from "../../shared/usage.ts";
import { TtlCache, type Supersedes } from "./ttl-cache.ts";

/** Where the gate looks things up; injected so the same gate runs against KV/DO or in-memory fakes. */
export type GateSources = {
  hashKey(key: string): Promise<string>;
  /** INGEST_KEYS by key hash; the entry may carry its org's verdict (the mirror entry, written with it). */
  lookupKey(hash: string): Promise<IngestKeyRecord | null>;
  /** The org's BILLING_STATE mirror entry (null: never mirrored, i.e. ok). */
  readMirror(orgId: string): Promise<MirrorEntry | null>;
  /** The org's OrgBilling object: the truth, asked only when the mirror says suspended. */
  askObject(orgId: string): Promise<MirrorEntry>;
};

export const GATE_TIMINGS = {
  /** Key → org in isolate memory. With the 30 s KV cacheTtl, a revocation lands within a minute. */
  keyTtlMs: 30_000,
  /** Unknown keys are remembered briefly so a misconfigured exporter cannot hammer KV. */
  unknownKeyTtlMs: 10_000,
  /** A paying org costs at most one KV read per isolate per this window, and no object call. */
  stateTtlMs: 5_000,
  /**
   * A suspension confirmed by the object is re-asked at most this often per isolate: a
   * payment lifts it within a second (no KV propagation involved), and a suspended org's
   * exporters cost at most one object call per isolate per second.
   */
  confirmTtlMs: 1_000,
  /** After a failed lookup, its answer (fail open, or the mirror's refusal) is kept this long before trying again. */
  failOpenTtlMs: 2_000,
  /**
   * While one request re-reads an org's expired verdict, the isolate's other requests for the org answer from
   * that verdict, if it accepts and expired at most this long ago (see IngestGate.verdict).
   */
  staleWhileRefreshMs: 1_000,
  /** A re-read under way longer than this (its request cancelled, say) no longer stands in for the others: they read for themselves. */
  refreshMs: 2_000,
  /** How long a request meeting another's re-read of a suspension waits for its answer before it reads for itself. */
  refreshWaitMs: 250,
};

/** How often a request waiting for another's re-read of a suspension looks for its answer. */
const REFRESH_POLL_MS = 5;

export type Verdict = {
  suspended: boolean;
  suspended_at: number | null;
  /**
   * What the customer-facing answers need, taken from the same mirror entry (or object answer)
   * at no extra lookup: the state (an accepted `overdue` org with a deadline gets the warning),
   * the live deadline, and where to pay.
   */
  state: OrgState;
  suspend_at: number | null;
  pay_url: string | null;
  /** The features the org has used up, from the same entry (docs/metering.md, "Plan limits"); admit decides whether they refuse. */
  limits: readonly FeatureLimit[];
  /** The org's own enforcement mode (an operator's canary), from the same entry; null: the Worker's ENFORCEMENT. */
  enforcement: EnforcementMode | null;
  /**
   * When the org entered its current state (the mirror entry's `since`); absent when nothing was
   * mirrored. A recent change may be the end of a suspension: Logpush then checks for a kept copy
   * of a retried batch (parking/kept-once.ts), and only then.
   */
  since?: number;
  /** The rest of the same entry, for the customer's status (src/ingest/status/): why the org is in its state, and what it has parked. */
  reason?: string;
  parked?: MirrorEntry["parked"];
  /**
   * Where the answer came from: memory, the KV mirror, the object, a failed lookup with
   * nothing known (accepted), or a suspension the object could not confirm (kept).
   */
  source: "memory" | "mirror" | "object" | "fail_open" | "unconfirmed";
  /**
   * With `fail_open` only: the verdict this isolate held for the org before the lookup failed (not
   * suspended: a known suspension is refused instead), for the customer's status. The gate accepts
   * regardless; absent when nothing was known.
   */
  last_known?: Held;
};

/**
 * `verdict`: the org's mirror entry as the key's KV entry carried it, when the key was just read
 * from KV (a cold key); `gate.verdict` then needs no mirror read. Absent when the key came from
 * memory or its entry predates verdicts.
 */
export type KeyCheck = { ok: true; org_id: string; key_id: string; verdict?: MirrorEntry } | { ok: false; code: "unknown_ingest_key" | "auth_unavailable" };

/** A lookup that failed, and what the gate decided without it. */
export type DependencyFailure = {
  org_id: string;
  dependency: "kv" | "object" | "kv_and_object";
  error: string;
  last_verdict: "ok" | "suspended" | "none";
  decision: "accept" | "refuse";
};

/** `carriedVerdicts`: verdicts taken from a cold key's entry instead of a mirror read. */
export type GateCounters = { keyLookups: number; mirrorReads: number; carriedVerdicts: number; objectCalls: number; failOpens: number; unconfirmedRefusals: number };

const ZERO_COUNTERS: GateCounters = { keyLookups: 0, mirrorReads: 0, carriedVerdicts: 0, objectCalls: 0, failOpens: 0, unconfirmedRefusals: 0 };

type Held = Omit<Verdict, "source" | "last_known">;
/**
 * What the verdicts cache holds: a verdict, or a fail-open acceptance (`failed_open`) that keeps what was
 * known before the failure, so a warm read says `fail_open` (never a confident `memory`) while it is held; a
 * suspension the object could not confirm is marked `unconfirmed` for the same reason.
 */
type Cached = Held & { failed_open?: { last_known: Held | undefined }; unconfirmed?: true };
/** A verdict and the version of the mirror entry or answer it came from. */
type Ranked = { held: Held; rank: number };

/** A cached verdict as the gate answers it from memory: a refusal the object could not confirm still says so. */
function fromMemory(entry: Cached): Verdict {
  const { failed_open: failedOpen, unconfirmed, ...held } = entry;
  if (!failedOpen) return { ...held, source: unconfirmed ? "unconfirmed" : "memory" };
  return failedOpen.last_known ? { ...held, source: "fail_open", last_known: failedOpen.last_known } : { ...held, source: "fail_open" };
}

/** What the isolate really knew of an org: a fail-open acceptance stands for what was known before it. */
function knownOf(entry: Cached | undefined): Held | undefined {
  if (entry === undefined) return undefined;
  const { failed_open: failedOpen, unconfirmed: _, ...held } = entry;
  return failedOpen ? failedOpen.last_known : held;
}

/**
 * Verdicts: the newer truth wins. `rank` is the mirror entry's version (the org's object raises it with every change;
 * 0 for an org never mirrored), so a KV read that lags what this isolate already heard never replaces it, whenever its
 * lookup began; between equal versions the later begun.
 */
const NEWER_TRUTH: Supersedes = (incoming, held) => (incoming.rank ?? 0) > (held.rank ?? 0) || ((incoming.rank ?? 0) === (held.rank ?? 0) && incoming.at >= held.at);
/** Keys: the later begun; between answers begun at the same moment a revocation (rank 1: no record) wins over a record. */
const REVOCATION_WINS: Supersedes = (incoming, held) => incoming.at > held.at || (incoming.at === held.at && (incoming.rank ?? 0) >= (held.rank ?? 0));

const OK: Held = { suspended: false, suspended_at: null, state: "ok", suspend_at: null, pay_url: null, limits: [], enforcement: null };

/** The verdict a mirror entry (or the object's answer) gives; null (never mirrored) is ok. */
function heldOf(entry: MirrorEntry | null): Held {
  if (entry === null) return OK;
  const suspended = entry.state === "suspended";
  // `limits` may be absent from an object's answer (RPC is not parsed like KV entries) written before limits existed.
  return { suspended, suspended_at: suspended ? entry.suspended_at : null, state: entry.state, suspend_at: entry.suspend_at, pay_url: entry.pay_url ?? null, limits: entry.limits ?? [], since: entry.since, reason: entry.reason, parked: entry.parked, enforcement: entry.enforcement ?? null };
}

/**
 * The ingest hot path's two questions, cheapest source first: which org does this key
 * belong to, and is that org suspended? Memory → KV (a cold key's entry carries its org's
 * verdict; otherwise the org's mirror entry) → (only if KV says suspended) the org's object.
 * While one request re-reads an org's expired verdict, the others answer from it (see `verdict`).
 *
 * When a lookup fails, what is known decides: a suspension the mirror (or, with KV down,
 * this isolate) has seen keeps being refused while the object cannot confirm or lift it;
 * with nothing known, or an org last seen paying, the gate fails open (accepts). Either way
 * the failure is reported with the last verdict.
 */
export class IngestGate {
  readonly counters: GateCounters = { ...ZERO_COUNTERS };
  private readonly keys: TtlCache<IngestKeyRecord | null>;
  private readonly verdicts: TtlCache<Cached>;
  /** The re-reads under way, by org: when each began (never a promise: see `verdict`). Bounded by the gate's capacity and the requests in flight. */
  private readonly refreshing = new Map<string, { began: number }>();
  private readonly onDependencyFailure: (event: DependencyFailure) => void;
  private readonly capacity: number;

  constructor(options: { capacity?: number; onDependencyFailure?: (event: DependencyFailure) => void } = {}) {
    this.capacity = options.capacity ?? 50_000;
    this.keys = new TtlCache(this.capacity, REVOCATION_WINS);
    this.verdicts = new TtlCache(this.capacity, NEWER_TRUTH);
    this.onDependencyFailure = options.onDependencyFailure ?? (() => {});
  }

  /** The warm path, synchronous: the cached key and verdict, or undefined when I/O is needed. */
  cached(key: string, now: number): { org_id: string; key_id: string; verdict: Verdict } | undefined {
    const record = this.keys.get(key, now);
    if (!record) return undefined;
    const verdict = this.verdicts.get(record.org_id, now);
    if (!verdict) return undefined;
    return { org_id: record.org_id, key_id: record.key_id, verdict: fromMemory(verdict) };
  }

  async checkKey(key: string, sources: GateSources, now: number): Promise<KeyCheck> {
    const cached = this.keys.get(key, now);
    if (cached !== undefined) return cached === null ? { ok: false, code: "unknown_ingest_key" } : { ok: true, org_id: cached.org_id, key_id: cached.key_id };
    let record: IngestKeyRecord | null;
    try {
      this.counters.keyLookups++;
      record = await sources.lookupKey(await sources.hashKey(key));
    } catch {
      // A key seen before keeps working through a KV outage; an unseen one cannot be trusted.
      const last = this.keys.peek(key);
      return last ? { ok: true, org_id: last.org_id, key_id: last.key_id } : { ok: false, code: "auth_unavailable" };
    }
    // Stamped as the verdicts are: a record read before a revocation this isolate already saw does not come back.
    this.keys.set(key, record, now + (record ? GATE_TIMINGS.keyTtlMs : GATE_TIMINGS.unknownKeyTtlMs), { at: now, rank: record ? 0 : 1 });
    if (!record) return { ok: false, code: "unknown_ingest_key" };
    return record.verdict ? { ok: true, org_id: record.org_id, key_id: record.key_id, verdict: record.verdict } : { ok: true, org_id: record.org_id, key_id: record.key_id };
  }

  /**
   * `carried`: the org's mirror entry as a cold key's KV entry carried it. It stands in for the
   * mirror read exactly (same caching; a suspension still goes to the object), because the org's
   * object writes it in the same publication as the mirror entry, both through KV.
   */
  async verdict(orgId: string, sources: GateSources, now: number, carried?: MirrorEntry): Promise<Verdict> {
    const cached = this.verdicts.get(orgId, now);
    if (cached) return fromMemory(cached);
    // A steady flood from one org costs one re-read per expiry, not one per request: while a request re-reads the
    // verdict, the others answer from the one it replaces (if that expired within staleWhileRefreshMs), or, for a
    // suspension, wait for the re-read's answer. They never await the re-read itself: Workers runs whatever awaits
    // another request's I/O in that request's context, and a response made there fails ("Cannot perform I/O on
    // behalf of a different request"; the bench saw 500s).
    const refresh = this.refreshing.get(orgId);
    if (refresh !== undefined && now - refresh.began < GATE_TIMINGS.refreshMs) {
      const previous = this.verdicts.recent(orgId, now, GATE_TIMINGS.staleWhileRefreshMs);
      // Accepting meanwhile never hurts a payer. A refusal is final for exporters, so an expired suspension is not
      // answered again: the request waits, on timers of its own, for the re-read's answer (a payment it hears).
      if (previous !== undefined && !previous.suspended) return fromMemory(previous);
      if (previous !== undefined) {
        const fresh = await this.refreshed(orgId, refresh, now);
        if (fresh !== undefined) return fromMemory(fresh);
      }
    }
    const mine = { began: now };
    this.refreshing.set(orgId, mine);
    // A re-read whose request was cancelled never ends: past refreshMs it stands for nobody, and goes.
    if (this.refreshing.size > this.capacity) for (const [org, other] of this.refreshing) if (now - other.began >= GATE_TIMINGS.refreshMs) this.refreshing.delete(org);
    try {
      return await this.lookup(orgId, sources, now, carried);
    } finally {
      if (this.refreshing.get(orgId) === mine) this.refreshing.delete(orgId);
    }
  }

  /**
   * The answer of the re-read under way (`refresh`), polled from the cache every REFRESH_POLL_MS on this request's own
   * timers; undefined once that re-read ended without one, or after refreshWaitMs (it hangs, its request cancelled, say).
   */
  private async refreshed(orgId: string, refresh: { began: number }, now: number): Promise<Cached | undefined> {
    for (let waited = 0; waited < GATE_TIMINGS.refreshWaitMs; waited += REFRESH_POLL_MS) {
      await new Promise((resolve) => setTimeout(resolve, REFRESH_POLL_MS));
      const fresh = this.verdicts.get(orgId, now);
      if (fresh !== undefined) return fresh;
      if (this.refreshing.get(orgId) !== refresh) return undefined;
    }
    return undefined;
  }

  private async lookup(orgId: string, sources: GateSources, now: number, carried: MirrorEntry | undefined): Promise<Verdict> {
    let mirror: MirrorEntry | null;
    if (carried) {
      this.counters.carriedVerdicts++;
      mirror = carried;
    } else {
      try {
        this.counters.mirrorReads++;
        mirror = await sources.readMirror(orgId);
      } catch (error) {
        // Another lookup answered or decided while this read failed: that answer stands (a failing object is not asked again).
        const fresh = this.verdicts.get(orgId, now);
        if (fresh !== undefined) return fromMemory(fresh);
        // No mirror: a suspension this isolate saw is put to the object, the truth; anything
        // else (a paying org, or nothing known) is accepted without bothering the object.
        const last = this.verdicts.peek(orgId);
        const lastRank = this.verdicts.readOf(orgId)?.rank ?? 0;
        if (!last?.suspended) return this.degraded(orgId, "kv", error, now, { held: null, rank: lastRank });
        return this.confirm(orgId, sources, now, { held: knownOf(last)!, rank: lastRank }, "kv_and_object");
      }
    }
    // KV can lag what this isolate already heard from the object (a newer version). A suspension, KV's or the newer
    // answer's, always goes to the object; the newer answer only stands in for a lagging mirror when the object cannot answer.
    const version = mirror?.version ?? 0;
    const known = this.verdicts.known(orgId);
    const newer = known !== undefined && (known.read.rank ?? 0) > version ? { held: knownOf(known.value)!, rank: known.read.rank ?? 0 } : null;
    const held = heldOf(mirror);
    if (!held.suspended) {
      if (newer?.held.suspended) return this.confirm(orgId, sources, now, newer, "object");
      // Both say not suspended: the newer answer is kept (its version), so the lagging read is not re-read per request.
      const answer = newer?.held ?? held;
      this.verdicts.set(orgId, answer, now + GATE_TIMINGS.stateTtlMs, { at: now, rank: newer?.rank ?? version });
      return { ...answer, source: newer ? "memory" : "mirror" };
    }
    return this.confirm(orgId, sources, now, { held, rank: version }, "object", newer);
  }

  /**
   * Asks the object about a suspension; when it cannot answer, the suspension (`seen`) stands, unless `newer` (a real
   * answer this isolate heard, newer than the mirror entry that said suspended) says the org is not suspended.
   */
  private async confirm(orgId: string, sources: GateSources, now: number, seen: Ranked, dependency: DependencyFailure["dependency"], newer: Ranked | null = null): Promise<Verdict> {
    let truth: MirrorEntry;
    try {
      this.counters.objectCalls++;
      truth = await sources.askObject(orgId);
    } catch (error) {
      // The newer answer decides when there is one: its suspension stands, or it accepts.
      return this.degraded(orgId, dependency, error, now, newer === null ? seen : newer.held.suspended ? newer : { held: null, rank: newer.rank });
    }
    const verdict = heldOf(truth);
    this.verdicts.set(orgId, verdict, now + (verdict.suspended ? GATE_TIMINGS.confirmTtlMs : GATE_TIMINGS.stateTtlMs), { at: now, rank: truth.version });
    return { ...verdict, source: "object" };
  }

  /**
   * A lookup failed. `decision.held` is the suspension that stands (refuse), or null to accept: a dependency's outage
   * must never cut off an org that nothing says is suspended; `decision.rank`, the version of what it was decided from.
   * The answer is held briefly instead of hammering a dependency that is down or overloaded. An answer held that is
   * newer than what the decision knew (another lookup's, landed while this one waited) answers instead.
   */
  private degraded(orgId: string, dependency: DependencyFailure["dependency"], error: unknown, now: number, decision: { held: Held | null; rank: number }): Verdict {
    const { held } = decision;
    const last = knownOf(this.verdicts.peek(orgId));
    // Accepting (OK) is the decision; what was known before stays beside it for the customer's status.
    const entry: Cached = held ? { ...held, unconfirmed: true } : { ...OK, failed_open: { last_known: last } };
    if (!this.verdicts.standIn(orgId, entry, now + GATE_TIMINGS.failOpenTtlMs, { at: now, rank: decision.rank })) return fromMemory(this.verdicts.peek(orgId)!);
    if (held) this.counters.unconfirmedRefusals++;
    else this.counters.failOpens++;
    this.onDependencyFailure({
      org_id: orgId,
      dependency,
      error: error instanceof Error ? error.message : String(error),
      last_verdict: last === undefined ? "none" : last.suspended ? "suspended" : "ok",
      decision: held ? "refuse" : "accept",
    });
    return held ? { ...held, source: "unconfirmed" } : last ? { ...OK, source: "fail_open", last_known: last } : { ...OK, source: "fail_open" };
  }

  /** For tests and the benchmark: forget everything this isolate has cached. */
  reset(): void {
    this.keys.clear();
    this.verdicts.clear();
    this.refreshing.clear();
    Object.assign(this.counters, ZERO_COUNTERS);
  }
}
