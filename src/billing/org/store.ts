import { log, logWarn } from "../../shared/log.ts";
import { Serialized } from "../../shared/serialized.ts";
import type { IngestKeyRecord } from "../../shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../../shared/storage-keys.ts";
import type { MirrorEntry } from "../../shared/billing-state.ts";
import type { IndexEntry } from "../index/entry.ts";
import { orgIndex } from "../index/object.ts";
import { PARKING_KEY } from "./keys.ts";
import { figuresDiffer, NO_PARKING, parkedFigures, parkedPublicationAt, ParkingProgress } from "./parking.ts";
import { HistoryEntry, mirrorPending, newOrgRecord, OrgRecord, payLink, publishedDeadline, retryDelay, type NewHistoryEntry } from "./record.ts";

/**
 * The org's storage: its own rows (`OrgStore`) and the copies of them it publishes for others to
 * read (`Publisher`: the KV mirror entry, each ingest key's copy of it, and the index entry). The
 * projection those copies carry (`mirrorEntryOf`) sits beside the writes that publish it.
 */

export const HISTORY_LIMIT = 500;
/** Active ingest keys per org: each publication rewrites every one of them, so this bounds its writes. */
export const MAX_ACTIVE_KEYS = 20;

/** Runs a change to the org's storage atomically (`OrgStore.transact`); the object arms its alarm once per entry point, not here. */
export type Transact = <T>(change: () => T) => T;

export type StoredIngestKey = { key_id: string; key_hash: string; created_at: number };
export const DEDUPE_WINDOW_MS = 24 * 3_600_000;

/** Raised with every table change; `migrate` brings any older object up to it (see docs/storage.md). 7: usage_activity's would-be refusals per code and items (usage/activity.ts). */
const SCHEMA_VERSION = 7;
/**
 * A module's share of the object's tables: their DDL (CREATE ... IF NOT EXISTS, so it can run again)
 * and how it brings its older tables up to date. The module that reads and writes a table owns its DDL.
 */
export type TableOwner = { ddl: string; upgrade?: (sql: SqlStorage) => void };

/**
 * The org's storage: its record (one JSON document validated on read), its history (newest 500
 * kept), the webhook message ids seen in the last 24 h, its ingest keys, its parking progress (the
 * one key of the synchronous key-value storage), the one way to write atomically (`transact`); and the
 * object's one schema migration, which also creates the tables other modules own (`owners`: the
 * outbound events' in events.ts, the usage ledger's in usage/ledger.ts). Every table is listed in
 * docs/storage.md. All methods are synchronous, so a caller can compose them inside `transactionSync`.
 */
export class OrgStore {
  private readonly storage: DurableObjectStorage;
  private readonly sql: SqlStorage;
  /** One `transactionSync`: every write of the object and its collaborators goes through it. */
  readonly transact: Transact;

  constructor(storage: DurableObjectStorage, owners: readonly TableOwner[]) {
    this.storage = storage;
    this.sql = storage.sql;
    this.transact = (change) => storage.transactionSync(change);
    this.migrate(owners);
  }

  /** The org's parking progress (parking.ts); none until the first report. */
  parking(): ParkingProgress {
    const stored = ParkingProgress.safeParse(this.storage.kv.get(PARKING_KEY) ?? {});
    return stored.success ? stored.data : NO_PARKING;
  }

  saveParking(progress: ParkingProgress): void {
    this.storage.kv.put(PARKING_KEY, progress);
  }

  private migrate(owners: readonly TableOwner[]): void {
    this.sql.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    const row = this.sql.exec<{ version: number }>("SELECT version FROM schema_version").toArray()[0];
    if (row && row.version >= SCHEMA_VERSION) return;
    // Version 1: org, history, seen_messages, ingest_keys (here), outbox (events.ts). Version 2: dead_letters
    // (events.ts). Version 3: outbox.first_attempt_at (events.ts). Version 4: usage_seen and usage_ledger
    // (usage/ledger.ts). Version 5: usage_streams (usage/ledger.ts). Version 6: usage_activity (usage/activity.ts).
    // Version 7: usage_activity's would-be refusals per code and items columns (usage/activity.ts, its upgrade).
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS org (id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS seen_messages (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS seen_messages_at ON seen_messages (at);
      CREATE TABLE IF NOT EXISTS ingest_keys (key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);
    `);
    for (const owner of owners) {
      this.sql.exec(owner.ddl);
      owner.upgrade?.(this.sql);
    }
    this.sql.exec("DELETE FROM schema_version");
    this.sql.exec("INSERT INTO schema_version (version) VALUES (?)", SCHEMA_VERSION);
  }

  load(): OrgRecord | null {
    const row = this.sql.exec<{ doc: string }>("SELECT doc FROM org WHERE id = 1").toArray()[0];
    return row ? OrgRecord.parse(JSON.parse(row.doc)) : null;
  }

  save(record: OrgRecord): void {
    this.sql.exec("INSERT INTO org (id, doc) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc", JSON.stringify(record));
  }

  appendHistory(entry: NewHistoryEntry): void {
    this.sql.exec("INSERT INTO history (doc) VALUES (?)", JSON.stringify(entry));
    this.sql.exec("DELETE FROM history WHERE seq <= (SELECT MAX(seq) FROM history) - ?", HISTORY_LIMIT);
  }

  /** Newest first. */
  history(limit = HISTORY_LIMIT): HistoryEntry[] {
    return this.sql
      .exec<{ doc: string }>("SELECT doc FROM history ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((row) => HistoryEntry.parse(JSON.parse(row.doc)));
  }

  addIngestKey(key: StoredIngestKey): void {
    this.sql.exec("INSERT INTO ingest_keys (key_id, key_hash, created_at) VALUES (?, ?, ?)", key.key_id, key.key_hash, key.created_at);
  }

  /** A key by id, revoked or not. */
  ingestKey(keyId: string): (StoredIngestKey & { revoked_at: number | null }) | null {
    return this.sql.exec<StoredIngestKey & { revoked_at: number | null }>("SELECT key_id, key_hash, created_at, revoked_at FROM ingest_keys WHERE key_id = ?", keyId).toArray()[0] ?? null;
  }

  /** Active keys, oldest first. */
  ingestKeys(): StoredIngestKey[] {
    return this.sql.exec<StoredIngestKey>("SELECT key_id, key_hash, created_at FROM ingest_keys WHERE revoked_at IS NULL ORDER BY created_at, key_id").toArray();
  }

  revokeIngestKey(keyId: string, now: number): void {
    this.sql.exec("UPDATE ingest_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", now, keyId);
  }

  /** Records a webhook message id; false when it was already seen within the dedupe window. */
  markMessageSeen(id: string, now: number): boolean {
    this.sql.exec("DELETE FROM seen_messages WHERE at < ?", now - DEDUPE_WINDOW_MS);
    const seen = this.sql.exec("SELECT 1 FROM seen_messages WHERE id = ?", id).toArray().length > 0;
    if (seen) return false;
    this.sql.exec("INSERT INTO seen_messages (id, at) VALUES (?, ?)", id, now);
    return true;
  }
}

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
    enforcement: record.enforcement?.mode ?? null,
    // For the customer's status (GET /v1/status): already compared by sameProjection, so it owes no publication of its own.
    reason: record.reason,
    // Not compared by sameProjection: recordParking (object.ts) schedules the publication a change to it owes.
    parked: parkedFigures(parking),
  };
}

/** The index lists orgs by billing state, and which features each holds a plan limit on (for the sweep). */
export function indexEntryOf(record: OrgRecord): IndexEntry {
  const { limits, parked: _parked, reason: _reason, enforcement: _enforcement, ...entry } = mirrorEntryOf(record);
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
    x.enforcement === y.enforcement &&
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
        const now = Date.now();
        const putOff = this.transact(() => {
          const current = this.store.load()!;
          const written = { ...current, mirror: { version: Math.max(current.mirror.version, entry.version), retry_at: null, failures: 0 } };
          // A parking report that came while these writes were in flight found a publication pending and owed
          // none: if it moved the figures, this publication owes them, now or (throttled) by the alarm.
          const parking = this.store.parking();
          if (mirrorPending(written) || !figuresDiffer(entry.parked, parkedFigures(parking))) {
            this.store.save(written);
            return null;
          }
          const at = parkedPublicationAt(parking.published_at, now);
          const version = written.version + 1;
          this.store.save({ ...written, version, projection_version: version, mirror: { ...written.mirror, retry_at: at > now ? at : null } });
          this.store.saveParking({ ...parking, published_at: at });
          return at > now ? at : null;
        });
        log({ event: "mirror_written", org_id: record.org_id, state: entry.state, version: entry.version });
        // Put off by the throttle: the alarm publishes it (the caller arms it; see recordParking in object.ts).
        if (putOff !== null) return;
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
