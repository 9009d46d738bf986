import type { ActivityDelivery } from "../../shared/contract.ts";
import { HOUR_MS, hourOf, type ActivityHour } from "../../shared/usage.ts";
import { ACTIVITY_COLUMNS_DDL, ACTIVITY_ROW_SQL, activityOf, activityStart, addActivity, WOULD_REFUSALS, type ActivityRow } from "../usage/activity.ts";
import { StreamMarks, type AbandonedGap } from "../usage/stream-marks.ts";
import type { WouldRefuseOrg } from "./entry.ts";

/**
 * An index shard's activity (issue 20): what became of its orgs' requests per hour (the console's chart), as the
 * ingest Worker's `ActivityMessage`s carry them (shared/usage.ts), one part per shard. Here rather than in each
 * org's object: one message a flush window then wakes at most 16 shards, not every active org's object (the
 * cold-keys bench went from 0.75x to 0.08x the runtime hop when activity woke the orgs' objects).
 *
 * Each part is folded once: the producer numbers the parts per stream and shard (1, 2, 3, …), and `activity_streams`
 * keeps each stream's mark exactly as the org's ledger does for usage (usage/stream-marks.ts). Rows are kept for the
 * chart's 30 days (usage/activity.ts `activityStart`), the same window as the org's own `usage_activity`.
 */

/** The shard's activity tables (docs/storage.md), created with the index's own (object.ts `ensureSchema`). */
export const SHARD_ACTIVITY_DDL = `
  CREATE TABLE IF NOT EXISTS org_activity (org_id TEXT NOT NULL, hour INTEGER NOT NULL, ${ACTIVITY_COLUMNS_DDL}, PRIMARY KEY (org_id, hour));
  CREATE INDEX IF NOT EXISTS org_activity_hour ON org_activity (hour);
  CREATE TABLE IF NOT EXISTS activity_streams (stream TEXT PRIMARY KEY, high INTEGER NOT NULL, gaps TEXT NOT NULL, at INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS activity_streams_at ON activity_streams (at);
`;

/** What one `record` did: parts folded now, parts seen before, and gaps given up (for the caller's log). */
export type RecordedActivity = { recorded: number; duplicates: number; abandoned: AbandonedGap[] };

/** The shard's `org_activity` and `activity_streams`. */
export class ShardActivity {
  private readonly storage: DurableObjectStorage;
  private readonly sql: SqlStorage;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
    this.sql = storage.sql;
  }

  /**
   * Folds the parts not seen before, in one transaction (the marks and the counts land together, so a part is
   * never counted without being marked, nor marked without being counted). Hours before the window are dropped,
   * here and from the table, as are the rows of streams silent for the window (stream-marks.ts).
   */
  record(deliveries: readonly ActivityDelivery[], now: number): RecordedActivity {
    return this.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM org_activity WHERE hour < ?", activityStart(now));
      const marks = new StreamMarks(this.sql, "activity_streams", now);
      const fresh = deliveries.filter((delivery) => marks.admit(delivery.stream, delivery.seq));
      marks.save();
      const byOrg = new Map<string, ActivityHour[][]>();
      for (const { orgs } of fresh) {
        for (const { org_id, hours } of orgs) {
          const lists = byOrg.get(org_id);
          if (lists) lists.push(hours);
          else byOrg.set(org_id, [hours]);
        }
      }
      for (const [orgId, lists] of byOrg) addActivity(this.sql, { table: "org_activity", orgId }, activityOf(lists, now));
      return { recorded: fresh.length, duplicates: deliveries.length - fresh.length, abandoned: marks.abandoned };
    });
  }

  /** The org's hours in the window, oldest first (rows past it may wait for the next fold: left out). */
  rows(orgId: string, now: number): ActivityRow[] {
    return this.sql.exec<ActivityRow>(`SELECT ${ACTIVITY_ROW_SQL} FROM org_activity WHERE org_id = ? AND hour >= ? ORDER BY hour`, orgId, activityStart(now)).toArray();
  }

  /** The console overview's would-be-refused orgs of this shard (`WOULD_REFUSED_SQL`), at most `limit`. */
  wouldRefused(now: number, limit: number): WouldRefuseOrg[] {
    const since = hourOf(now) - 23 * HOUR_MS;
    return this.sql.exec<WouldRefuseOrg>(WOULD_REFUSED_SQL, since, since, limit).toArray();
  }
}

/**
 * The last 24 hours' would-be refusals (parameters: the first hour, twice, and the limit) summed per org, the most
 * first. Over both tables: `would_refuse`, which org objects still write from the activity of older ingest Workers'
 * usage messages (object.ts `recordWouldRefuse`), and `org_activity` (the codes' sum, as the org's object sums
 * them; its hours without any left out, so an org with none is not listed). A request is counted by one producer
 * only, so never in both. `org_activity` (up to 30 days of rows) is read through `org_activity_hour` (a test checks
 * the plan); `would_refuse` keeps 48 hours and is read whole, as before.
 */
export const WOULD_REFUSED_SQL = `SELECT org_id, SUM(requests) AS requests, MAX(hour) AS last_hour FROM (
    SELECT org_id, hour, requests FROM would_refuse WHERE hour >= ?
    UNION ALL
    SELECT org_id, hour, ${WOULD_REFUSALS} AS requests FROM org_activity WHERE hour >= ? AND ${WOULD_REFUSALS} > 0
  ) GROUP BY org_id ORDER BY requests DESC, org_id LIMIT ?`;
