import type { UsageDelivery } from "../../shared/contract.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";
import { ACTIVITY_KINDS, HOUR_MS, hourOf, type ActivityKind } from "../../shared/usage.ts";
import type { WouldRefuseHours } from "../index/entry.ts";
import { ACTIVITY_DAYS, type ActivityView } from "./activity-view.ts";

/**
 * The org's activity per hour (issue 21, the console's chart): what the ingest Worker accepted,
 * refused (402, 429), would have refused (observe mode) and parked, in requests, as its usage
 * messages carry it (shared/usage.ts `UsageActivity`). One row per hour, the last 30 days only
 * (at most 720 rows: older ones go at every fold). Folded inside recordUsage's transaction, for
 * the messages the ledger found new, so a message is counted once (the ledger's dedupe).
 */

export const ACTIVITY_HOURS = ACTIVITY_DAYS * 24;

/** The table's DDL (a `TableOwner`, created by OrgStore's migration; docs/storage.md). Version 6. */
export const ACTIVITY_TABLES = {
  ddl: `
    CREATE TABLE IF NOT EXISTS usage_activity (
      hour INTEGER PRIMARY KEY,
      accepted INTEGER NOT NULL DEFAULT 0,
      refused INTEGER NOT NULL DEFAULT 0,
      would_refuse INTEGER NOT NULL DEFAULT 0,
      parked INTEGER NOT NULL DEFAULT 0
    );
  `,
};

/** One hour's counts, `hour` the epoch ms of its start. */
export type ActivityRow = { hour: number } & Record<ActivityKind, number>;

/** The first hour kept at `now`: the window is the 720 hours ending with the current one. */
export function activityStart(now: number): number {
  return hourOf(now) - (ACTIVITY_HOURS - 1) * HOUR_MS;
}

/**
 * The hours of these messages summed, inside the window: an hour older than it is dropped (it
 * cannot be shown), one after the current hour (a producer's clock ahead) counts in the current one.
 * Pure, so the object can also hand the would-be refusals on (the console overview's list).
 */
export function activityOf(messages: readonly UsageDelivery[], now: number): ActivityRow[] {
  const start = activityStart(now);
  const current = hourOf(now);
  const hours = new Map<number, ActivityRow>();
  for (const message of messages) {
    for (const counted of message.activity?.hours ?? []) {
      if (counted.hour < start) continue;
      const hour = Math.min(counted.hour, current);
      let row = hours.get(hour);
      if (!row) hours.set(hour, (row = { hour, accepted: 0, refused: 0, would_refuse: 0, parked: 0 }));
      for (const kind of ACTIVITY_KINDS) row[kind] += counted[kind] ?? 0;
    }
  }
  return [...hours.values()].sort((a, b) => a.hour - b.hour);
}

/**
 * Whether the org's object hands its would-be refusals to the index now (the console overview's list
 * of orgs observe mode let through): when this fold brought some, at most once per org and hour
 * (`pushedHour`, the hour of the last write). Each write carries the last 24 hours' totals, so the
 * list is exact up to the hour before the org's latest write and counts the latest hour as far as then.
 */
export function wouldRefuseDue(folded: readonly ActivityRow[], pushedHour: number | null, now: number): boolean {
  return folded.some((row) => row.would_refuse > 0) && (pushedHour === null || pushedHour < hourOf(now));
}

/** The `usage_activity` table. Synchronous, so callers compose it inside `transact`. */
export class ActivityLog {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  /** Adds the new messages' activity (the ledger's `fresh`), and drops the hours past the window. Returns what was added. */
  fold(fresh: readonly UsageDelivery[], now: number): ActivityRow[] {
    this.sql.exec("DELETE FROM usage_activity WHERE hour < ?", activityStart(now));
    const rows = activityOf(fresh, now);
    for (const row of rows) {
      this.sql.exec(
        `INSERT INTO usage_activity (hour, accepted, refused, would_refuse, parked) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (hour) DO UPDATE SET accepted = accepted + excluded.accepted, refused = refused + excluded.refused,
           would_refuse = would_refuse + excluded.would_refuse, parked = parked + excluded.parked`,
        row.hour,
        row.accepted,
        row.refused,
        row.would_refuse,
        row.parked,
      );
    }
    return rows;
  }

  /** The window's hours with something counted, oldest first (rows past the window may wait for the next fold: left out). */
  points(now: number): ActivityRow[] {
    return this.sql.exec<ActivityRow>("SELECT hour, accepted, refused, would_refuse, parked FROM usage_activity WHERE hour >= ? ORDER BY hour", activityStart(now)).toArray();
  }

  /** The last 24 hours' would-be refusals, per hour that had some (at most 24), for the index. */
  wouldRefuseHours(now: number): WouldRefuseHours {
    return this.sql
      .exec<{ hour: number; requests: number }>("SELECT hour, would_refuse AS requests FROM usage_activity WHERE hour >= ? AND would_refuse > 0 ORDER BY hour", hourOf(now) - 23 * HOUR_MS)
      .toArray();
  }

  view(now: number): ActivityView {
    return { unit: "requests", days: ACTIVITY_DAYS, hours: this.points(now).map((row) => ({ ...row, hour: iso(row.hour)! })) };
  }
}
