import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { encodeCursor } from "../../src/billing/index/cursor.ts";
import { DRAIN_BATCH, orgIndex } from "../../src/billing/index/object.ts";
import { forgetLegacyDrained } from "../../src/billing/index/sharded.ts";
import { LEGACY_INDEX_NAME, SHARD_NAMES, shardOf } from "../../src/shared/index-shard.ts";
import { hashIngestKey, IngestKeyRecord } from "../../src/shared/ingest-key.ts";
import { ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { admin, uniqueOrg } from "../support/billing.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";
import { drainLegacyIndex, emptyIndex, indexEntry, orgIdsIn } from "../support/org-index.ts";

/**
 * Issue 23's breaker: the sharded index, its cursors and the batch mint where they meet the other features.
 * Each test states a promise of docs/storage.md, docs/admin-api.md or the index's own comments.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const index = orgIndex(env);

beforeAll(async () => {
  await drainLegacyIndex();
  await index.restrictedCount();
});

afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  await emptyIndex();
});

/** Two org ids whose shards differ (the ids are fixed, so the pair is the same every run). */
function inTwoShards(prefix: string): [string, string] {
  const first = `${prefix}_0`;
  for (let i = 1; ; i++) if (shardOf(`${prefix}_${i}`) !== shardOf(first)) return [first, `${prefix}_${i}`];
}

/** Every page of a state through the index, `limit` a page, `between` run after each page but the last. */
async function walk(state: "overdue" | "suspended" | "ok", limit: number, between: (page: number) => Promise<void> = async () => {}): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = null;
  let page = 0;
  do {
    const answer: Awaited<ReturnType<typeof index.list>> = await index.list({ state, cursor, limit });
    seen.push(...answer.orgs.map((o) => o.org_id));
    cursor = answer.next_cursor;
    if (cursor !== null) await between(++page);
  } while (cursor !== null);
  return seen;
}

describe("the 30-day cleanup of restored orgs across shards", () => {
  it("drops an org restored more than 30 days ago even when its own shard has had no write since", async () => {
    // docs/storage.md (OrgIndex, `orgs`): "ok rows older than 30 days are dropped". With one object any
    // upsert dropped them; with 16 shards the cleanup runs only in the shard written to.
    const [quiet, busy] = inTwoShards("cleanup");
    const start = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now: start });
    await index.upsert(indexEntry(quiet, "overdue", { since: start, suspend_at: start + DAY, version: 1 }));
    await index.upsert(indexEntry(quiet, "ok", { since: start, version: 2 }));
    // 31 days later another org, in another shard, is restored: the index is written and read as usual.
    const later = start + 31 * DAY;
    vi.setSystemTime(later);
    await index.upsert(indexEntry(busy, "overdue", { since: later, suspend_at: later + DAY, version: 1 }));
    await index.upsert(indexEntry(busy, "ok", { since: later, version: 2 }));
    const overview = await index.overview(later, DAY);
    expect(overview.recently_restored.map((o) => o.org_id)).toEqual([busy]);
    expect(overview.counts.ok).toBe(1);
    expect(await walk("ok", 10)).toEqual([busy]);
  });
});

describe("an org that changes state while a list is walked page by page", () => {
  /** `n` overdue orgs with deadlines an hour apart from `now` + 1 h, spread over the shards. */
  async function overdueOrgs(prefix: string, n: number, now: number): Promise<string[]> {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}_${String(i).padStart(2, "0")}`);
    await Promise.all(ids.map((id, i) => index.upsert(indexEntry(id, "overdue", { since: now, suspend_at: now + (i + 1) * HOUR, version: 1 }))));
    return ids;
  }

  it("overdue -> suspended -> ok between pages: listed at most once in each walk, and in the ok list afterwards", async () => {
    const now = Date.now();
    const ids = await overdueOrgs("mover", 12, now);
    const mover = ids[1]!;
    const step = async (page: number) => {
      if (page === 1) await index.upsert(indexEntry(mover, "suspended", { since: now + 1, suspended_at: now + 1, version: 2 }));
      if (page === 2) await index.upsert(indexEntry(mover, "ok", { since: now + 2, version: 3 }));
    };
    const overdue = await walk("overdue", 4, step);
    expect(overdue.filter((id) => id === mover)).toHaveLength(1);
    expect(new Set(overdue).size).toBe(overdue.length);
    expect(await walk("ok", 4)).toEqual([mover]);
  });

  // Keyset pages on a key that can change (docs/admin-api.md, "Paging"): an org whose place in a list moves while a
  // walk is under way (a new deadline, restored again) may be met twice or not at all by that walk. What holds is
  // that every org whose place does not move is listed exactly once, whatever the others do between pages.
  it("orgs whose place does not move are each listed once while others move between pages (overdue again later; restored again)", async () => {
    const now = Date.now();
    const ids = await overdueOrgs("again", 12, now);
    const again = ids[0]!;
    const overdue = await walk("overdue", 4, async (page) => {
      if (page !== 1) return;
      await index.upsert(indexEntry(again, "ok", { since: now + 1, version: 2 }));
      await index.upsert(indexEntry(again, "overdue", { since: now + 2, suspend_at: now + 20 * HOUR, version: 3 }));
    });
    for (const id of ids.slice(1)) expect(overdue.filter((listed) => listed === id)).toHaveLength(1);

    const restored = Array.from({ length: 12 }, (_, i) => `okw_${String(i).padStart(2, "0")}`);
    for (const [i, id] of restored.entries()) {
      await index.upsert(indexEntry(id, "overdue", { since: now - 20 * DAY, suspend_at: now, version: 1 }));
      await index.upsert(indexEntry(id, "ok", { since: now - (i + 1) * DAY, version: 2 }));
    }
    const mover = restored[9]!;
    const ok = await walk("ok", 4, async (page) => {
      if (page !== 1) return;
      await index.upsert(indexEntry(mover, "overdue", { since: now + 1, suspend_at: now + DAY, version: 3 }));
      await index.upsert(indexEntry(mover, "suspended", { since: now + 2, suspended_at: now + 2, version: 4 }));
      await index.upsert(indexEntry(mover, "ok", { since: now + 3, version: 5 }));
    });
    for (const id of restored.filter((id) => id !== mover)) expect(ok.filter((listed) => listed === id)).toHaveLength(1);
  });
});

describe("cursors GET /admin/orgs did not make", () => {
  /** base64url of any JSON text, as encodeCursor writes it (whether or not the index would make it). */
  function forge(json: string): string {
    let binary = "";
    for (const byte of new TextEncoder().encode(json)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  it.each([
    ["a key past the largest", forge('{"s":"overdue","k":9007199254740992,"o":"x"}')],
    ["a key of 1e308", forge('{"s":"overdue","k":1e308,"o":"x"}')],
    ["a fractional key", forge('{"s":"overdue","k":1.5,"o":"x"}')],
    ["a key as a string", forge('{"s":"overdue","k":"1","o":"x"}')],
    ["an unknown state", forge('{"s":"gone","k":1,"o":"x"}')],
    ["an empty org id", forge('{"s":"overdue","k":1,"o":""}')],
    ["an extra field", forge('{"s":"overdue","k":1,"o":"x","z":1}')],
    ["fields in another order", forge('{"k":1,"s":"overdue","o":"x"}')],
    ["padding", `${encodeCursor({ state: "overdue", key: 1, orgId: "x" })}==`],
    ["standard base64", encodeCursor({ state: "overdue", key: 1, orgId: "x>>?" }).replace(/-/g, "+").replace(/_/g, "/")],
    ["not JSON", forge("{s:overdue}")],
    ["invalid UTF-8", btoa("\xff\xfe\xfd").replace(/=+$/, "")],
    ["far too long", "A".repeat(601)],
  ])("refuses %s with 400 invalid_request", async (_what, cursor) => {
    const response = await admin(`/orgs?state=overdue&cursor=${encodeURIComponent(cursor)}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_request" });
  });

  it.each([
    ["the largest key", { state: "overdue", key: Number.MAX_SAFE_INTEGER, orgId: "zzz" }],
    ["the smallest key", { state: "suspended", key: -Number.MAX_SAFE_INTEGER, orgId: "a" }],
    ["an org id with a NUL and quotes", { state: "ok", key: 0, orgId: "a\u0000'\"); DROP TABLE orgs; --" }],
    ["an org id with a lone surrogate", { state: "overdue", key: 5, orgId: "\ud800x" }],
    ["an org id of 256 characters", { state: "overdue", key: 5, orgId: "o".repeat(256) }],
  ] as const)("a well-formed cursor with %s is a page (200), never a 5xx", async (_what, position) => {
    const now = Date.now();
    await index.upsert(indexEntry("cursor_probe", "overdue", { since: now, suspend_at: now + HOUR }));
    const cursor = encodeCursor(position);
    const response = await admin(`/orgs?state=${position.state}&cursor=${encodeURIComponent(cursor)}`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { orgs: unknown[]; next_cursor: string | null };
    expect(Array.isArray(body.orgs)).toBe(true);
  });

});

describe("the old single object drained while the index is written and read", () => {
  it("an org restored mid-drain (its old row not yet handed over) never comes back as suspended; its would-be refusals and the sweep's reads stay right", { timeout: 60_000 }, async () => {
    forgetLegacyDrained();
    const now = Date.now();
    const hour = Math.floor(now / HOUR) * HOUR;
    const legacy = env.ORG_INDEX.getByName(LEGACY_INDEX_NAME);
    // More rows than one drain run hands over; the org that races sorts last, so it is still in the old object after the first run.
    const n = DRAIN_BATCH + 200;
    await runInDurableObject(legacy, (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("DELETE FROM index_meta WHERE key = 'drained'");
      state.storage.transactionSync(() => {
        for (let i = 0; i < n; i++) sql.exec("INSERT INTO orgs (org_id, state, reason, since, version, suspend_at, suspended_at) VALUES (?, 'suspended', 'grace_elapsed_never_paid', ?, 2, NULL, ?)", `d_${String(i).padStart(5, "0")}`, now - DAY, now - DAY + i);
        sql.exec("INSERT INTO orgs (org_id, state, reason, since, version, suspend_at, suspended_at) VALUES ('zz_racer', 'suspended', 'grace_elapsed_never_paid', ?, 4, NULL, ?)", now - DAY, now - HOUR);
        sql.exec("INSERT INTO org_limits (org_id, features, version, at) VALUES ('zz_racer', '[\"spans\"]', 4, ?)", now - DAY);
        sql.exec("INSERT INTO would_refuse (org_id, hour, requests) VALUES ('zz_racer', ?, 7)", hour);
      });
    });
    for (const name of SHARD_NAMES) {
      await runInDurableObject(env.ORG_INDEX.getByName(name), (instance, state) => {
        state.storage.sql.exec("DELETE FROM index_meta WHERE key = 'legacy_done'");
        (instance as unknown as { legacyDone: boolean }).legacyDone = false;
      });
    }
    expect((await legacy.drainStatus()).drained).toBe(false);
    await runDurableObjectAlarm(legacy);
    expect(await orgIdsIn(LEGACY_INDEX_NAME)).toContain("zz_racer");

    // Restored (limit lifted too) while its old row waits; observe mode records more would-be refusals of the same hour.
    await index.upsert(indexEntry("zz_racer", "ok", { since: now, version: 5, limits: [] }));
    await index.recordWouldRefuse("zz_racer", [{ hour, requests: 9 }]);

    // The sweep's reads, and the lists, while the old row is still there.
    expect(await index.heldAmong(["zz_racer", "d_00000"])).toEqual([{ org_id: "d_00000", state: "suspended", reason: "grace_elapsed_never_paid", since: now - DAY, limits: [] }]);
    expect((await index.notOk()).map((o) => o.org_id)).not.toContain("zz_racer");
    expect((await index.list({ state: "suspended", cursor: null, limit: 200 })).orgs.map((o) => o.org_id)).not.toContain("zz_racer");
    expect((await index.overview(now, HOUR)).would_refuse.filter((o) => o.org_id === "zz_racer")).toEqual([{ org_id: "zz_racer", requests: 9, last_hour: hour }]);

    await drainLegacyIndex();
    expect(await orgIdsIn(LEGACY_INDEX_NAME)).toEqual([]);
    expect(await index.heldAmong(["zz_racer"])).toEqual([]);
    expect((await index.list({ state: "ok", cursor: null, limit: 10 })).orgs.map((o) => [o.org_id, o.version])).toEqual([["zz_racer", 5]]);
    expect(await index.restrictedCount()).toBe(n);
    const overview = await index.overview(now, HOUR);
    expect(overview.counts).toEqual({ overdue: 0, suspended: n, ok: 1 });
    expect(overview.would_refuse).toEqual([{ org_id: "zz_racer", requests: 9, last_hour: hour }]);
  });
});

describe("the sweep's heldAmong and restrictedCount with plan limits across shards", () => {
  it("counts each restricted org once: not ok, ok with a limit, not ok with a limit; a lifted limit no more", async () => {
    const now = Date.now();
    const ids = Array.from({ length: 40 }, (_, i) => `lim_${i}`);
    expect(new Set(ids.map(shardOf)).size).toBeGreaterThan(8);
    const kinds = ids.map((_, i) => i % 4);
    await Promise.all(
      ids.map((id, i) => {
        switch (kinds[i]) {
          case 0: return index.upsert(indexEntry(id, "overdue", { since: now, suspend_at: now + HOUR }));
          case 1: return index.upsert(indexEntry(id, "ok", { limits: ["spans"] }));
          case 2: return index.upsert(indexEntry(id, "suspended", { since: now, suspended_at: now, limits: ["bytes", "spans"] }));
          default: return index.upsert(indexEntry(id, "ok", { limits: ["spans"] })).then(() => index.upsert(indexEntry(id, "ok", { version: 2, limits: [] })));
        }
      }),
    );
    expect(await index.restrictedCount()).toBe(30);
    const held = await index.heldAmong([...ids, "lim_never"]);
    expect(held.map((h) => h.org_id).sort()).toEqual(ids.filter((_, i) => kinds[i] !== 3).sort());
    for (const h of held) expect(h.limits).toEqual(kinds[ids.indexOf(h.org_id)] === 0 ? [] : kinds[ids.indexOf(h.org_id)] === 1 ? ["spans"] : ["bytes", "spans"]);
  });
});

describe("the batch mint where it meets keys, revocations and suspensions", () => {
  type BatchAnswer = { keys: { org_id: string; key_id: string; key: string }[]; failed: { org_id: string; error: string }[] };
  const batch = (body: string) => admin("/ingest-keys:batch", { method: "POST", headers: { "content-type": "application/json" }, body });
  const keyRecord = async (key: string) => IngestKeyRecord.parse(await env.INGEST_KEYS.get(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key)), "json"));

  it.each(["[]", '["org_a"]', "null", "42", '"org_a"', '{"orgs":[1,2]}', '{"orgs":null}', '{"orgs":[""]}'])("refuses the body %s with 400 invalid_request, never a 5xx", async (body) => {
    const response = await batch(body);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_request" });
  });

  it("an org at 20 keys with one revoked gets its 20th again from the batch; the revoked key's entry is gone", async () => {
    const org = uniqueOrg("bfull");
    const minted: { key_id: string; key: string }[] = [];
    for (let i = 0; i < 20; i++) minted.push((await (await admin(`/orgs/${org}/ingest-keys`, { method: "POST" })).json()) as { key_id: string; key: string });
    expect(JSON.parse(await (await batch(JSON.stringify({ orgs: [org] }))).text()).failed).toEqual([expect.objectContaining({ org_id: org, error: "too_many_keys" })]);
    expect((await admin(`/orgs/${org}/ingest-keys/${minted[3]!.key_id}`, { method: "DELETE" })).status).toBe(200);
    const response = await batch(JSON.stringify({ orgs: [org] }));
    expect(response.status).toBe(201);
    const body = (await response.json()) as BatchAnswer;
    expect(body.keys).toHaveLength(1);
    expect(await keyRecord(body.keys[0]!.key)).toMatchObject({ org_id: org, key_id: body.keys[0]!.key_id });
    expect(await env.INGEST_KEYS.get(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, minted[3]!.key)))).toBeNull();
    // Full again.
    expect(((await (await batch(JSON.stringify({ orgs: [org] }))).json()) as BatchAnswer).failed.map((f) => f.error)).toEqual(["too_many_keys"]);
  });

  it("a key the batch mints for a suspended org carries the suspended verdict the ingest Worker enforces", async () => {
    const org = uniqueOrg("bsusp");
    const suspended = await admin(`/orgs/${org}/override`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ action: "suspend", note: "breaker: suspended before the batch" }) });
    expect(suspended.status).toBe(200);
    const body = (await (await batch(JSON.stringify({ orgs: [org] }))).json()) as BatchAnswer;
    expect(await keyRecord(body.keys[0]!.key)).toMatchObject({ org_id: org, verdict: { state: "suspended" } });
  });
});
