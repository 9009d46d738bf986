import { NotifyEvent } from "./notifications.ts";
import { HistoryEntry, OrgRecord, type NewHistoryEntry } from "./record.ts";

export const HISTORY_LIMIT = 500;
/** Active ingest keys per org: each publication rewrites every one of them, so this bounds its writes. */
export const MAX_ACTIVE_KEYS = 20;

/** Runs a change to the org's storage atomically, then re-arms the object's alarm (OrgBilling's `transact`). */
export type Transact = <T>(change: () => T) => T;

export type StoredIngestKey = { key_id: string; key_hash: string; created_at: number };
export const DEDUPE_WINDOW_MS = 24 * 3_600_000;

/** Raised with every table change; `migrate` brings any older object up to it (see docs/storage.md). */
const SCHEMA_VERSION = 5;
/** Dead letters kept per org, newest first. */
export const DEAD_LETTER_LIMIT = 100;

export type { DeadLetter } from "./notifications.ts";
import type { DeadLetter } from "./notifications.ts";

/**
 * The org's SQLite storage: its record (one JSON document validated on read), its history
 * (newest 500 kept), the webhook message ids seen in the last 24 h, its ingest keys, and its
 * outbound events (queued and dead letters). Every table is listed in docs/storage.md. All methods are
 * synchronous, so a caller can compose them inside `transactionSync`.
 */
export class OrgStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
    this.migrate();
  }

  private migrate(): void {
    this.sql.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    const row = this.sql.exec<{ version: number }>("SELECT version FROM schema_version").toArray()[0];
    if (row && row.version >= SCHEMA_VERSION) return;
    // Version 1: org, history, seen_messages, outbox, ingest_keys. Version 2: dead_letters.
    // Version 3: outbox.first_attempt_at (the give-up clock starts at the first delivery attempt).
    // Version 4: usage_seen and usage_ledger (metering; read and written by usage/ledger.ts).
    // Version 5: usage_streams (a row per ingest isolate's stream, not per batch); usage_seen stays for the
    // messages sent before streams that are still on the queue, and empties within its 4-day window.
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS org (id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS seen_messages (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS seen_messages_at ON seen_messages (at);
      CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS ingest_keys (key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);
      CREATE TABLE IF NOT EXISTS dead_letters (seq INTEGER PRIMARY KEY, event TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS usage_seen (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS usage_seen_at ON usage_seen (at);
      CREATE TABLE IF NOT EXISTS usage_streams (stream TEXT PRIMARY KEY, high INTEGER NOT NULL, gaps TEXT NOT NULL, at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS usage_streams_at ON usage_streams (at);
      CREATE TABLE IF NOT EXISTS usage_ledger (
        feature_id TEXT PRIMARY KEY,
        epoch TEXT NOT NULL,
        received INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 0,
        pending_since INTEGER,
        report_seq INTEGER NOT NULL DEFAULT 0,
        report_value INTEGER,
        report_attempts INTEGER NOT NULL DEFAULT 0,
        report_next_at INTEGER,
        report_first_at INTEGER,
        reported INTEGER NOT NULL DEFAULT 0,
        reports INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        last_reported_at INTEGER,
        last_error TEXT
      );
    `);
    const outboxColumns = this.sql.exec<{ name: string }>("PRAGMA table_info(outbox)").toArray().map((column) => column.name);
    if (!outboxColumns.includes("first_attempt_at")) this.sql.exec("ALTER TABLE outbox ADD COLUMN first_attempt_at INTEGER");
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

  enqueue(event: NotifyEvent, now: number): void {
    this.sql.exec("INSERT INTO outbox (event, next_at) VALUES (?, ?)", JSON.stringify(event), now);
  }

  /** The oldest undelivered event: events go out strictly in order. */
  outboxHead(): { seq: number; event: NotifyEvent; attempts: number; next_at: number; first_attempt_at: number | null } | null {
    const row = this.sql
      .exec<{ seq: number; event: string; attempts: number; next_at: number; first_attempt_at: number | null }>("SELECT seq, event, attempts, next_at, first_attempt_at FROM outbox ORDER BY seq LIMIT 1")
      .toArray()[0];
    return row ? { ...row, event: NotifyEvent.parse(JSON.parse(row.event)) } : null;
  }

  delivered(seq: number): void {
    this.sql.exec("DELETE FROM outbox WHERE seq = ?", seq);
  }

  retryLater(seq: number, attempts: number, nextAt: number, now: number): void {
    this.sql.exec("UPDATE outbox SET attempts = ?, next_at = ?, first_attempt_at = COALESCE(first_attempt_at, ?) WHERE seq = ?", attempts, nextAt, now, seq);
  }

  /** Sets an undeliverable event aside, so the events after it can go out. */
  deadLetter(seq: number, attempts: number, error: string, now: number): void {
    this.sql.exec("INSERT INTO dead_letters (seq, event, attempts, error, at) SELECT seq, event, ?, ?, ? FROM outbox WHERE seq = ?", attempts, error, now, seq);
    this.sql.exec("DELETE FROM outbox WHERE seq = ?", seq);
    this.sql.exec("DELETE FROM dead_letters WHERE seq NOT IN (SELECT seq FROM dead_letters ORDER BY seq DESC LIMIT ?)", DEAD_LETTER_LIMIT);
  }

  /** Newest first. */
  deadLetters(): DeadLetter[] {
    return this.sql
      .exec<{ event: string; attempts: number; error: string; at: number }>("SELECT event, attempts, error, at FROM dead_letters ORDER BY seq DESC")
      .toArray()
      .map((row) => ({ ...row, event: NotifyEvent.parse(JSON.parse(row.event)) }));
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
