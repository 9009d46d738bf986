import { DurableObject } from "cloudflare:workers";
import { HOUR_MS, hourOf } from "../../shared/usage.ts";
import { IndexEntry, type IndexCursor, WouldRefuseHours, type WouldRefuseOrg } from "./entry.ts";

/** Would-be refusals are kept this long per org and hour: the overview sums the last 24 h. */
const WOULD_REFUSE_RETENTION_MS = 48 * HOUR_MS;
/** The overview's list of would-be-refused orgs: the most refused first, at most this many. */
export const WOULD_REFUSE_SHOWN = 50;

/** Restored orgs stay listed this long, for "recently restored". */
const RESTORED_RETENTION_MS = 30 * 86_400_000;
const LISTED_STATES = ["overdue", "suspended", "ok"] as const;

type Row = Omit<IndexEntry, "state" | "reason" | "limits"> & { state: string; reason: string };

/** What the sweep compares with Autumn: an org's state, and the features it holds a plan limit on. */
export type HeldEntry = Pick<IndexEntry, "org_id" | "state" | "reason" | "since" | "limits">;
const HeldRow = IndexEntry.pick({ org_id: true, state: true, reason: true, since: true, limits: true });

/**
 * Durable Objects cannot be listed, so every org that ever left `ok` is registered here by
 * its own object, after each published change (and again by that object's alarm until it
 * lands); so is every org holding a plan limit (table `org_limits`, apart from `orgs`, so an
 * org that never left ok is never listed as restored). One instance, addressed by name;
 * versions make every write idempotent and order-proof.
 */
export class OrgIndex extends DurableObject<BillingEnv> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: BillingEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS orgs (
        org_id TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT NOT NULL, since INTEGER NOT NULL,
        version INTEGER NOT NULL, suspend_at INTEGER, suspended_at INTEGER
      );
      CREATE INDEX IF NOT EXISTS orgs_by_state ON orgs (state, suspend_at, suspended_at, since);
      CREATE TABLE IF NOT EXISTS org_limits (org_id TEXT PRIMARY KEY, features TEXT NOT NULL, version INTEGER NOT NULL, at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS would_refuse (org_id TEXT NOT NULL, hour INTEGER NOT NULL, requests INTEGER NOT NULL, PRIMARY KEY (org_id, hour));
    `);
  }

  async upsert(entry: IndexEntry): Promise<void> {
    // An ok entry only updates an org already listed (it is being restored). An org that never left
    // ok, publishing for another reason (a plan limit), is not one the index is for: listing it would
    // show it as "restored".
    const fields = [entry.state, entry.reason, entry.since, entry.version, entry.suspend_at, entry.suspended_at];
    if (entry.state === "ok") {
      this.sql.exec("UPDATE orgs SET state = ?, reason = ?, since = ?, version = ?, suspend_at = ?, suspended_at = ? WHERE org_id = ? AND version <= ?", ...fields, entry.org_id, entry.version);
    } else {
      this.sql.exec(
        `INSERT INTO orgs (state, reason, since, version, suspend_at, suspended_at, org_id) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (org_id) DO UPDATE SET state = excluded.state, reason = excluded.reason, since = excluded.since,
           version = excluded.version, suspend_at = excluded.suspend_at, suspended_at = excluded.suspended_at
         WHERE excluded.version >= orgs.version`,
        ...fields,
        entry.org_id,
      );
    }
    // Held limits: a row while the org holds one; emptied (kept a while, for versions' sake) when none is left.
    const features = JSON.stringify([...entry.limits].sort());
    if (entry.limits.length > 0) {
      this.sql.exec(
        `INSERT INTO org_limits (org_id, features, version, at) VALUES (?, ?, ?, ?)
         ON CONFLICT (org_id) DO UPDATE SET features = excluded.features, version = excluded.version, at = excluded.at WHERE excluded.version >= org_limits.version`,
        entry.org_id, features, entry.version, Date.now(),
      );
    } else {
      this.sql.exec("UPDATE org_limits SET features = '[]', version = ?, at = ? WHERE org_id = ? AND version <= ?", entry.version, Date.now(), entry.org_id, entry.version);
    }
    this.sql.exec("DELETE FROM orgs WHERE state = 'ok' AND since < ?", Date.now() - RESTORED_RETENTION_MS);
    this.sql.exec("DELETE FROM org_limits WHERE features = '[]' AND at < ?", Date.now() - RESTORED_RETENTION_MS);
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

  /** One page of orgs in a state: overdue by deadline (soonest first), suspended and ok most recent first. */
  async list(query: { state: (typeof LISTED_STATES)[number]; cursor: IndexCursor | null; limit: number }): Promise<{ orgs: IndexEntry[]; next_cursor: IndexCursor | null }> {
    // The cursor is the row offset (IndexCursor: digits, checked by the caller).
    const offset = query.cursor === null ? 0 : Number(query.cursor);
    const order =
      query.state === "overdue" ? "suspend_at IS NULL, suspend_at, org_id" : query.state === "suspended" ? "suspended_at DESC, org_id" : "since DESC, org_id";
    const rows = this.sql.exec<Row>(`SELECT * FROM orgs WHERE state = ? ORDER BY ${order} LIMIT ? OFFSET ?`, query.state, query.limit + 1, offset).toArray();
    const orgs = rows.slice(0, query.limit).map((row) => IndexEntry.parse(row));
    return { orgs, next_cursor: rows.length > query.limit ? String(offset + query.limit) : null };
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
   * at most once an hour (usage/activity.ts `wouldRefusePush`); rows past 48 h go at every write.
   */
  async recordWouldRefuse(orgId: string, hours: WouldRefuseHours): Promise<{ ok: boolean }> {
    // Refused whole, never stored, if malformed (answered, not thrown: the caller logs it).
    const parsed = WouldRefuseHours.safeParse(hours);
    if (!parsed.success) return { ok: false };
    for (const { hour, requests } of parsed.data) {
      this.sql.exec(
        "INSERT INTO would_refuse (org_id, hour, requests) VALUES (?, ?, ?) ON CONFLICT (org_id, hour) DO UPDATE SET requests = MAX(requests, excluded.requests)",
        orgId,
        hour,
        requests,
      );
    }
    this.sql.exec("DELETE FROM would_refuse WHERE hour < ?", Date.now() - WOULD_REFUSE_RETENTION_MS);
    return { ok: true };
  }

  /** What the console's overview shows. */
  async overview(now: number, horizonMs: number): Promise<{ counts: Record<string, number>; due_soon: IndexEntry[]; recently_suspended: IndexEntry[]; recently_restored: IndexEntry[]; would_refuse: WouldRefuseOrg[] }> {
    const counts = Object.fromEntries(LISTED_STATES.map((state) => [state, 0]));
    for (const row of this.sql.exec<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM orgs GROUP BY state")) counts[row.state] = row.n;
    const select = (where: string, order: string, ...params: (string | number)[]) =>
      this.sql.exec<Row>(`SELECT * FROM orgs WHERE ${where} ORDER BY ${order} LIMIT 20`, ...params).toArray().map((row) => IndexEntry.parse(row));
    return {
      counts,
      due_soon: select("state = 'overdue' AND suspend_at IS NOT NULL AND suspend_at <= ?", "suspend_at, org_id", now + horizonMs),
      recently_suspended: select("state = 'suspended'", "suspended_at DESC, org_id"),
      recently_restored: select("state = 'ok'", "since DESC, org_id"),
      // The last 24 hours: this hour and the 23 before it.
      would_refuse: this.sql
        .exec<WouldRefuseOrg>(
          "SELECT org_id, SUM(requests) AS requests, MAX(hour) AS last_hour FROM would_refuse WHERE hour >= ? GROUP BY org_id ORDER BY requests DESC, org_id LIMIT ?",
          hourOf(now) - 23 * HOUR_MS,
          WOULD_REFUSE_SHOWN,
        )
        .toArray(),
    };
  }
}

/** The single index of orgs that are not ok. */
export function orgIndex(env: { ORG_INDEX?: DurableObjectNamespace<OrgIndex> }): DurableObjectStub<OrgIndex> {
  if (!env.ORG_INDEX) {
    throw new Error("The ORG_INDEX Durable Object binding is missing: did you forget to add it (class OrgIndex, migration v2) to your wrangler.jsonc?");
  }
  return env.ORG_INDEX.getByName("index");
}
