import type { MirrorEntry } from "../shared/billing-state.ts";
import type { IngestKeyRecord } from "../shared/ingest-key.ts";
import { TtlCache } from "./ttl-cache.ts";

/** Where the gate looks things up; injected so the same gate runs against KV/DO or in-memory fakes. */
export type GateSources = {
  hashKey(key: string): Promise<string>;
  /** INGEST_KEYS by key hash. */
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
  /** After a failed lookup, the fail-open verdict is kept this long before trying again. */
  failOpenTtlMs: 2_000,
};

export type Verdict = {
  suspended: boolean;
  suspended_at: number | null;
  /** Where the answer came from: memory, the KV mirror, the object, or a failed lookup. */
  source: "memory" | "mirror" | "object" | "fail_open";
};

export type KeyCheck = { ok: true; org_id: string; key_id: string } | { ok: false; code: "unknown_ingest_key" | "auth_unavailable" };

export type FailOpen = { org_id: string; dependency: "kv" | "object"; error: string; last_verdict: "ok" | "suspended" | "none" };

export type GateCounters = { keyLookups: number; mirrorReads: number; objectCalls: number; failOpens: number };

/**
 * The ingest hot path's two questions, cheapest source first: which org does this key
 * belong to, and is that org suspended? Memory → KV mirror → (only if the mirror says
 * suspended) the org's object. A failed lookup never refuses data: it accepts (fails open)
 * and reports what was last known.
 */
export class IngestGate {
  readonly counters: GateCounters = { keyLookups: 0, mirrorReads: 0, objectCalls: 0, failOpens: 0 };
  private readonly keys: TtlCache<IngestKeyRecord | null>;
  private readonly verdicts: TtlCache<Omit<Verdict, "source">>;
  private readonly onFailOpen: (event: FailOpen) => void;

  constructor(options: { capacity?: number; onFailOpen?: (event: FailOpen) => void } = {}) {
    this.keys = new TtlCache(options.capacity ?? 50_000);
    this.verdicts = new TtlCache(options.capacity ?? 50_000);
    this.onFailOpen = options.onFailOpen ?? (() => {});
  }

  /** The warm path, synchronous: the cached key and verdict, or undefined when I/O is needed. */
  cached(key: string, now: number): { org_id: string; key_id: string; verdict: Verdict } | undefined {
    const record = this.keys.get(key, now);
    if (!record) return undefined;
    const verdict = this.verdicts.get(record.org_id, now);
    if (!verdict) return undefined;
    return { org_id: record.org_id, key_id: record.key_id, verdict: { ...verdict, source: "memory" } };
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
    this.keys.set(key, record, now + (record ? GATE_TIMINGS.keyTtlMs : GATE_TIMINGS.unknownKeyTtlMs));
    return record ? { ok: true, org_id: record.org_id, key_id: record.key_id } : { ok: false, code: "unknown_ingest_key" };
  }

  async verdict(orgId: string, sources: GateSources, now: number): Promise<Verdict> {
    const cached = this.verdicts.get(orgId, now);
    if (cached) return { ...cached, source: "memory" };

    let mirror: MirrorEntry | null;
    try {
      this.counters.mirrorReads++;
      mirror = await sources.readMirror(orgId);
    } catch (error) {
      return this.failOpen(orgId, "kv", error, now);
    }
    if (mirror === null || mirror.state !== "suspended") {
      const verdict = { suspended: false, suspended_at: null };
      this.verdicts.set(orgId, verdict, now + GATE_TIMINGS.stateTtlMs);
      return { ...verdict, source: "mirror" };
    }

    let truth: MirrorEntry;
    try {
      this.counters.objectCalls++;
      truth = await sources.askObject(orgId);
    } catch (error) {
      return this.failOpen(orgId, "object", error, now);
    }
    const suspended = truth.state === "suspended";
    const verdict = { suspended, suspended_at: suspended ? truth.suspended_at : null };
    this.verdicts.set(orgId, verdict, now + (suspended ? GATE_TIMINGS.confirmTtlMs : GATE_TIMINGS.stateTtlMs));
    return { ...verdict, source: "object" };
  }

  /** Accept: a dependency's outage must never cut off an org. The log says what was last known. */
  private failOpen(orgId: string, dependency: FailOpen["dependency"], error: unknown, now: number): Verdict {
    this.counters.failOpens++;
    const last = this.verdicts.peek(orgId);
    const verdict = { suspended: false, suspended_at: null };
    this.verdicts.set(orgId, verdict, now + GATE_TIMINGS.failOpenTtlMs);
    this.onFailOpen({
      org_id: orgId,
      dependency,
      error: error instanceof Error ? error.message : String(error),
      last_verdict: last === undefined ? "none" : last.suspended ? "suspended" : "ok",
    });
    return { ...verdict, source: "fail_open" };
  }

  /** For tests and the benchmark: forget everything this isolate has cached. */
  reset(): void {
    this.keys.clear();
    this.verdicts.clear();
    Object.assign(this.counters, { keyLookups: 0, mirrorReads: 0, objectCalls: 0, failOpens: 0 });
  }
}
