import type { UsageDelivery } from "../../shared/contract.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";
import { HOUR_MS, hourOf, type ActivityHour, type ActivityKind } from "../../shared/usage.ts";
import type { WouldRefuseHours } from "../index/entry.ts";
import { ACTIVITY_DAYS, type ActivityView, type ActivityViewHour } from "./activity-view.ts";

/**
 * The org's activity per hour (issue 21, the console's chart): what the ingest Worker accepted,
 * refused (402, 429), would have refused (observe mode; also per code) and parked, in requests, and
 * the items metering counted in what went upstream (shared/usage.ts `ActivityHour`). One row per hour,
 * the last 30 days only (at most 720 rows: older ones go at every fold).
 *
 * Where it is kept (issue 20): new activity travels in `ActivityMessage`s to the org's index shard
 * (index/activity.ts, table `org_activity`). The org's own `usage_activity` table below folds only usage
 * messages that still carry `activity` (ingest Workers from before that change, and their messages on the
 * queue at the deploy), inside recordUsage's transaction, for the messages the ledger found new, so a message
 * is counted once (the ledger's dedupe); its rows age out of the window within 30 days of the last such
 * message. The admin view shows the two merged per hour (`mergeActivity`).
 */

export const ACTIVITY_HOURS = ACTIVITY_DAYS * 24;

/** The columns version 7 added (see `upgrade`), with their DDL. */
const V7_COLUMNS = {
  would_refuse_billing_suspended: "INTEGER NOT NULL DEFAULT 0",
  would_refuse_plan_limit_reached: "INTEGER NOT NULL DEFAULT 0",
  // Would-be refusals counted by a message that names no code (an ingest Worker from before the split; a version 6 row's).
  would_refuse_unknown: "INTEGER NOT NULL DEFAULT 0",
  // NULL: no message for the hour carried items (metering off then, or only refusals): not the same as 0 items metered.
  accepted_items: "INTEGER",
  would_refuse_items: "INTEGER",
} as const;

/** Every counting column after the key, with its DDL: the same in the org's `usage_activity` and a shard's `org_activity` (index/activity.ts). */
const COUNT_COLUMNS = { accepted: "INTEGER NOT NULL DEFAULT 0", refused: "INTEGER NOT NULL DEFAULT 0", would_refuse: "INTEGER NOT NULL DEFAULT 0", parked: "INTEGER NOT NULL DEFAULT 0", ...V7_COLUMNS } as const;
export const ACTIVITY_COLUMNS_DDL = Object.entries(COUNT_COLUMNS).map(([name, type]) => `${name} ${type}`).join(", ");
/** The row's columns after `hour`, in the table's order. */
const ROW_COLUMNS = Object.keys(COUNT_COLUMNS) as (keyof typeof COUNT_COLUMNS)[];
/** What a read selects to get `ActivityRow`s. */
export const ACTIVITY_ROW_SQL = `hour, ${ROW_COLUMNS.join(", ")}`;

/**
 * The table's DDL (a `TableOwner`, created by OrgStore's migration; docs/storage.md). Version 6 created
 * it; version 7 added the would-be refusals per code and the items of the accepted and would-be-refused
 * requests. The kinds (`accepted`, `refused`, `would_refuse`, `parked`) say what became of each request,
 * once each; the codes count every request observe mode let through, whatever became of it: one
 * forwarded is also `would_refuse`, one parked in an outage also `parked` (so the codes' sum can pass
 * `would_refuse`, and the overview's list and Analytics Engine agree).
 */
export const ACTIVITY_TABLES = {
  ddl: `CREATE TABLE IF NOT EXISTS usage_activity (hour INTEGER PRIMARY KEY, ${ACTIVITY_COLUMNS_DDL});`,
  /** A version 6 table gets version 7's columns: its rows keep their totals, their would-be refusals under no code (`unknown`), and no items. */
  upgrade: (sql: SqlStorage) => {
    const columns = sql.exec<{ name: string }>("PRAGMA table_info(usage_activity)").toArray().map((column) => column.name);
    for (const [name, type] of Object.entries(V7_COLUMNS)) if (!columns.includes(name)) sql.exec(`ALTER TABLE usage_activity ADD COLUMN ${name} ${type}`);
    if (!columns.includes("would_refuse_unknown")) sql.exec("UPDATE usage_activity SET would_refuse_unknown = would_refuse");
  },
};

/** One hour's counts, `hour` the epoch ms of its start; items null where no message carried them. */
export type ActivityRow = { hour: number } & Record<ActivityKind, number> & {
    would_refuse_billing_suspended: number;
    would_refuse_plan_limit_reached: number;
    would_refuse_unknown: number;
    accepted_items: number | null;
    would_refuse_items: number | null;
  };

/** The first hour kept at `now`: the window is the 720 hours ending with the current one. */
export function activityStart(now: number): number {
  return hourOf(now) - (ACTIVITY_HOURS - 1) * HOUR_MS;
}

/**
 * Lists of hours (one per message, or per org in an activity part) summed per hour, inside the window: an hour
 * older than it is dropped (it cannot be shown), one after the current hour (a producer's clock ahead) counts
 * in the current one. An hour that names no code for its would-be refusals (from before the split) counts them
 * under `unknown`. Pure, so the object can also hand the would-be refusals on (the console overview's list).
 */
export function activityOf(lists: readonly (readonly ActivityHour[])[], now: number): ActivityRow[] {
  const start = activityStart(now);
  const current = hourOf(now);
  return sumByHour(lists.flat().filter((counted) => counted.hour >= start).map((counted) => rowOf(counted, Math.min(counted.hour, current))));
}

/**
 * The admin view's rows: the org's own (`usage_activity`, from older producers) and its index shard's
 * (`org_activity`) summed per hour, oldest first. Items stay null only where both are (nothing metered).
 */
export function mergeActivity(own: readonly ActivityRow[], shard: readonly ActivityRow[]): ActivityRow[] {
  return sumByHour([...own, ...shard]);
}

function rowOf(counted: ActivityHour, hour: number): ActivityRow {
  const codes = counted.would_refuse_codes ?? {};
  const items = counted.items;
  return {
    hour,
    accepted: counted.accepted ?? 0,
    refused: counted.refused ?? 0,
    would_refuse: counted.would_refuse ?? 0,
    parked: counted.parked ?? 0,
    would_refuse_billing_suspended: codes.billing_suspended ?? 0,
    would_refuse_plan_limit_reached: codes.plan_limit_reached ?? 0,
    would_refuse_unknown: counted.would_refuse_codes === undefined ? (counted.would_refuse ?? 0) : 0,
    accepted_items: items ? (items.accepted ?? 0) : null,
    would_refuse_items: items ? (items.would_refuse ?? 0) : null,
  };
}

/** Rows of the same hour added up (items: null + null stays null, as in the tables' upsert), oldest first. */
function sumByHour(rows: readonly ActivityRow[]): ActivityRow[] {
  const hours = new Map<number, ActivityRow>();
  for (const row of rows) {
    const sum = hours.get(row.hour);
    if (!sum) {
      hours.set(row.hour, { ...row });
      continue;
    }
    // Only the items columns can be null, so the counts stay numbers.
    const into = sum as Record<(typeof ROW_COLUMNS)[number], number | null>;
    for (const column of ROW_COLUMNS) into[column] = into[column] === null && row[column] === null ? null : (into[column] ?? 0) + (row[column] ?? 0);
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
  return folded.some((row) => wouldRefusals(row) > 0) && (pushedHour === null || pushedHour < hourOf(now));
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
    const rows = activityOf(fresh.map((message) => message.activity?.hours ?? []), now);
    addActivity(this.sql, { table: "usage_activity" }, rows);
    return rows;
  }

  /** The window's hours with something counted, oldest first (rows past the window may wait for the next fold: left out). */
  points(now: number): ActivityRow[] {
    return this.sql.exec<ActivityRow>(`SELECT ${ACTIVITY_ROW_SQL} FROM usage_activity WHERE hour >= ? ORDER BY hour`, activityStart(now)).toArray();
  }

  /** The last 24 hours' would-be refusals, per hour that had some (at most 24), for the index. */
  wouldRefuseHours(now: number): WouldRefuseHours {
    return this.sql
      .exec<{ hour: number; requests: number }>(
        `SELECT hour, ${WOULD_REFUSALS} AS requests FROM usage_activity WHERE hour >= ? AND ${WOULD_REFUSALS} > 0 ORDER BY hour`,
        hourOf(now) - 23 * HOUR_MS,
      )
      .toArray();
  }
}

/**
 * Adds rows to an activity table: the org's `usage_activity` (one row per hour) or a shard's `org_activity` (per
 * org and hour). Items: NULL + NULL stays NULL (nothing metered), anything else adds as numbers. Synchronous, for
 * the caller's transaction.
 */
export function addActivity(sql: SqlStorage, into: { table: "usage_activity" } | { table: "org_activity"; orgId: string }, rows: readonly ActivityRow[]): void {
  const keys = into.table === "org_activity" ? ["org_id", "hour"] : ["hour"];
  const keyValues = into.table === "org_activity" ? [into.orgId] : [];
  const columns = [...keys, ...ROW_COLUMNS];
  const statement = `INSERT INTO ${into.table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})
    ON CONFLICT (${keys.join(", ")}) DO UPDATE SET ${ROW_COLUMNS.map((c) =>
      c.endsWith("_items") ? `${c} = CASE WHEN ${c} IS NULL AND excluded.${c} IS NULL THEN NULL ELSE COALESCE(${c}, 0) + COALESCE(excluded.${c}, 0) END` : `${c} = ${c} + excluded.${c}`,
    ).join(", ")}`;
  for (const row of rows) sql.exec(statement, ...keyValues, row.hour, ...ROW_COLUMNS.map((c) => row[c]));
}

/** Rows (oldest first) as the admin view shows them; `incomplete` when part of them could not be read (the shard's). */
export function activityView(rows: readonly ActivityRow[], incomplete: boolean): ActivityView {
  return { unit: "requests", days: ACTIVITY_DAYS, hours: rows.map(viewHour), ...(incomplete ? { incomplete: true } : {}) };
}

/** Every request observe mode let through in the hour, whatever became of it: its codes, and those counted under none. */
const wouldRefusals = (row: ActivityRow): number => row.would_refuse_billing_suspended + row.would_refuse_plan_limit_reached + row.would_refuse_unknown;
export const WOULD_REFUSALS = "(would_refuse_billing_suspended + would_refuse_plan_limit_reached + would_refuse_unknown)";

/** A row as the admin view shows it: the would-be refusals per code (those naming none under `unknown`), the items where metered. */
export function viewHour(row: ActivityRow): ActivityViewHour {
  const { hour, accepted, refused, would_refuse, parked, would_refuse_billing_suspended: billing_suspended, would_refuse_plan_limit_reached: plan_limit_reached, would_refuse_unknown: unknown } = row;
  const items = row.accepted_items === null && row.would_refuse_items === null ? {} : { items: { accepted: row.accepted_items ?? 0, would_refuse: row.would_refuse_items ?? 0 } };
  return { hour: iso(hour)!, accepted, refused, would_refuse, parked, would_refuse_by_code: { billing_suspended, plan_limit_reached, unknown }, ...items };
}
