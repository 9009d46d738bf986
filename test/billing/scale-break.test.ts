import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { encodeCursor } from "../../src/billing/index/cursor.ts";
import { orgIndex } from "../../src/billing/index/object.ts";
import { shardOf } from "../../src/billing/index/shard.ts";
import { admin } from "../support/billing.ts";
import { drainLegacyIndex, emptyIndex, indexEntry } from "../support/org-index.ts";

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

  it("an overdue org on the first page, restored and overdue again with a later deadline, is not listed twice in one walk", async () => {
    // cursor.ts: rows changed between pages "neither shift nor repeat". An org that paid and then missed
    // another invoice is overdue again with a new, later deadline: past the cursor, so the walk meets it again.
    const now = Date.now();
    const ids = await overdueOrgs("again", 12, now);
    const again = ids[0]!;
    const overdue = await walk("overdue", 4, async (page) => {
      if (page !== 1) return;
      await index.upsert(indexEntry(again, "ok", { since: now + 1, version: 2 }));
      await index.upsert(indexEntry(again, "overdue", { since: now + 2, suspend_at: now + 20 * HOUR, version: 3 }));
    });
    expect(overdue.filter((id) => id === again)).toHaveLength(1);
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
