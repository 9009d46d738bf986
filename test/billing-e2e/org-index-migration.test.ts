import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { ensureSchema, DRAIN_BATCH, orgIndex } from "../../src/billing/index/object.ts";
import { forgetLegacyDrained } from "../../src/billing/index/sharded.ts";
import { LEGACY_INDEX_NAME, SHARD_NAMES, shardNameOf } from "../../src/shared/index-shard.ts";
import { drainLegacyIndex, emptyIndex, indexEntry, orgIdsIn } from "../support/org-index.ts";
import { countedNamespace } from "../support/billing.ts";

/**
 * An existing deployment: the index was one object named "index" before it was sharded. Its rows are written
 * here the way that object stored them (its tables as they were), then the sharded index is used.
 */

const HOUR = 3_600_000;
const index = orgIndex(env);
const legacy = () => env.ORG_INDEX.getByName(LEGACY_INDEX_NAME);
const ORGS = 2 * DRAIN_BATCH + 500;

// This isolate may have heard, in an earlier file, that the old object was drained: each test here fills it again.
beforeEach(forgetLegacyDrained);
afterEach(emptyIndex);

/** The old object's tables as the single index had them (no sort key, its old index), with rows in them; then brought up to date as its constructor does. */
async function writeOldIndex(rows: { orgs: [string, string, string, number, number, number | null, number | null][]; limits: [string, string[], number][]; wouldRefuse: [string, number, number][] }): Promise<void> {
  await runInDurableObject(legacy(), (_instance, state) => {
    const sql = state.storage.sql;
    sql.exec("DROP TABLE IF EXISTS orgs; DROP TABLE IF EXISTS org_limits; DROP TABLE IF EXISTS would_refuse; DELETE FROM index_meta");
    sql.exec(`
      CREATE TABLE orgs (
        org_id TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT NOT NULL, since INTEGER NOT NULL,
        version INTEGER NOT NULL, suspend_at INTEGER, suspended_at INTEGER
      );
      CREATE INDEX orgs_by_state ON orgs (state, suspend_at, suspended_at, since);
      CREATE TABLE org_limits (org_id TEXT PRIMARY KEY, features TEXT NOT NULL, version INTEGER NOT NULL, at INTEGER NOT NULL);
      CREATE TABLE would_refuse (org_id TEXT NOT NULL, hour INTEGER NOT NULL, requests INTEGER NOT NULL, PRIMARY KEY (org_id, hour));
    `);
    state.storage.transactionSync(() => {
      for (const row of rows.orgs) sql.exec("INSERT INTO orgs (org_id, state, reason, since, version, suspend_at, suspended_at) VALUES (?, ?, ?, ?, ?, ?, ?)", ...row);
      for (const [org, features, version] of rows.limits) sql.exec("INSERT INTO org_limits (org_id, features, version, at) VALUES (?, ?, ?, ?)", org, JSON.stringify(features), version, Date.now());
      for (const row of rows.wouldRefuse) sql.exec("INSERT INTO would_refuse (org_id, hour, requests) VALUES (?, ?, ?)", ...row);
    });
    ensureSchema(sql);
    const columns = sql.exec<{ name: string }>("SELECT name FROM pragma_table_xinfo('orgs')").toArray().map((c) => c.name);
    const indexes = sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orgs' AND sql IS NOT NULL").toArray().map((c) => c.name);
    expect(columns).toContain("sort_key");
    expect(indexes).toEqual(["orgs_by_sort"]);
  });
}

it("hands every row of the old single object to its shard, in batches, while readers see each org once; then is never asked again", { timeout: 60_000 }, async () => {
  const now = Date.now();
  const hour = Math.floor(now / HOUR) * HOUR;
  const orgs: [string, string, string, number, number, number | null, number | null][] = Array.from({ length: ORGS }, (_, i) => {
    const org = `old_${String(i).padStart(5, "0")}`;
    if (i % 3 === 0) return [org, "overdue", "in_grace_period", now, 4, now + (i % 50) * HOUR, null];
    if (i % 3 === 1) return [org, "suspended", "grace_elapsed_never_paid", now, 4, null, now - (i % 40) * HOUR];
    return [org, "ok", "not_past_due", now - (i % 30) * HOUR, 4, null, null];
  });
  // Changed since the deploy, in their shards, before the old object hands its rows over:
  // restored (its shard had no row to update), suspended (a newer row), and a plan limit lifted from an org that never left ok.
  orgs.push(["raced_restored", "overdue", "in_grace_period", now, 5, now + HOUR, null], ["raced_suspended", "overdue", "in_grace_period", now, 2, now + HOUR, null]);
  await writeOldIndex({
    orgs,
    limits: [["old_00003", ["spans"], 4], ["limited_only", ["spans", "bytes"], 4], ["raced_lifted", ["spans"], 3]],
    wouldRefuse: [["old_00000", hour, 7], ["old_00000", hour - HOUR, 5], ["refusing_only", hour, 9]],
  });
  await index.upsert(indexEntry("raced_restored", "ok", { since: now, version: 7 }));
  await index.upsert(indexEntry("raced_suspended", "suspended", { since: now, suspended_at: now, version: 3 }));
  await index.upsert(indexEntry("raced_lifted", "ok", { version: 4, limits: [] }));

  // A Worker version from before the sharding, still running during a gradual deploy, writes to the old object: passed on.
  await legacy().upsert(indexEntry("old_version_write", "overdue", { since: now, suspend_at: now + 2 * HOUR }));
  expect(await orgIdsIn(shardNameOf("old_version_write"))).toContain("old_version_write");

  // A reader pages through the overdue list while the drain runs (the first read starts it).
  const expectedOverdue = [
    ...orgs.filter((o) => o[1] === "overdue" && !o[0].startsWith("raced_")).map((o) => ({ id: o[0], key: o[5]! })),
    { id: "old_version_write", key: now + 2 * HOUR },
  ]
    .sort((a, b) => a.key - b.key || (a.id < b.id ? -1 : 1))
    .map((o) => o.id);
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page: Awaited<ReturnType<typeof index.list>> = await index.list({ state: "overdue", cursor, limit: 97 });
    seen.push(...page.orgs.map((o) => o.org_id));
    cursor = page.next_cursor;
  } while (cursor !== null);
  expect(seen).toEqual(expectedOverdue);

  await drainLegacyIndex();
  expect(await orgIdsIn(LEGACY_INDEX_NAME)).toEqual([]);
  const moved = (await Promise.all(SHARD_NAMES.map(async (name) => (await orgIdsIn(name)).map((id) => [id, name])))).flat();
  expect(moved).toHaveLength(ORGS + 3);
  for (const [id, name] of moved) expect(name).toBe(shardNameOf(id!));

  const overview = await index.overview(now, 100 * HOUR);
  expect(overview.counts).toEqual({ overdue: Math.ceil(ORGS / 3) + 1, suspended: Math.ceil((ORGS - 1) / 3) + 1, ok: Math.floor(ORGS / 3) + 1 });
  expect(overview.would_refuse).toEqual([
    { org_id: "old_00000", requests: 12, last_hour: hour },
    { org_id: "refusing_only", requests: 9, last_hour: hour },
  ]);
  // The writes since the deploy won over the old rows they replaced.
  const restored = (await index.list({ state: "ok", cursor: null, limit: 200 })).orgs.find((o) => o.org_id === "raced_restored");
  expect(restored).toMatchObject({ state: "ok", version: 7 });
  expect((await index.heldAmong(["raced_suspended", "raced_lifted", "limited_only", "old_00003", "raced_restored"])).sort((a, b) => (a.org_id < b.org_id ? -1 : 1))).toEqual([
    { org_id: "limited_only", state: "ok", reason: "not_past_due", since: 0, limits: ["bytes", "spans"] },
    { org_id: "old_00003", state: "overdue", reason: "in_grace_period", since: now, limits: ["spans"] },
    { org_id: "raced_suspended", state: "suspended", reason: "grace_elapsed_never_paid", since: now, limits: [] },
  ]);
  expect(await index.restrictedCount()).toBe(overview.counts.overdue! + overview.counts.suspended! + 1);

  // The shards no longer keep their latest writes for the hand-over, and readers no longer ask the old object.
  for (const name of SHARD_NAMES) {
    const kept = await runInDurableObject(env.ORG_INDEX.getByName(name), (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM recent_writes").one().n);
    expect(kept).toBe(0);
  }
  const { env: counted, calls } = countedNamespace("ORG_INDEX");
  await orgIndex(counted).overview(now, HOUR);
  expect(calls.mock.calls.map(([name]) => name)).not.toContain(LEGACY_INDEX_NAME);
});

it("answers the sweep from the old object too until it is drained, and the drain then moves nothing twice", async () => {
  const now = Date.now();
  await writeOldIndex({ orgs: [["held_old", "suspended", "grace_elapsed_never_paid", now, 2, null, now]], limits: [], wouldRefuse: [] });
  // Its drain held back (its alarm does nothing for now): its rows are answered from where they are.
  const held = await runInDurableObject(legacy(), (instance) => vi.spyOn(instance, "alarm").mockResolvedValue(undefined));
  try {
    expect(await index.heldAmong(["held_old", "not_held"])).toEqual([{ org_id: "held_old", state: "suspended", reason: "grace_elapsed_never_paid", since: now, limits: [] }]);
    expect((await index.notOk()).map((o) => o.org_id)).toEqual(["held_old"]);
    expect((await index.list({ state: "suspended", cursor: null, limit: 5 })).orgs.map((o) => o.org_id)).toEqual(["held_old"]);
    expect((await index.overview(now, HOUR)).counts).toEqual({ overdue: 0, suspended: 1, ok: 0 });
    expect(await index.restrictedCount()).toBe(1);
    expect(await orgIdsIn(shardNameOf("held_old"))).toEqual([]);
  } finally {
    held.mockRestore();
  }
  await drainLegacyIndex();
  expect(await orgIdsIn(LEGACY_INDEX_NAME)).toEqual([]);
  expect(await index.heldAmong(["held_old"])).toHaveLength(1);
  expect((await index.notOk()).map((o) => o.org_id)).toEqual(["held_old"]);
  // Handed over twice (a retried batch): still one row.
  await env.ORG_INDEX.getByName(shardNameOf("held_old")).absorb([{ org_id: "held_old", org: { state: "suspended", reason: "grace_elapsed_never_paid", since: now, version: 2, suspend_at: null, suspended_at: now }, limits: null, would_refuse: [] }]);
  expect(await orgIdsIn(shardNameOf("held_old"))).toEqual(["held_old"]);
});
