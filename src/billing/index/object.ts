import { DurableObject } from "cloudflare:workers";
import { ActivityDeliveries, type ActivityDelivery, type ActivityShardRpc, type RecordActivityAnswer } from "../../shared/contract.ts";
import { log, logError, logWarn } from "../../shared/log.ts";
import { HOUR_MS } from "../../shared/usage.ts";
import type { ActivityRow } from "../usage/activity.ts";
import { SHARD_ACTIVITY_DDL, ShardActivity } from "./activity.ts";
import { LAST_KEY, type ListedState } from "./cursor.ts";
import { IndexEntry, OVERVIEW_LISTED, WOULD_REFUSE_SHOWN, WouldRefuseHours } from "./entry.ts";
import type { HandedOrg, HeldEntry, IndexShard, KeyedEntry, OverviewPart } from "./shard-api.ts";
import { LEGACY_INDEX_NAME, partitionByShard, SHARD_NAMES, shardName, shardNameOf } from "../../shared/index-shard.ts";

export { orgIndex, type OrgIndexClient } from "./sharded.ts";
export type { HandedOrg, HeldEntry, KeyedEntry, OverviewPart } from "./shard-api.ts";

/** Would-be refusals are kept this long per org and hour: the overview sums the last 24 h. */
const WOULD_REFUSE_RETENTION_MS = 48 * HOUR_MS;

/** Restored orgs stay listed this long, for "recently restored". */
const RESTORED_RETENTION_MS = 30 * 86_400_000;
/** Orgs the single "index" object hands to the shards per alarm run (with their limits and would-be refusals). */
export const DRAIN_BATCH = 1_000;
/** A hand-over that failed (a shard unreachable) is tried again this much later. */
const DRAIN_RETRY_MS = 10_000;

/**
 * Every list reads its rows in one order, `sort_key` then `org_id`, which the index `orgs_by_sort` serves
 * for each state: overdue by deadline (soonest first, none last), suspended and ok most recent first (the
 * time negated; a suspension with no time last). Computed by SQLite from the row (a virtual column), so
 * the key a cursor carries is exactly the one the index is ordered by.
 */
const SORT_KEY_SQL = `CASE state WHEN 'overdue' THEN IFNULL(suspend_at, ${LAST_KEY}) WHEN 'suspended' THEN IFNULL(-suspended_at, ${LAST_KEY}) ELSE -since END`;

type Row = Omit<IndexEntry, "state" | "reason" | "limits"> & { state: string; reason: string; sort_key: number };
const HeldRow = IndexEntry.pick({ org_id: true, state: true, reason: true, since: true, limits: true });

/**
 * Durable Objects cannot be listed, so every org that ever left `ok` is registered in the index by
 * its own object, after each published change (and again by that object's alarm until it
 * lands); so is every org holding a plan limit (table `org_limits`, apart from `orgs`, so an
 * org that never left ok is never listed as restored). Versions make every write idempotent and
 * order-proof.
 *
 * This class is one shard of the index (shared/index-shard.ts: `index/16/00` to `index/16/15`, an org's shard by a hash
 * of its id; sharded.ts fans reads out). The object named "index" is the index as it was before sharding:
 * on an existing deployment it holds every row, so when first reached after the deploy it hands them to
 * their shards, DRAIN_BATCH orgs per alarm run, and empties (`alarm`, `drainBatch`). Why this way rather than reading the
 * old object forever or copying in one call: a copy in one request would have to move every row at once (a
 * hundred thousand rows is well past what one request should carry), reading it forever keeps the one object
 * in every read; in batches the move is bounded per run, restartable after a failure (absorbing is
 * idempotent), and readers include the old object only until it says it is drained (sharded.ts).
 */
export class OrgIndex extends DurableObject<BillingEnv> implements IndexShard, ActivityShardRpc {
  private readonly sql: SqlStorage;
  /** The name this object was reached by: a shard's (`index/16/03`) or the old single object's. */
  private readonly name: string | null;
  /** The pre-sharding single object, being (or done being) drained into the shards. */
  private readonly legacy: boolean;
  /** A shard: whether the old single object is drained (until then it remembers its latest writes, `recent_writes`). */
  private legacyDone: boolean;
  /** The shard's activity (activity.ts): the chart's counts per org and hour, since issue 20. */
  private readonly activity: ShardActivity;

  constructor(ctx: DurableObjectState, env: BillingEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ensureSchema(this.sql);
    // An object woken by its alarm may not know its name: the name it was first reached by is kept.
    if (ctx.id.name !== undefined && this.meta("name") === null) this.setMeta("name", ctx.id.name);
    this.name = ctx.id.name ?? this.meta("name");
    this.legacy = this.name === LEGACY_INDEX_NAME;
    this.legacyDone = this.meta("legacy_done") !== null;
    this.activity = new ShardActivity(ctx.storage);
  }

  private meta(key: string): string | null {
    return this.sql.exec<{ value: string }>("SELECT value FROM index_meta WHERE key = ?", key).toArray()[0]?.value ?? null;
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO index_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }

  async upsert(entry: IndexEntry): Promise<void> {
    // A Worker version from before the sharding (during a gradual deploy) still writes here: passed on to the shard.
    if (this.legacy) return this.env.ORG_INDEX.getByName(shardNameOf(entry.org_id)).upsert(entry);
    // An ok entry only updates an org already listed (it is being restored). An org that never left
    // ok, publishing for another reason (a plan limit), is not one the index is for: listing it would
    // show it as "restored".
    if (entry.state === "ok") {
      this.sql.exec(
        "UPDATE orgs SET state = ?, reason = ?, since = ?, version = ?, suspend_at = ?, suspended_at = ? WHERE org_id = ? AND version <= ?",
        entry.state, entry.reason, entry.since, entry.version, entry.suspend_at, entry.suspended_at, entry.org_id, entry.version,
      );
    } else {
      this.writeOrg(entry);
    }
    // Held limits: a row while the org holds one; emptied (kept a while, for versions' sake) when none is left.
    if (entry.limits.length > 0) this.writeLimits(entry.org_id, entry.limits, entry.version, Date.now());
    else this.sql.exec("UPDATE org_limits SET features = '[]', version = ?, at = ? WHERE org_id = ? AND version <= ?", entry.version, Date.now(), entry.org_id, entry.version);
    // Until the old single object is drained it may still hold an older row of this org: the newest entry is
    // kept so that row, when handed over, cannot bring back what this write replaced (an ok update above finds no row to update).
    if (!this.legacyDone) {
      this.sql.exec(
        `INSERT INTO recent_writes (org_id, entry, version, at) VALUES (?, ?, ?, ?)
         ON CONFLICT (org_id) DO UPDATE SET entry = excluded.entry, version = excluded.version, at = excluded.at WHERE excluded.version >= recent_writes.version`,
        entry.org_id, JSON.stringify(entry), entry.version, Date.now(),
      );
      this.sql.exec("DELETE FROM recent_writes WHERE at < ?", Date.now() - RESTORED_RETENTION_MS);
    }
    this.dropExpired();
  }

  /**
   * Restored orgs past RESTORED_RETENTION_MS, and emptied limits as old, dropped. Run at every write and before
   * every read that lists ok orgs: a shard takes only its own orgs' writes, so one with no write for 30 days
   * would otherwise keep listing (and counting) orgs restored long ago.
   */
  private dropExpired(): void {
    // An ok org's sort key is its since, negated: the index finds the expired ones without reading the others.
    this.sql.exec("DELETE FROM orgs WHERE state = 'ok' AND sort_key > ?", -(Date.now() - RESTORED_RETENTION_MS));
    this.sql.exec("DELETE FROM org_limits WHERE features = '[]' AND at < ?", Date.now() - RESTORED_RETENTION_MS);
  }

  /** The org's row, inserted or replaced by a newer (or the same) version. */
  private writeOrg(entry: Omit<IndexEntry, "limits" | "pay_url">): void {
    this.sql.exec(
      `INSERT INTO orgs (state, reason, since, version, suspend_at, suspended_at, org_id) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (org_id) DO UPDATE SET state = excluded.state, reason = excluded.reason, since = excluded.since,
         version = excluded.version, suspend_at = excluded.suspend_at, suspended_at = excluded.suspended_at
       WHERE excluded.version >= orgs.version`,
      entry.state, entry.reason, entry.since, entry.version, entry.suspend_at, entry.suspended_at, entry.org_id,
    );
  }

  private writeLimits(orgId: string, features: string[], version: number, at: number): void {
    this.sql.exec(
      `INSERT INTO org_limits (org_id, features, version, at) VALUES (?, ?, ?, ?)
       ON CONFLICT (org_id) DO UPDATE SET features = excluded.features, version = excluded.version, at = excluded.at WHERE excluded.version >= org_limits.version`,
      orgId, JSON.stringify([...features].sort()), version, at,
    );
  }

  /**
   * The orgs among `ids` Tollgate holds as not ok or holding a plan limit, for the sweep's comparison
   * (one call per customers.list page). An org absent from the answer is ok with no limit.
   */
  async heldAmong(ids: string[]): Promise<HeldEntry[]> {
    // One JSON parameter rather than one per id: SQL statements take at most 100 bound parameters.
    return this.sql
      .exec<{ org_id: string; state: string | null; reason: string | null; since: number | null; features: string | null }>(
        `SELECT j.value AS org_id, o.state, o.reason, o.since, l.features FROM json_each(?) j
           LEFT JOIN orgs o ON o.org_id = j.value LEFT JOIN org_limits l ON l.org_id = j.value
         WHERE (o.state IS NOT NULL AND o.state != 'ok') OR (l.features IS NOT NULL AND l.features != '[]')`,
        JSON.stringify(ids),
      )
      .toArray()
      .map((row) => HeldRow.parse({ org_id: row.org_id, state: row.state ?? "ok", reason: row.reason ?? "not_past_due", since: row.since ?? 0, limits: JSON.parse(row.features ?? "[]") }));
  }

  /** How many orgs Tollgate holds restricted (not ok, or ok with a plan limit): what the sweep's restore share is measured against. */
  async restrictedCount(): Promise<number> {
    const row = this.sql
      .exec<{ n: number }>(
        `SELECT (SELECT COUNT(*) FROM orgs WHERE state != 'ok') +
                (SELECT COUNT(*) FROM org_limits l WHERE l.features != '[]' AND NOT EXISTS (SELECT 1 FROM orgs o WHERE o.org_id = l.org_id AND o.state != 'ok')) AS n`,
      )
      .one();
    return row.n;
  }

  /** Up to `limit` orgs in a state after `after` (exclusive; null: from the first), in list order: `orgs_by_sort` serves it. */
  async page(query: { state: ListedState; after: { key: number; orgId: string } | null; limit: number }): Promise<KeyedEntry[]> {
    if (query.state === "ok") this.dropExpired();
    const rows =
      query.after === null
        ? this.sql.exec<Row>("SELECT * FROM orgs WHERE state = ? ORDER BY sort_key, org_id LIMIT ?", query.state, query.limit)
        : this.sql.exec<Row>(
            "SELECT * FROM orgs WHERE state = ? AND (sort_key, org_id) > (?, ?) ORDER BY sort_key, org_id LIMIT ?",
            query.state, query.after.key, query.after.orgId, query.limit,
          );
    return rows.toArray().map(keyed);
  }

  /** The orgs among `ids` that are not ok, for the sweep's comparison (one call per customers.list page). */
  async notOkAmong(ids: string[]): Promise<Pick<IndexEntry, "org_id" | "state" | "reason">[]> {
    // One JSON parameter rather than one per id: SQL statements take at most 100 bound parameters.
    return this.sql
      .exec<Row>("SELECT org_id, state, reason FROM orgs WHERE state != 'ok' AND org_id IN (SELECT value FROM json_each(?))", JSON.stringify(ids))
      .toArray()
      .map((row) => IndexEntry.pick({ org_id: true, state: true, reason: true }).parse(row));
  }

  /** Every org that is not ok, with since when, for the sweep's last step (orgs the listing never showed). */
  async notOk(): Promise<Pick<IndexEntry, "org_id" | "state" | "reason" | "since">[]> {
    return this.sql
      .exec<Row>("SELECT org_id, state, reason, since FROM orgs WHERE state != 'ok' ORDER BY org_id")
      .toArray()
      .map((row) => IndexEntry.pick({ org_id: true, state: true, reason: true, since: true }).parse(row));
  }

  /**
   * An org's would-be refusals (observe mode, issue 21) per hour, as its object counts them: each hour's
   * total so far; an hour's total only grows, so the larger stays (a repeated or late write is harmless). The org's object writes
   * at most once an hour (usage/activity.ts `wouldRefuseDue`); rows past 48 h go at every write. Only for activity from ingest
   * Workers from before issue 20 (newer ones send it to `recordActivity`): the overview reads both (activity.ts `WOULD_REFUSED_SQL`).
   */
  async recordWouldRefuse(orgId: string, hours: WouldRefuseHours): Promise<{ ok: boolean }> {
    if (this.legacy) return this.env.ORG_INDEX.getByName(shardNameOf(orgId)).recordWouldRefuse(orgId, hours);
    // Refused whole, never stored, if malformed (answered, not thrown: the caller logs it).
    const parsed = WouldRefuseHours.safeParse(hours);
    if (!parsed.success) return { ok: false };
    for (const { hour, requests } of parsed.data) this.addWouldRefuse(orgId, hour, requests);
    this.sql.exec("DELETE FROM would_refuse WHERE hour < ?", Date.now() - WOULD_REFUSE_RETENTION_MS);
    return { ok: true };
  }

  private addWouldRefuse(orgId: string, hour: number, requests: number): void {
    this.sql.exec(
      "INSERT INTO would_refuse (org_id, hour, requests) VALUES (?, ?, ?) ON CONFLICT (org_id, hour) DO UPDATE SET requests = MAX(requests, excluded.requests)",
      orgId, hour, requests,
    );
  }

  /**
   * One call of the ingest Worker's usage consumer (shared/contract.ts `ActivityShardRpc`): this shard's parts of
   * activity messages, each folded once (activity.ts). Refused whole (`ok: false`, nothing stored; the consumer has
   * the messages delivered again) when malformed, when a part names an org of another shard (stored here, its
   * rows would never be read: the view asks the org's shard), or when sent to the old single object.
   */
  async recordActivity(deliveries: ActivityDelivery[]): Promise<RecordActivityAnswer> {
    const parsed = ActivityDeliveries.safeParse(deliveries);
    if (!parsed.success) {
      logWarn({ event: "activity_refused", shard: this.name, error: parsed.error.message });
      return { ok: false, error: `malformed activity deliveries: ${parsed.error.issues[0]?.message ?? ""}` };
    }
    // On the old single object every org is misplaced: no org's shard is "index".
    const misplaced = parsed.data.flatMap((delivery) => delivery.orgs).find((org) => shardNameOf(org.org_id) !== this.name);
    if (misplaced) {
      const error = this.legacy
        ? `the old single "${LEGACY_INDEX_NAME}" object keeps no activity: send each part to its shard`
        : `org ${misplaced.org_id} belongs to shard ${shardNameOf(misplaced.org_id)}, not ${this.name}`;
      // A producer's bug, not a passing fault: retried, it is refused again until the queue gives the messages up (max_retries).
      logError({ event: "activity_refused", shard: this.name, error });
      return { ok: false, error };
    }
    const result = this.activity.record(parsed.data, Date.now());
    log({ event: "activity_recorded", shard: this.name, parts: parsed.data.length, recorded: result.recorded, duplicates: result.duplicates });
    if (result.abandoned.length > 0) {
      // Activity may be lost if a part from these ever arrives: never silent (bounded: the first 10 named).
      logError({ event: "activity_gaps_abandoned", shard: this.name, gaps: result.abandoned.length, first: result.abandoned.slice(0, 10), message: "a stream had more gaps than the shard keeps; parts from the oldest are now taken for duplicates" });
    }
    return { ok: true, recorded: result.recorded, duplicates: result.duplicates };
  }

  /** The org's activity kept here, the window's hours oldest first (the org's view merges it with its own rows). */
  async activityOf(orgId: string, now: number): Promise<ActivityRow[]> {
    return this.activity.rows(orgId, now);
  }

  /** This shard's share of what the console's overview shows: its counts, and the first rows of each list (sharded.ts merges them). */
  async overview(now: number, horizonMs: number): Promise<OverviewPart> {
    this.dropExpired();
    const counts: Record<string, number> = { overdue: 0, suspended: 0, ok: 0 };
    for (const row of this.sql.exec<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM orgs GROUP BY state")) counts[row.state] = row.n;
    const select = (where: string, ...params: (string | number)[]) =>
      this.sql.exec<Row>(`SELECT * FROM orgs WHERE ${where} ORDER BY sort_key, org_id LIMIT ${OVERVIEW_LISTED}`, ...params).toArray().map(keyed);
    return {
      counts,
      // An overdue org's key is its deadline (none: past any horizon).
      due_soon: select("state = 'overdue' AND sort_key <= ?", now + horizonMs),
      recently_suspended: select("state = 'suspended'"),
      recently_restored: select("state = 'ok'"),
      would_refuse: this.activity.wouldRefused(now, WOULD_REFUSE_SHOWN),
    };
  }

  /**
   * The orgs among `ids` this shard holds anything of (a row, a limit, a write since the deploy): while the old
   * single object drains, its row of such an org is older than what the shard knows, and readers drop it.
   */
  async holding(ids: string[]): Promise<string[]> {
    return this.sql
      .exec<{ org_id: string }>(
        `SELECT value AS org_id FROM json_each(?) WHERE value IN (SELECT org_id FROM orgs) OR value IN (SELECT org_id FROM org_limits) OR value IN (SELECT org_id FROM recent_writes)`,
        JSON.stringify(ids),
      )
      .toArray()
      .map((row) => row.org_id);
  }

  /** The shard's SQLite size in bytes and its rows (the scale bench sums them over the shards). */
  async storageStats(): Promise<{ database_bytes: number; orgs: number }> {
    return { database_bytes: this.sql.databaseSize, orgs: this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM orgs").one().n };
  }

  /**
   * Rows handed over by the old single object (or seeded in bulk by the scale bench), applied as their own
   * writes would have been: each only over an older version. A newer write this shard took since the deploy
   * (`recent_writes`) wins over the old row, and is applied even when it says ok: the old row shows the org
   * did leave ok, so it is rightly listed as restored. Idempotent: a batch handed over twice lands once.
   */
  async absorb(orgs: HandedOrg[]): Promise<{ absorbed: number }> {
    this.ctx.storage.transactionSync(() => {
      for (const handed of orgs) {
        const recent = this.sql.exec<{ entry: string }>("SELECT entry FROM recent_writes WHERE org_id = ?", handed.org_id).toArray()[0];
        const newer = recent ? IndexEntry.parse(JSON.parse(recent.entry)) : null;
        if (handed.org) {
          if (newer && newer.version >= handed.org.version) this.writeOrg(newer);
          else this.writeOrg({ ...handed.org, org_id: handed.org_id });
        }
        if (handed.limits) {
          if (newer && newer.version >= handed.limits.version) this.writeLimits(handed.org_id, newer.limits, newer.version, Date.now());
          else this.writeLimits(handed.org_id, handed.limits.features, handed.limits.version, handed.limits.at);
        }
        for (const { hour, requests } of handed.would_refuse) this.addWouldRefuse(handed.org_id, hour, requests);
      }
    });
    return { absorbed: orgs.length };
  }

  /** Told by the old single object once it is drained: no old row can arrive any more, so the latest writes need not be kept. */
  async legacyDrained(): Promise<void> {
    this.setMeta("legacy_done", String(Date.now()));
    this.legacyDone = true;
    this.sql.exec("DELETE FROM recent_writes");
  }

  /**
   * The old single object: whether it is drained; if not, its drain is (re)started. Readers ask until it
   * says drained, and include it in their fan-out meanwhile (sharded.ts).
   */
  async drainStatus(): Promise<{ drained: boolean }> {
    if (!this.legacy || this.meta("drained") !== null) return { drained: true };
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
    return { drained: false };
  }

  /** The old single object's drain: the next DRAIN_BATCH orgs to their shards, then the next run; at the end the shards are told. */
  override async alarm(): Promise<void> {
    if (!this.legacy || this.meta("drained") !== null) return;
    try {
      const moved = await this.drainBatch();
      if (moved > 0) {
        await this.ctx.storage.setAlarm(Date.now());
        return;
      }
      await Promise.all(SHARD_NAMES.map((name) => this.env.ORG_INDEX.getByName(name).legacyDrained()));
      this.setMeta("drained", String(Date.now()));
      log({ event: "index_legacy_drained" });
    } catch (error) {
      logWarn({ event: "index_drain_failed", error: String(error), retry_in_ms: DRAIN_RETRY_MS });
      await this.ctx.storage.setAlarm(Date.now() + DRAIN_RETRY_MS);
    }
  }

  private async drainBatch(): Promise<number> {
    // Orgs first, then limits of orgs with no row, then would-be refusals of orgs with neither: each by its primary key.
    const ids = [
      "SELECT org_id FROM orgs ORDER BY org_id LIMIT ?",
      "SELECT org_id FROM org_limits ORDER BY org_id LIMIT ?",
      "SELECT DISTINCT org_id FROM would_refuse ORDER BY org_id LIMIT ?",
    ]
      .map((query) => this.sql.exec<{ org_id: string }>(query, DRAIN_BATCH).toArray().map((row) => row.org_id))
      .find((found) => found.length > 0);
    if (!ids) return 0;
    const handed = ids.map((orgId): HandedOrg => {
      const org = this.sql.exec<Row>("SELECT * FROM orgs WHERE org_id = ?", orgId).toArray()[0];
      const limits = this.sql.exec<{ features: string; version: number; at: number }>("SELECT features, version, at FROM org_limits WHERE org_id = ?", orgId).toArray()[0];
      return {
        org_id: orgId,
        org: org ? { state: IndexEntry.shape.state.parse(org.state), reason: IndexEntry.shape.reason.parse(org.reason), since: org.since, version: org.version, suspend_at: org.suspend_at, suspended_at: org.suspended_at } : null,
        limits: limits ? { features: JSON.parse(limits.features) as string[], version: limits.version, at: limits.at } : null,
        would_refuse: this.sql.exec<{ hour: number; requests: number }>("SELECT hour, requests FROM would_refuse WHERE org_id = ?", orgId).toArray(),
      };
    });
    const byId = new Map(handed.map((h) => [h.org_id, h]));
    await Promise.all(
      [...partitionByShard(ids)].map(([shard, part]) => this.env.ORG_INDEX.getByName(shardName(shard)).absorb(part.map((id) => byId.get(id)!))),
    );
    // Only once every shard holds its part: a failure above leaves the rows here, handed over again next run.
    this.ctx.storage.transactionSync(() => {
      for (const table of ["orgs", "org_limits", "would_refuse"]) this.sql.exec(`DELETE FROM ${table} WHERE org_id IN (SELECT value FROM json_each(?))`, JSON.stringify(ids));
    });
    log({ event: "index_legacy_handed_over", orgs: ids.length, left: this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM orgs").one().n });
    return ids.length;
  }
}

/**
 * The index's tables, created or brought up to date in place: the single object from before the sharding has
 * `orgs` without the sort key and with its old index `orgs_by_state` (it lists, while it drains, as a shard does).
 */
export function ensureSchema(sql: SqlStorage): void {
  sql.exec(`
    CREATE TABLE IF NOT EXISTS orgs (
      org_id TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT NOT NULL, since INTEGER NOT NULL,
      version INTEGER NOT NULL, suspend_at INTEGER, suspended_at INTEGER
    );
    CREATE TABLE IF NOT EXISTS org_limits (org_id TEXT PRIMARY KEY, features TEXT NOT NULL, version INTEGER NOT NULL, at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS would_refuse (org_id TEXT NOT NULL, hour INTEGER NOT NULL, requests INTEGER NOT NULL, PRIMARY KEY (org_id, hour));
    CREATE TABLE IF NOT EXISTS index_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS recent_writes (org_id TEXT PRIMARY KEY, entry TEXT NOT NULL, version INTEGER NOT NULL, at INTEGER NOT NULL);
    ${SHARD_ACTIVITY_DDL}
  `);
  // A virtual column: computed when read, so adding it rewrites no row and costs no storage (the index on it does).
  const hasSortKey = sql.exec("SELECT 1 FROM pragma_table_xinfo('orgs') WHERE name = 'sort_key'").toArray().length > 0;
  if (!hasSortKey) sql.exec(`ALTER TABLE orgs ADD COLUMN sort_key INTEGER GENERATED ALWAYS AS (${SORT_KEY_SQL}) VIRTUAL`);
  sql.exec(`
    DROP INDEX IF EXISTS orgs_by_state;
    CREATE INDEX IF NOT EXISTS orgs_by_sort ON orgs (state, sort_key, org_id);
  `);
}

function keyed(row: Row): KeyedEntry {
  return { ...IndexEntry.parse(row), sort_key: row.sort_key };
}
