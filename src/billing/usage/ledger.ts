import type { UsageCounts, UsageFeatures } from "../../shared/usage.ts";
import { SIGNALS } from "../../shared/usage.ts";
import type { LedgerRow } from "./ledger-row.ts";

export type { LedgerRow } from "./ledger-row.ts";

/**
 * Queue message ids are remembered this long: at least the usage queue's message retention
 * (4 days by default), so any redelivery of a message already folded is recognised.
 */
export const USAGE_DEDUPE_WINDOW_MS = 4 * 86_400_000;

/** One usage queue message as the consumer hands it to the org's object (`id` is the queue's message id). */
export type UsageDelivery = { id: string; counts: UsageCounts; first_at: number; last_at: number };

export type FrozenReport = { feature_id: string; value: number; key: string; attempts: number; first_at: number | null };

/**
 * The org's usage ledger in its SQLite storage (tables `usage_seen` and `usage_ledger`, created
 * by OrgStore's migration; see docs/storage.md). Synchronous, so callers compose it inside `transact`.
 */
export class UsageLedger {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /**
   * Folds queue messages in, each at most once (by message id within USAGE_DEDUPE_WINDOW_MS).
   * Signals USAGE_FEATURES does not map are left out (`unmapped`): the ingest Worker counted them
   * under another configuration, and there is no feature to report them under.
   */
  fold(messages: UsageDelivery[], features: UsageFeatures, now: number): { recorded: number; duplicates: number; unmapped: number } {
    this.sql.exec("DELETE FROM usage_seen WHERE at < ?", now - USAGE_DEDUPE_WINDOW_MS);
    let recorded = 0;
    let duplicates = 0;
    let unmapped = 0;
    for (const message of messages) {
      if (this.sql.exec("SELECT 1 FROM usage_seen WHERE id = ?", message.id).toArray().length > 0) {
        duplicates++;
        continue;
      }
      this.sql.exec("INSERT INTO usage_seen (id, at) VALUES (?, ?)", message.id, now);
      recorded++;
      for (const signal of SIGNALS) {
        const count = message.counts[signal] ?? 0;
        if (count === 0) continue;
        const feature = features[signal];
        if (feature === undefined) {
          unmapped += count;
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
    return { recorded, duplicates, unmapped };
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
