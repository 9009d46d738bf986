import { PARKING_KEY } from "./keys.ts";
import { NO_PARKING, ParkingProgress } from "./parking.ts";
import { HistoryEntry, OrgRecord, type NewHistoryEntry } from "./record.ts";

export const HISTORY_LIMIT = 500;
/** Active ingest keys per org: each publication rewrites every one of them, so this bounds its writes. */
export const MAX_ACTIVE_KEYS = 20;

/** Runs a change to the org's storage atomically (`OrgStore.transact`); the object arms its alarm once per entry point, not here. */
export type Transact = <T>(change: () => T) => T;

export type StoredIngestKey = { key_id: string; key_hash: string; created_at: number };
export const DEDUPE_WINDOW_MS = 24 * 3_600_000;

/** Raised with every table change; `migrate` brings any older object up to it (see docs/storage.md). */
const SCHEMA_VERSION = 5;
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
    // (usage/ledger.ts). Version 5: usage_streams (usage/ledger.ts).
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
