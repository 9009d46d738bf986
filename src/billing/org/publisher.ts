import { log, logWarn } from "../../shared/log.ts";
import { Serialized } from "../../shared/serialized.ts";
import type { IngestKeyRecord } from "../../shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../../shared/storage-keys.ts";
import type { MirrorEntry } from "../../shared/billing-state.ts";
import type { IndexEntry } from "../index/entry.ts";
import { mirrorPending, newOrgRecord, payLink, publishedDeadline, retryDelay, type OrgRecord } from "./record.ts";
import type { OrgStore, StoredIngestKey, Transact } from "./store.ts";
import { orgIndex } from "../index/object.ts";
import { NO_PARKING, parkedFigures, type ParkingProgress } from "./parking.ts";

/**
 * What the world sees of an org: its KV mirror entry (read by the ingest Worker) and its
 * index entry (read by the console). Both are published after every change to them.
 * The deadline is published only while it can still fire (in grace, elapsed and awaiting
 * confirmation, or exempt with an end: the deadline that applies once the exemption ends),
 * not for lapsed orgs or exemptions without end.
 */
export function mirrorEntryOf(record: OrgRecord, parking: ParkingProgress = NO_PARKING): MirrorEntry {
  return {
    state: record.state,
    since: record.since,
    version: record.version,
    suspend_at: publishedDeadline(record),
    suspended_at: record.suspended_at,
    pay_url: payLink(record),
    limits: record.limits.map(({ feature_id, signals, reset_at }) => ({ feature_id, signals, reset_at })),
    // For the customer's status (GET /v1/status): already compared by sameProjection, so it owes no publication of its own.
    reason: record.reason,
    // Not compared by sameProjection: recordParking (object.ts) schedules the publication a change to it owes.
    parked: parkedFigures(parking),
  };
}

/** The index lists orgs by billing state, and which features each holds a plan limit on (for the sweep). */
export function indexEntryOf(record: OrgRecord): IndexEntry {
  const { limits, parked: _parked, reason: _reason, ...entry } = mirrorEntryOf(record);
  return { org_id: record.org_id, reason: record.reason, ...entry, limits: limits.map((limit) => limit.feature_id) };
}

/**
 * Whether two records publish the same thing (versions aside). Among `ok` records the reason
 * does not matter, so an org that is first seen in good standing publishes nothing at all.
 */
export function sameProjection(a: OrgRecord, b: OrgRecord): boolean {
  const x = mirrorEntryOf(a);
  const y = mirrorEntryOf(b);
  const sameReason = a.reason === b.reason || (x.state === "ok" && y.state === "ok");
  return (
    sameReason &&
    x.state === y.state &&
    x.since === y.since &&
    x.suspend_at === y.suspend_at &&
    x.suspended_at === y.suspended_at &&
    x.pay_url === y.pay_url &&
    JSON.stringify(x.limits) === JSON.stringify(y.limits)
  );
}

/**
 * Publishes the org's record where others read it: the KV mirror entry and a copy of it in each
 * active ingest key's entry (the ingest Worker's gate: one read for a cold key), and the index
 * entry (the console and the sweep). Writes are serialized and versioned;
 * a failed publication is retried by the object's alarm with backoff.
 */
export class Publisher {
  private readonly writes = new Serialized<void>();
  private readonly env: BillingEnv;
  private readonly store: OrgStore;
  private readonly transact: Transact;

  constructor(env: BillingEnv, store: OrgStore, transact: Transact) {
    this.env = env;
    this.store = store;
    this.transact = transact;
  }

  /** Publishes until both places hold the record's current projection, or one write fails. */
  flush(): Promise<void> {
    return this.writes.run(async () => {
      for (;;) {
        const record = this.store.load();
        if (record === null || !mirrorPending(record)) return;
        const entry = mirrorEntryOf(record, this.store.parking());
        // Both writes settle before deciding: a write still in flight could otherwise land after
        // a later flush's, leaving an older value in place while the record says it is current.
        const results = await Promise.allSettled([
          this.env.BILLING_STATE.put(billingStateKey(record.org_id), JSON.stringify(entry)),
          ...this.store.ingestKeys().map((key) => {
            const value: IngestKeyRecord = { org_id: record.org_id, key_id: key.key_id, created_at: key.created_at, verdict: entry };
            return this.env.INGEST_KEYS.put(ingestKeyHashKey(key.key_hash), JSON.stringify(value));
          }),
          orgIndex(this.env).upsert(indexEntryOf(record)),
        ]);
        const failure = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
        if (failure) {
          const now = Date.now();
          const failed = this.transact(() => {
            const current = this.store.load()!;
            const failures = current.mirror.failures + 1;
            const next = { ...current, mirror: { ...current.mirror, failures, retry_at: now + retryDelay(failures) } };
            this.store.save(next);
            return next;
          });
          logWarn({ event: "mirror_write_failed", org_id: record.org_id, version: entry.version, error: String(failure.reason), retry_at: failed.mirror.retry_at });
          return;
        }
        this.transact(() => {
          const current = this.store.load()!;
          this.store.save({ ...current, mirror: { version: Math.max(current.mirror.version, entry.version), retry_at: null, failures: 0 } });
        });
        log({ event: "mirror_written", org_id: record.org_id, state: entry.state, version: entry.version });
      }
    });
  }

  /**
   * Writes one key's entry with the org's verdict as it is when the write runs. Queued behind any
   * publication in flight, so a key minted meanwhile never keeps an older verdict.
   */
  writeKey(orgId: string, key: StoredIngestKey): Promise<void> {
    return this.writes.run(async () => {
      const verdict = mirrorEntryOf(this.store.load() ?? newOrgRecord(orgId, Date.now()), this.store.parking());
      const value: IngestKeyRecord = { org_id: orgId, key_id: key.key_id, created_at: key.created_at, verdict };
      await this.env.INGEST_KEYS.put(ingestKeyHashKey(key.key_hash), JSON.stringify(value));
    }, `write:${key.key_id}`);
  }

  /**
   * Deletes a revoked key's entry. Queued behind any publication in flight (which may still write
   * it, having read the keys before the revocation), so the delete always lands last.
   */
  deleteKey(key: StoredIngestKey): Promise<void> {
    return this.writes.run(() => this.env.INGEST_KEYS.delete(ingestKeyHashKey(key.key_hash)), `delete:${key.key_id}`);
  }
}
