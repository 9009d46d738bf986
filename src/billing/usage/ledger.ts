import type { UsageDelivery } from "../../shared/contract.ts";
import type { UsageFeatures } from "../../shared/usage.ts";
import { SIGNALS } from "../../shared/usage.ts";
import type { LedgerRow } from "./ledger-row.ts";
import { QUEUE_RETENTION_MS, StreamMarks, type AbandonedGap } from "./stream-marks.ts";

export type { LedgerRow } from "./ledger-row.ts";

/**
 * Queue message ids of batches sent before streams existed (no `stream`/`seq`) are remembered this long:
 * at least the usage queue's message retention, so any redelivery of one is recognised.
 * Only such messages still on the queue at the upgrade use `usage_seen`; it empties within this window.
 */
export const USAGE_DEDUPE_WINDOW_MS = QUEUE_RETENTION_MS;

/** usage_seen rows recorded for messages that have a stream (during the v5 deploy) carry this prefix before the queue id. */
export const STREAM_ID_PREFIX = "stream:";

/**
 * The ledger's tables (a `TableOwner`, checked where OrgStore takes it: no import back up into org/),
 * created by the object's one migration (org/store.ts, `OrgStore`). Version 4:
 * usage_seen and usage_ledger. Version 5: usage_streams (a row per ingest isolate's stream, not per
 * batch); usage_seen stays for the messages sent before streams that are still on the queue, and
 * empties within its 4-day window.
 */
export const USAGE_TABLES = {
  ddl: `
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
  `,
};

export type FrozenReport = { feature_id: string; value: number; key: string; attempts: number; first_at: number | null };

/** `fresh`: the messages folded now (not duplicates), for what else folds once per message (activity.ts). */
export type FoldResult = { recorded: number; duplicates: number; unmapped: number; abandoned: AbandonedGap[]; fresh: UsageDelivery[] };

/**
 * The org's usage ledger in its SQLite storage (tables `usage_streams`, `usage_seen` and `usage_ledger`: `USAGE_TABLES`,
 * created by OrgStore's migration; see docs/storage.md). Synchronous, so callers compose it inside `transact`.
 */
export class UsageLedger {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /**
   * Folds queue messages in, each batch at most once: by its stream and sequence (streams.ts), or, for a
   * message from before streams, by queue message id within USAGE_DEDUPE_WINDOW_MS.
   * Signals USAGE_FEATURES does not map are left out (`unmapped`): the ingest Worker counted them
   * under another configuration, and there is no feature to report them under.
   *
   * A stream's row goes once nothing of it was folded for USAGE_STREAM_WINDOW_MS (stream-marks.ts says why that is exact).
   */
  fold(messages: UsageDelivery[], features: UsageFeatures, now: number): FoldResult {
    this.sql.exec("DELETE FROM usage_seen WHERE at < ?", now - USAGE_DEDUPE_WINDOW_MS);
    const marks = new StreamMarks(this.sql, "usage_streams", now);
    const result: FoldResult = { recorded: 0, duplicates: 0, unmapped: 0, abandoned: marks.abandoned, fresh: [] };
    for (const message of messages) {
      if (!this.admit(message, marks, now)) {
        result.duplicates++;
        continue;
      }
      result.recorded++;
      result.fresh.push(message);
      for (const signal of SIGNALS) {
        const count = message.counts[signal] ?? 0;
        if (count === 0) continue;
        const feature = features[signal];
        if (feature === undefined) {
          result.unmapped += count;
          continue;
        }
        this.sql.exec(
          `INSERT INTO usage_ledger (feature_id, epoch, received, pending, pending_since) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (feature_id) DO UPDATE SET received = received + excluded.received, pending = pending + excluded.pending,
             pending_since = COALESCE(pending_since, excluded.pending_since)`,
          feature,
          crypto.randomUUID().slice(0, 8),
          count,
          count,
          now,
        );
      }
    }
    marks.save();
    return result;
  }

  /** Whether the message is new; records it as seen (in `marks`, written back by `fold`, or in usage_seen). */
  private admit(message: UsageDelivery, marks: StreamMarks, now: number): boolean {
    if (message.stream === undefined || message.seq === undefined) {
      // Also under STREAM_ID_PREFIX: the same queue message folded with its stream by a new consumer during the deploy.
      if (this.sql.exec("SELECT 1 FROM usage_seen WHERE id IN (?, ?)", message.id, STREAM_ID_PREFIX + message.id).toArray().length > 0) return false;
      this.sql.exec("INSERT INTO usage_seen (id, at) VALUES (?, ?)", message.id, now);
      return true;
    }
    if (!marks.admit(message.stream, message.seq)) return false;
    // Across the v5 deploy a consumer from before streams hands a queue message over without its stream/seq (folded by
    // id in usage_seen), and once that ack is lost a new consumer may be handed it again with them (issue 18). While
    // usage_seen holds a row from such a consumer (the days after the deploy), a stream message is checked by queue id
    // too, and recorded under STREAM_ID_PREFIX so an old consumer's later redelivery of it is caught as well. Those
    // rows do not count as legacy: once the old consumers are gone, usage_seen empties within two windows.
    if (this.legacyIdsInUse()) {
      if (this.sql.exec("SELECT 1 FROM usage_seen WHERE id IN (?, ?)", message.id, STREAM_ID_PREFIX + message.id).toArray().length > 0) return false;
      this.sql.exec("INSERT INTO usage_seen (id, at) VALUES (?, ?)", STREAM_ID_PREFIX + message.id, now);
    }
    return true;
  }

  /** Whether a message without a stream was folded within the window (usage_seen is pruned at the start of every fold). */
  private legacyIdsInUse(): boolean {
    return this.sql.exec("SELECT 1 FROM usage_seen WHERE id NOT LIKE ? LIMIT 1", `${STREAM_ID_PREFIX}%`).toArray().length > 0;
  }

  /**
   * Freezes the pending usage of every feature that has no report in flight and has waited
   * `intervalMs` (so reports aggregate), into its next report. Returns nothing: `due` finds them.
   */
  freezeDue(now: number, intervalMs: number): void {
    this.sql.exec(
      `UPDATE usage_ledger SET report_seq = report_seq + 1, report_value = pending, report_attempts = 0, report_next_at = ?,
         report_first_at = NULL, pending = 0, pending_since = NULL
       WHERE report_value IS NULL AND pending > 0 AND pending_since <= ?`,
      now,
      now - intervalMs,
    );
  }

  /** The reports whose (next) attempt is due. */
  due(orgId: string, now: number): FrozenReport[] {
    return this.sql
      .exec<LedgerRow>("SELECT * FROM usage_ledger WHERE report_value IS NOT NULL AND report_next_at <= ? ORDER BY feature_id", now)
      .toArray()
      .map((row) => ({ feature_id: row.feature_id, value: row.report_value!, key: idempotencyKey(orgId, row), attempts: row.report_attempts, first_at: row.report_first_at }));
  }

  /** Autumn has the report (applied now, or `duplicate`: by an earlier attempt). */
  settled(featureId: string, now: number, duplicate: boolean): void {
    this.sql.exec(
      `UPDATE usage_ledger SET reported = reported + report_value, reports = reports + 1, duplicates = duplicates + ?,
         report_value = NULL, report_attempts = 0, report_next_at = NULL, report_first_at = NULL, last_reported_at = ?, last_error = NULL
       WHERE feature_id = ? AND report_value IS NOT NULL`,
      duplicate ? 1 : 0,
      now,
      featureId,
    );
  }

  /** The attempt failed: the same report (same value, same key) is tried again at `nextAt`. */
  failed(featureId: string, error: string, nextAt: number, now: number): void {
    this.sql.exec(
      `UPDATE usage_ledger SET report_attempts = report_attempts + 1, report_next_at = ?, report_first_at = COALESCE(report_first_at, ?), last_error = ?
       WHERE feature_id = ? AND report_value IS NOT NULL`,
      nextAt,
      now,
      error,
      featureId,
    );
  }

  /** When the ledger next owes something: a report attempt, or pending usage whose aggregation window ends. */
  dueAt(intervalMs: number): number | null {
    const row = this.sql
      .exec<{ at: number | null }>(
        `SELECT MIN(CASE WHEN report_value IS NOT NULL THEN report_next_at WHEN pending > 0 THEN pending_since + ? END) AS at FROM usage_ledger`,
        intervalMs,
      )
      .toArray()[0];
    return row?.at ?? null;
  }

  rows(): LedgerRow[] {
    return this.sql.exec<LedgerRow>("SELECT * FROM usage_ledger ORDER BY feature_id").toArray();
  }
}

/**
 * Derived from what is reported: this org, this feature, this report. Sent as Autumn's
 * `Idempotency-Key` header; the same report always carries the same key.
 */
export function idempotencyKey(orgId: string, row: Pick<LedgerRow, "feature_id" | "epoch" | "report_seq">): string {
  return `tollgate:${orgId}:${row.feature_id}:${row.epoch}:${row.report_seq}`;
}
