import { decodeCursor, encodeCursor, type ListedState } from "./cursor.ts";
import { type IndexCursor, type IndexEntry, OVERVIEW_LISTED, WOULD_REFUSE_SHOWN, type WouldRefuseHours } from "./entry.ts";
import type { HeldEntry, IndexShard, KeyedEntry, OverviewOf, OverviewPart } from "./shard-api.ts";
import type { ActivityRow } from "../usage/activity.ts";
import { LEGACY_INDEX_NAME, partitionByShard, SHARD_NAMES, shardName, shardNameOf } from "../../shared/index-shard.ts";

export type Overview = OverviewOf<IndexEntry>;

/** The index as its callers use it: one org's writes go to its shard; reads fan out to every shard and merge. */
export type OrgIndexClient = {
  upsert(entry: IndexEntry): Promise<void>;
  recordWouldRefuse(orgId: string, hours: WouldRefuseHours): Promise<{ ok: boolean }>;
  /** The org's activity kept by its shard (index/activity.ts), the window's hours at `now`, oldest first. */
  activityOf(orgId: string, now: number): Promise<ActivityRow[]>;
  heldAmong(ids: string[]): Promise<HeldEntry[]>;
  notOkAmong(ids: string[]): Promise<Pick<IndexEntry, "org_id" | "state" | "reason">[]>;
  notOk(): Promise<Pick<IndexEntry, "org_id" | "state" | "reason" | "since">[]>;
  restrictedCount(): Promise<number>;
  list(query: { state: ListedState; cursor: IndexCursor | null; limit: number }): Promise<{ orgs: IndexEntry[]; next_cursor: IndexCursor | null }>;
  overview(now: number, horizonMs: number): Promise<Overview>;
};


/**
 * Whether this isolate has heard the old single "index" object say it is drained. Until then every read also
 * asks it (its rows are not all in the shards yet) and nudges its drain; afterwards it is never called again.
 * Nothing writes to it once drained, so the answer cannot go stale.
 */
let legacyDrained = false;

/** Tests only: forget the answer above (a test file that writes rows into the old object first). */
export function forgetLegacyDrained(): void {
  legacyDrained = false;
}

/** Answers merged: rows from a shard win over the old object's row of the same org (the shard's is the newer). */
function preferShards<T extends { org_id: string }>(fromShards: T[][], fromLegacy: T[] | null): T[] {
  const merged = fromShards.flat();
  if (fromLegacy === null) return merged;
  const seen = new Set(merged.map((row) => row.org_id));
  return [...merged, ...fromLegacy.filter((row) => !seen.has(row.org_id))];
}

/** Org ids in code-unit order, as SQLite's BINARY collation orders them within a shard. */
function byOrgId(a: { org_id: string }, b: { org_id: string }): number {
  return a.org_id < b.org_id ? -1 : a.org_id > b.org_id ? 1 : 0;
}

function byKey(a: KeyedEntry, b: KeyedEntry): number {
  return a.sort_key - b.sort_key || byOrgId(a, b);
}

function unkeyed({ sort_key: _key, ...entry }: KeyedEntry): IndexEntry {
  return entry;
}

/** The sharded index (shared/index-shard.ts): `orgIndex(env)` for every caller, as the single object's stub was. */
export function orgIndex(env: { ORG_INDEX?: { getByName(name: string): unknown } }): OrgIndexClient {
  const namespace = env.ORG_INDEX;
  if (!namespace) {
    throw new Error("The ORG_INDEX Durable Object binding is missing: did you forget to add it (class OrgIndex, migration v2) to your wrangler.jsonc?");
  }
  // The binding's stub of an OrgIndex, which implements IndexShard (object.ts).
  const shard = (name: string): IndexShard => namespace.getByName(name) as IndexShard;

  /** The old object, while it may still hold rows (null once it said it is drained); asking also restarts its drain. */
  async function legacy(): Promise<IndexShard | null> {
    if (legacyDrained) return null;
    const stub = shard(LEGACY_INDEX_NAME);
    if ((await stub.drainStatus()).drained) {
      legacyDrained = true;
      return null;
    }
    return stub;
  }

  /*
   * While the old object drains, it is asked first, then its rows are checked against their shards, then the
   * shards are asked. Its drain deletes an org's rows only after the shard holds them, so a row missing from its
   * answer is already in the shard when the shard is asked (asked at once, a row moved in between could be in
   * neither answer). A row of an org its shard holds anything of (moved already, or written since the deploy)
   * is older than the shard's, and dropped: an org restored since the deploy is not listed as overdue from there.
   */

  /** `rows` of the old object whose orgs no shard has newer word of. */
  async function stillOld<T extends { org_id: string }>(rows: T[]): Promise<T[]> {
    if (rows.length === 0) return rows;
    const parts = [...partitionByShard([...new Set(rows.map((row) => row.org_id))])];
    const held = new Set((await Promise.all(parts.map(([number, part]) => shard(shardName(number)).holding(part)))).flat());
    return rows.filter((row) => !held.has(row.org_id));
  }

  /** `ask` of every shard in parallel, after the old object while it is not drained (null otherwise), its answer checked by `check`. */
  async function fanOut<T>(ask: (stub: IndexShard) => Promise<T>, check: (old: T) => Promise<T>): Promise<{ shards: T[]; legacy: T | null }> {
    const stub = await legacy();
    const old = stub ? await check(await ask(stub)) : null;
    return { shards: await Promise.all(SHARD_NAMES.map((name) => ask(shard(name)))), legacy: old };
  }

  /** Ids partitioned by shard, each shard asked only its share (after the old object, asked all of them, while it holds rows). */
  async function amongIds<T extends { org_id: string }>(ids: string[], ask: (stub: IndexShard, ids: string[]) => Promise<T[]>): Promise<T[]> {
    if (ids.length === 0) return [];
    const stub = await legacy();
    const old = stub ? await stillOld(await ask(stub, ids)) : null;
    const shards = await Promise.all([...partitionByShard(ids)].map(([number, part]) => ask(shard(shardName(number)), part)));
    return preferShards(shards, old);
  }

  return {
    // One org's writes, and its activity: one call, to its shard.
    upsert: async (entry) => shard(shardNameOf(entry.org_id)).upsert(entry),
    recordWouldRefuse: async (orgId, hours) => shard(shardNameOf(orgId)).recordWouldRefuse(orgId, hours),
    // The old single object never held activity: no fallback to it while it drains.
    activityOf: async (orgId, now) => shard(shardNameOf(orgId)).activityOf(orgId, now),

    heldAmong: (ids) => amongIds(ids, (stub, part) => stub.heldAmong(part)),
    notOkAmong: (ids) => amongIds(ids, (stub, part) => stub.notOkAmong(part)),

    async notOk() {
      const answers = await fanOut((stub) => stub.notOk(), stillOld);
      return preferShards(answers.shards, answers.legacy).sort(byOrgId);
    },

    // While the old object still holds rows an org moved since may be counted twice there and in its shard: for minutes after the deploy, at most.
    async restrictedCount() {
      const answers = await fanOut((stub) => stub.restrictedCount(), async (n) => n);
      return [...answers.shards, answers.legacy ?? 0].reduce((sum, n) => sum + n, 0);
    },

    async list({ state, cursor, limit }) {
      // A cursor of another state's list (made by the index, but for another page) starts this list from its first page.
      const position = cursor === null ? null : decodeCursor(cursor);
      const after = position !== null && position.state === state ? { key: position.key, orgId: position.orgId } : null;
      // One row more than the page from each source: any row past the page means there is a next one.
      const ask = (stub: IndexShard) => stub.page({ state, after, limit: limit + 1 });
      const stub = await legacy();
      let old: KeyedEntry[] | null = null;
      // The old object's answer, once its superseded rows are dropped, shows all its rows only up to its last
      // one: past that, it has rows it did not send. This page stops there (shorter, perhaps) and goes on from there.
      let bound: KeyedEntry | null = null;
      if (stub) {
        const raw = await ask(stub);
        if (raw.length > limit) bound = raw.at(-1)!;
        old = await stillOld(raw);
      }
      const shards = await Promise.all(SHARD_NAMES.map((name) => ask(shard(name))));
      let rows = preferShards(shards, old).sort(byKey);
      let more = rows.length > limit;
      if (bound !== null) {
        const last = bound;
        rows = rows.filter((row) => byKey(row, last) <= 0);
        more = true;
      }
      const shown = rows.slice(0, limit);
      const end = shown.at(-1) ?? bound;
      const next_cursor = more && end ? encodeCursor({ state, key: end.sort_key, orgId: end.org_id }) : null;
      return { orgs: shown.map(unkeyed), next_cursor };
    },

    async overview(now, horizonMs) {
      // The old object's counts are taken as they are (an org moved meanwhile may be counted twice, for minutes after the deploy); its lists are checked.
      const answers = await fanOut(
        (stub) => stub.overview(now, horizonMs),
        async (old) => {
          const [due_soon, recently_suspended, recently_restored, would_refuse] = await Promise.all([
            stillOld(old.due_soon),
            stillOld(old.recently_suspended),
            stillOld(old.recently_restored),
            stillOld(old.would_refuse),
          ]);
          return { counts: old.counts, due_soon, recently_suspended, recently_restored, would_refuse };
        },
      );
      const parts = [...answers.shards, ...(answers.legacy ? [answers.legacy] : [])];
      const counts: Record<string, number> = { overdue: 0, suspended: 0, ok: 0 };
      for (const part of parts) for (const [state, n] of Object.entries(part.counts)) counts[state] = (counts[state] ?? 0) + n;
      const merged = (pick: (part: OverviewPart) => KeyedEntry[]) =>
        preferShards(answers.shards.map(pick), answers.legacy ? pick(answers.legacy) : null).sort(byKey).slice(0, OVERVIEW_LISTED).map(unkeyed);
      return {
        counts,
        due_soon: merged((part) => part.due_soon),
        recently_suspended: merged((part) => part.recently_suspended),
        recently_restored: merged((part) => part.recently_restored),
        // Each org's refusals live in its one shard, so each shard's top 50 hold the overall top 50.
        would_refuse: preferShards(answers.shards.map((part) => part.would_refuse), answers.legacy?.would_refuse ?? null)
          .sort((a, b) => b.requests - a.requests || byOrgId(a, b))
          .slice(0, WOULD_REFUSE_SHOWN),
      };
    },
  };
}
