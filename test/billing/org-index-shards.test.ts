import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { sessionCookie } from "../../src/billing/console/session.ts";
import { encodeCursor } from "../../src/billing/index/cursor.ts";
import type { IndexEntry } from "../../src/billing/index/entry.ts";
import { orgIndex } from "../../src/billing/index/object.ts";
import { hashOrgId, SHARD_NAMES, shardNameOf, shardOf } from "../../src/shared/index-shard.ts";
import { admin, BILLING, countedNamespace } from "../support/billing.ts";
import { drainLegacyIndex, emptyIndex, indexEntry, orgIdsIn } from "../support/org-index.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";

const HOUR = 3_600_000;
const index = orgIndex(env);

/** The old single object drained (it holds nothing in a fresh runtime), so reads reach the shards alone. */
beforeAll(async () => {
  await drainLegacyIndex();
  // This isolate hears it once, and asks no more.
  await index.restrictedCount();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await emptyIndex();
});

/** Every page of a state through the index, `limit` a page. */
async function everyPage(state: "overdue" | "suspended" | "ok", limit: number): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await index.list({ state, cursor, limit });
    expect(page.orgs.length).toBeLessThanOrEqual(limit);
    seen.push(...page.orgs.map((o) => o.org_id));
    cursor = page.next_cursor;
  } while (cursor !== null);
  return seen;
}

const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
/** The order each list promises, written out apart from the SQL: overdue by deadline (none last), the others newest first. */
const overdueOrder = (a: IndexEntry, b: IndexEntry) => (a.suspend_at ?? Infinity) - (b.suspend_at ?? Infinity) || byId(a.org_id, b.org_id);
const suspendedOrder = (a: IndexEntry, b: IndexEntry) => (b.suspended_at ?? -Infinity) - (a.suspended_at ?? -Infinity) || byId(a.org_id, b.org_id);
const okOrder = (a: IndexEntry, b: IndexEntry) => b.since - a.since || byId(a.org_id, b.org_id);

/** `n` orgs in each state, with ties on the sort key and some without a deadline or suspension time. */
async function seedStates(n: number, now: number): Promise<Record<"overdue" | "suspended" | "ok", IndexEntry[]>> {
  const overdue = Array.from({ length: n }, (_, i) => indexEntry(`od_${i}`, "overdue", { since: now, suspend_at: i % 7 === 0 ? null : now + (i % 5) * HOUR }));
  const suspended = Array.from({ length: n }, (_, i) => indexEntry(`su_${i}`, "suspended", { since: now, suspended_at: i % 9 === 0 ? null : now - (i % 4) * HOUR }));
  const ok = Array.from({ length: n }, (_, i) => indexEntry(`ok_${i}`, "ok", { since: now - (i % 6) * HOUR, version: 2 }));
  // An ok entry only updates an org already listed: each restored org was overdue first.
  await Promise.all([...overdue, ...suspended, ...ok.map((e) => ({ ...e, state: "overdue" as const, reason: "in_grace_period" as const, version: 1 }))].map((e) => index.upsert(e)));
  await Promise.all(ok.map((e) => index.upsert(e)));
  return { overdue, suspended, ok };
}

describe("the sharded index", () => {
  it("puts each org in the one shard its id hashes to, and spreads orgs over the shards", async () => {
    // Pinned: changing the hash would put existing orgs in shards that do not hold them.
    expect(hashOrgId("demo-org")).toBe(2201166781); // FNV-1a 32 of the UTF-8 bytes, as any reference implementation gives it
    expect(shardNameOf("demo-org")).toBe("index/16/13");
    expect(SHARD_NAMES).toHaveLength(16);
    const orgs = Array.from({ length: 64 }, (_, i) => `spread_${i}`);
    await Promise.all(orgs.map((org) => index.upsert(indexEntry(org, "overdue"))));
    const held = new Map<string, string[]>();
    for (const name of SHARD_NAMES) held.set(name, await orgIdsIn(name));
    for (const org of orgs) expect([...held].filter(([, ids]) => ids.includes(org)).map(([name]) => name)).toEqual([shardNameOf(org)]);
    expect([...held.values()].filter((ids) => ids.length > 0).length).toBeGreaterThanOrEqual(12);
    expect(new Set(orgs.map(shardOf)).size).toBeGreaterThanOrEqual(12);
  });

  it("pages every state: each org exactly once, in the list's order, across shards", async () => {
    const now = Date.now();
    const seeded = await seedStates(37, now);
    expect(await everyPage("overdue", 5)).toEqual([...seeded.overdue].sort(overdueOrder).map((e) => e.org_id));
    expect(await everyPage("suspended", 4)).toEqual([...seeded.suspended].sort(suspendedOrder).map((e) => e.org_id));
    expect(await everyPage("ok", 6)).toEqual([...seeded.ok].sort(okOrder).map((e) => e.org_id));
    // One page holding them all has no next page.
    expect(await index.list({ state: "overdue", cursor: null, limit: 37 })).toMatchObject({ next_cursor: null });
    expect((await index.list({ state: "overdue", cursor: null, limit: 36 })).next_cursor).not.toBeNull();
  });

  it("keeps its place when rows change between pages: no unchanged org is skipped or repeated", async () => {
    const now = Date.now();
    const seeded = await seedStates(30, now);
    const expected = [...seeded.overdue].sort(overdueOrder);
    const first = await index.list({ state: "overdue", cursor: null, limit: 8 });
    expect(first.orgs.map((o) => o.org_id)).toEqual(expected.slice(0, 8).map((e) => e.org_id));
    // Between pages: new orgs before the cursor (not shown: already passed) and after it (shown); two orgs leave
    // the list, one already seen and one not yet; an org not yet seen moves later (its deadline pushed).
    const before = indexEntry("od_new_before", "overdue", { since: now, suspend_at: now - HOUR });
    const after = indexEntry("od_new_after", "overdue", { since: now, suspend_at: now + 3 * HOUR + 1 });
    const leftSeen = expected[2]!;
    const leftUnseen = expected[20]!;
    const moved = expected[9]!;
    await Promise.all([
      index.upsert(before),
      index.upsert(after),
      index.upsert({ ...leftSeen, state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: now, version: 2 }),
      index.upsert({ ...leftUnseen, state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: now, version: 2 }),
      index.upsert({ ...moved, suspend_at: now + 100 * HOUR, version: 2 }),
    ]);
    const rest: string[] = [];
    let cursor = first.next_cursor;
    while (cursor !== null) {
      const page = await index.list({ state: "overdue", cursor, limit: 8 });
      rest.push(...page.orgs.map((o) => o.org_id));
      cursor = page.next_cursor;
    }
    const all = [...first.orgs.map((o) => o.org_id), ...rest];
    expect(new Set(all).size).toBe(all.length);
    const unchanged = expected.filter((e) => ![leftSeen, leftUnseen, moved].includes(e)).map((e) => e.org_id);
    // Every unchanged org exactly once, in order, whatever happened around it.
    expect(all.filter((id) => unchanged.includes(id))).toEqual(unchanged);
    expect(rest).toContain(after.org_id);
    expect(rest).toContain(moved.org_id);
    expect(all).not.toContain(before.org_id);
    expect(rest).not.toContain(leftUnseen.org_id);
  });

  it("merges the overview: counts summed over the shards, each list the first rows overall in its order", async () => {
    const now = Date.now();
    const seeded = await seedStates(45, now);
    // Would-be refusals of 60 orgs, spread over the shards: the overview shows the 50 most refused.
    const hour = Math.floor(now / HOUR) * HOUR;
    await Promise.all(Array.from({ length: 60 }, (_, i) => index.recordWouldRefuse(`wr_${i}`, [{ hour, requests: 1 + ((i * 7) % 60) }])));
    const overview = await index.overview(now, 24 * HOUR);
    expect(overview.counts).toEqual({ overdue: 45, suspended: 45, ok: 45 });
    const withDeadline = seeded.overdue.filter((e) => e.suspend_at !== null).sort(overdueOrder);
    expect(overview.due_soon.map((e) => e.org_id)).toEqual(withDeadline.slice(0, 20).map((e) => e.org_id));
    expect(overview.due_soon[0]).toEqual(withDeadline[0]);
    expect(overview.recently_suspended.map((e) => e.org_id)).toEqual([...seeded.suspended].sort(suspendedOrder).slice(0, 20).map((e) => e.org_id));
    expect(overview.recently_restored.map((e) => e.org_id)).toEqual([...seeded.ok].sort(okOrder).slice(0, 20).map((e) => e.org_id));
    const refused = Array.from({ length: 60 }, (_, i) => ({ org_id: `wr_${i}`, requests: 1 + ((i * 7) % 60), last_hour: hour }));
    expect(overview.would_refuse).toEqual(refused.sort((a, b) => b.requests - a.requests || byId(a.org_id, b.org_id)).slice(0, 50));
    // Only deadlines within the horizon are due soon.
    expect((await index.overview(now, HOUR)).due_soon.every((e) => e.suspend_at! <= now + HOUR)).toBe(true);
  });

  it("answers the sweep from the shards: held, not ok among ids, every not-ok org, the restricted count", async () => {
    const now = Date.now();
    const seeded = await seedStates(10, now);
    await index.upsert(indexEntry("limited_ok", "ok", { limits: ["spans"], version: 3 }));
    const ids = [...seeded.overdue.slice(0, 3), ...seeded.ok.slice(0, 2), seeded.suspended[0]!].map((e) => e.org_id);
    const held = await index.heldAmong([...ids, "limited_ok", "unknown_org"]);
    expect(held.map((h) => h.org_id).sort()).toEqual([...seeded.overdue.slice(0, 3).map((e) => e.org_id), seeded.suspended[0]!.org_id, "limited_ok"].sort());
    expect(held.find((h) => h.org_id === "limited_ok")).toMatchObject({ state: "ok", limits: ["spans"] });
    expect((await index.notOkAmong(ids)).map((h) => h.org_id).sort()).toEqual([...seeded.overdue.slice(0, 3), seeded.suspended[0]!].map((e) => e.org_id).sort());
    const notOk = (await index.notOk()).map((h) => h.org_id);
    expect(notOk).toEqual([...seeded.overdue, ...seeded.suspended].map((e) => e.org_id).sort(byId));
    expect(await index.restrictedCount()).toBe(21);
  });

  it("costs one call to the org's shard per write, one per shard concerned for ids, one per shard for a fan-out", async () => {
    const { env: counted, calls } = countedNamespace("ORG_INDEX");
    const countedIndex = orgIndex(counted);
    await countedIndex.upsert(indexEntry("counted_org", "overdue"));
    expect(calls.mock.calls).toEqual([[shardNameOf("counted_org")]]);
    calls.mockClear();
    await countedIndex.recordWouldRefuse("counted_org", [{ hour: Math.floor(Date.now() / HOUR) * HOUR, requests: 3 }]);
    expect(calls.mock.calls).toEqual([[shardNameOf("counted_org")]]);
    calls.mockClear();
    const ids = Array.from({ length: 40 }, (_, i) => `counted_${i}`);
    await countedIndex.heldAmong(ids);
    expect(calls.mock.calls.map(([name]) => name).sort()).toEqual([...new Set(ids.map(shardNameOf))].sort());
    for (const read of [() => countedIndex.overview(Date.now(), HOUR), () => countedIndex.list({ state: "overdue", cursor: null, limit: 50 }), () => countedIndex.notOk(), () => countedIndex.restrictedCount()]) {
      calls.mockClear();
      await read();
      expect(calls.mock.calls.map(([name]) => name).sort()).toEqual([...SHARD_NAMES].sort());
    }
  });

  it("drops restored orgs 30 days after they were restored, at the shard's next write", async () => {
    const now = Date.now();
    const old = "restored_long_ago";
    const recent = "restored_lately";
    // Both in one shard, so its next write is what drops the old one.
    const shardOfOld = shardNameOf(old);
    const neighbour = Array.from({ length: 200 }, (_, i) => `neighbour_${i}`).find((id) => shardNameOf(id) === shardOfOld)!;
    const sameShardRecent = [recent, ...Array.from({ length: 200 }, (_, i) => `${recent}_${i}`)].find((id) => shardNameOf(id) === shardOfOld)!;
    for (const [org, since] of [[old, now - 30 * 24 * HOUR - HOUR], [sameShardRecent, now - 29 * 24 * HOUR]] as const) {
      await index.upsert(indexEntry(org, "overdue"));
      await index.upsert(indexEntry(org, "ok", { since, version: 2 }));
    }
    await index.upsert(indexEntry(neighbour, "overdue"));
    const held = await orgIdsIn(shardOfOld);
    expect(held).not.toContain(old);
    expect(held).toContain(sameShardRecent);
  });

  it("reads each list with an index: no table scan, no sort", async () => {
    await index.upsert(indexEntry("planned", "overdue"));
    const plans = await runInDurableObject(env.ORG_INDEX.getByName(shardNameOf("planned")), (_instance, state) =>
      [
        ["SELECT * FROM orgs WHERE state = ? ORDER BY sort_key, org_id LIMIT 6", "overdue"],
        ["SELECT * FROM orgs WHERE state = ? AND (sort_key, org_id) > (?, ?) ORDER BY sort_key, org_id LIMIT 6", "suspended", 5, "x"],
        ["SELECT * FROM orgs WHERE state = 'overdue' AND sort_key <= ? ORDER BY sort_key, org_id LIMIT 20", 5],
      ].map(([query, ...params]) =>
        state.storage.sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...params)
          .toArray()
          .map((row) => row.detail)
          .join("; "),
      ),
    );
    for (const plan of plans) {
      expect(plan).toContain("USING INDEX orgs_by_sort");
      expect(plan).not.toContain("TEMP B-TREE");
    }
    // The sweep's every-not-ok read returns the whole set, in id order: read in that order, never sorted.
    const notOkPlan = await runInDurableObject(env.ORG_INDEX.getByName(shardNameOf("planned")), (_instance, state) =>
      state.storage.sql.exec<{ detail: string }>("EXPLAIN QUERY PLAN SELECT org_id, state, reason, since FROM orgs WHERE state != 'ok' ORDER BY org_id").toArray().map((row) => row.detail).join("; "),
    );
    expect(notOkPlan).not.toContain("TEMP B-TREE");
  });
});

describe("cursors", () => {
  const forged = [
    "0",
    "50",
    "abc",
    encodeCursor({ state: "overdue", key: 5, orgId: "od_1" }) + "=",
    btoa(JSON.stringify({ s: "overdue", k: 5, o: "od_1", extra: 1 })).replace(/=+$/, ""),
    btoa(JSON.stringify({ s: "overdue", k: 5.5, o: "od_1" })).replace(/=+$/, ""),
    btoa(JSON.stringify({ s: "overdue", o: "od_1", k: 5 })).replace(/=+$/, ""),
    btoa(JSON.stringify({ s: "everything", k: 5, o: "od_1" })).replace(/=+$/, ""),
  ];

  it.each(forged)("refuses a cursor the index did not make (%s) with 400 invalid_request", async (cursor) => {
    const response = await admin(`/orgs?state=overdue&cursor=${encodeURIComponent(cursor)}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_request", message: expect.stringContaining("cursor") });
  });

  it("pages GET /admin/orgs with its own cursors, and shows the first page in the console for a forged one", async () => {
    const seeded = await seedStates(5, Date.now());
    const order = [...seeded.overdue].sort(overdueOrder).map((e) => e.org_id);
    const first = (await (await admin("/orgs?state=overdue&limit=3")).json()) as { orgs: { org_id: string }[]; next_cursor: string };
    const second = (await (await admin(`/orgs?state=overdue&limit=3&cursor=${first.next_cursor}`)).json()) as { orgs: { org_id: string }[]; next_cursor: string | null };
    expect([...first.orgs, ...second.orgs].map((o) => o.org_id)).toEqual(order);
    expect(second.next_cursor).toBeNull();

    const cookie = (await sessionCookie(TEST_ADMIN_TOKEN, Date.now())).split(";")[0]!;
    const console = (cursor: string) => exports.default.fetch(`${BILLING}/admin/list/overdue?cursor=${encodeURIComponent(cursor)}`, { headers: { cookie } });
    for (const cursor of forged) {
      const response = await console(cursor);
      expect(response.status).toBe(200);
      const text = await response.text();
      expect(text).toContain(order[0]);
      expect(text).not.toContain("First page");
    }
    // Its own next page link pages on.
    const paged = await (await console(first.next_cursor)).text();
    expect(paged).not.toContain(`>${order[0]}<`);
    expect(paged).toContain(`${order[3]}<`);
    expect(paged).toContain('<a href="/admin/list/overdue">First page</a>');
    // A cursor of another state's list starts this list from its first page.
    const suspendedCursor = encodeCursor({ state: "suspended", key: 0, orgId: "zzz" });
    expect((await index.list({ state: "overdue", cursor: suspendedCursor, limit: 2 })).orgs.map((o) => o.org_id)).toEqual(order.slice(0, 2));
  });
});
