import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DEAD_LETTER_LIMIT } from "../../src/billing/org/events.ts";
import { ORG_VIEW_DEAD_LETTERS } from "../../src/billing/org/view.ts";
import { admin, orgState, orgStub, uniqueOrg } from "../support/billing.ts";

/** Issue 23: an org's dead letters page with a cursor (keyset on their seq, newest first); the org's view shows the newest page. */
type Letter = { event: { id: string }; attempts: number; error: string; at: string };
type Page = { dead_letters: Letter[]; count: number; next_cursor: string | null };

const T = Date.parse("2026-03-01T12:00:00.000Z");

/** Dead letters as the outbox sets them aside (events.ts), written straight into the table: evt_<n> is the n-th, newest last. */
async function seedDeadLetters(org: string, from: number, to: number): Promise<void> {
  await runInDurableObject(orgStub(org), async (instance, state) => {
    await instance.view(); // the object's migration creates the tables
    for (let n = from; n <= to; n++) {
      const event = { id: `evt_${n}`, type: "org.overdue", org_id: org, enforcement: "enforce", state: "overdue", previous_state: "ok", reason: "in_grace_period", deadline: null, suspended_at: null, pay_url: null, at: new Date(T).toISOString() };
      state.storage.sql.exec("INSERT INTO dead_letters (seq, event, attempts, error, at) VALUES (?, ?, ?, ?, ?)", n, JSON.stringify(event), 10 + n, `receiver answered 500 (${n})`, T + n);
    }
  });
}

async function page(org: string, query = ""): Promise<Page> {
  const response = await admin(`/orgs/${org}/dead-letters${query}`);
  expect(response.status).toBe(200);
  return (await response.json()) as Page;
}

const ids = (letters: Letter[]) => letters.map((letter) => letter.event.id);
const range = (from: number, to: number) => Array.from({ length: from - to + 1 }, (_, i) => `evt_${from - i}`);

describe("GET /admin/orgs/{orgId}/dead-letters", () => {
  it("pages newest first with a cursor until next_cursor is null, each letter once", async () => {
    const org = uniqueOrg("dead");
    await seedDeadLetters(org, 1, 45);
    const first = await page(org, "?limit=20");
    expect(first.count).toBe(45);
    expect(ids(first.dead_letters)).toEqual(range(45, 26));
    expect(first.dead_letters[0]).toEqual({ event: expect.objectContaining({ id: "evt_45", type: "org.overdue" }), attempts: 55, error: "receiver answered 500 (45)", at: new Date(T + 45).toISOString() });
    expect(first.next_cursor).toEqual(expect.any(String));
    const second = await page(org, `?limit=20&cursor=${first.next_cursor}`);
    expect(ids(second.dead_letters)).toEqual(range(25, 6));
    const last = await page(org, `?limit=20&cursor=${second.next_cursor}`);
    expect(ids(last.dead_letters)).toEqual(range(5, 1));
    expect(last.next_cursor).toBeNull();
  });

  it("a page that ends exactly at the last letter has no next cursor", async () => {
    const org = uniqueOrg("dead-exact");
    await seedDeadLetters(org, 1, 20);
    const only = await page(org, "?limit=20");
    expect(ids(only.dead_letters)).toEqual(range(20, 1));
    expect(only.next_cursor).toBeNull();
  });

  it("letters set aside between two pages do not shift the next page (keyset, not offset)", async () => {
    const org = uniqueOrg("dead-keyset");
    await seedDeadLetters(org, 1, 30);
    const first = await page(org, "?limit=10");
    await seedDeadLetters(org, 31, 35);
    const second = await page(org, `?limit=10&cursor=${first.next_cursor}`);
    expect(ids(second.dead_letters)).toEqual(range(20, 11));
    expect(second.count).toBe(35);
  });

  it("the default page is the org view's size; an org with none answers an empty page", async () => {
    const org = uniqueOrg("dead-default");
    await seedDeadLetters(org, 1, ORG_VIEW_DEAD_LETTERS + 3);
    expect((await page(org)).dead_letters).toHaveLength(ORG_VIEW_DEAD_LETTERS);
    expect(await page(uniqueOrg("dead-none"))).toEqual({ dead_letters: [], count: 0, next_cursor: null });
  });

  it.each([
    ["a cursor that is not a position", "?cursor=abc"],
    ["a negative cursor", "?cursor=-3"],
    ["an enormous cursor", "?cursor=1e99"],
    ["a zero limit", "?limit=0"],
    ["a limit over the kept letters", `?limit=${DEAD_LETTER_LIMIT + 1}`],
  ])("refuses %s with 400 invalid_request", async (_name, query) => {
    const response = await admin(`/orgs/${uniqueOrg("dead-bad")}/dead-letters${query}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_request", message: expect.any(String) });
  });

  it("refuses an invalid org id with 400 invalid_org_id", async () => {
    const response = await admin(`/orgs/${encodeURIComponent("bad id!")}/dead-letters`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_org_id" });
  });
});

describe("GET /admin/orgs/{orgId} shows the newest dead letters only", () => {
  it(`the newest ${ORG_VIEW_DEAD_LETTERS}, the count and the cursor to the rest`, async () => {
    const org = uniqueOrg("dead-view");
    await seedDeadLetters(org, 1, 45);
    const view = await orgState(org);
    expect(ids(view.dead_letters as Letter[])).toEqual(range(45, 46 - ORG_VIEW_DEAD_LETTERS));
    expect(view.dead_letters_count).toBe(45);
    const rest = await page(org, `?cursor=${view.dead_letters_next_cursor}`);
    expect(ids(rest.dead_letters)).toEqual(range(45 - ORG_VIEW_DEAD_LETTERS, 46 - 2 * ORG_VIEW_DEAD_LETTERS));
  });

  it("an org with few dead letters shows them all and no cursor", async () => {
    const org = uniqueOrg("dead-few");
    await seedDeadLetters(org, 1, 3);
    const view = await orgState(org);
    expect(ids(view.dead_letters as Letter[])).toEqual(range(3, 1));
    expect(view.dead_letters_count).toBe(3);
    expect(view.dead_letters_next_cursor).toBeNull();
  });
});
