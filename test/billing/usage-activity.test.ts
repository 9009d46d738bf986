import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { ACTIVITY_TABLES, activityOf, activityStart, ACTIVITY_HOURS, wouldRefuseDue } from "../../src/billing/usage/activity.ts";
import { orgIndex } from "../../src/billing/index/object.ts";
import { EVENT_TABLES } from "../../src/billing/org/events.ts";
import { OrgStore } from "../../src/billing/org/store.ts";
import { USAGE_TABLES } from "../../src/billing/usage/ledger.ts";
import type { OrgBilling } from "../../src/billing/org/object.ts";
import type { UsageDelivery } from "../../src/shared/contract.ts";
import { HOUR_MS, hourOf } from "../../src/shared/usage.ts";
import { deleteAllAlarms, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { consolePage } from "../support/console-page.ts";

/**
 * Issue 21: the org's object keeps the ingest Worker's activity counts per hour for the console's
 * chart, folded once per usage message (the ledger's dedupe), the last 30 days only.
 */

afterEach(deleteAllAlarms);

const hoursAgo = (n: number, now = Date.now()) => hourOf(now) - n * HOUR_MS;

type MessageHour = NonNullable<UsageDelivery["activity"]>["hours"][number];

function message(id: string, hours: MessageHour[], stream?: { stream: string; seq: number }): UsageDelivery {
  const at = Date.now();
  return { id, ...stream, counts: {}, first_at: at, last_at: at, activity: { unit: "requests", hours } };
}

/** A row of the table with nothing counted: no would-be refusal of either code, no items metered. */
const row = (hour: number) => ({ hour, accepted: 0, refused: 0, would_refuse: 0, parked: 0, would_refuse_billing_suspended: 0, would_refuse_plan_limit_reached: 0, would_refuse_unknown: 0, accepted_items: null, would_refuse_items: null });
/** An hour of the admin view with nothing counted. */
const viewed = (hour: number) => ({ hour: new Date(hour).toISOString(), accepted: 0, refused: 0, would_refuse: 0, parked: 0, would_refuse_by_code: { billing_suspended: 0, plan_limit_reached: 0, unknown: 0 } });

describe("activityOf: the hours of a batch of messages (or of an activity part's orgs) per hour", () => {
  it("sums the same hour across messages, drops hours before the window, counts a future hour in the current one", () => {
    const now = Date.UTC(2026, 10, 30, 12, 30);
    const current = hourOf(now);
    const rows = activityOf(
      [
        [{ hour: current - HOUR_MS, accepted: 2 }, { hour: current, refused: 1 }],
        [{ hour: current - HOUR_MS, accepted: 3, parked: 4 }, { hour: activityStart(now) - HOUR_MS, accepted: 100 }],
        [{ hour: current + HOUR_MS, would_refuse: 5 }],
        // A usage message carrying no activity.
        [],
      ],
      now,
    );
    expect(rows).toEqual([
      { ...row(current - HOUR_MS), accepted: 5, parked: 4 },
      // Message c names no code (as an ingest Worker from before the split sends it): its would-be refusals are `unknown`.
      { ...row(current), refused: 1, would_refuse: 5, would_refuse_unknown: 5 },
    ]);
    expect(hourOf(now) - activityStart(now)).toBe((ACTIVITY_HOURS - 1) * HOUR_MS);
  });
});

describe("the org's object keeps its activity", () => {
  it("folds each message once (by stream and seq, or by queue id for a message without them) and shows it in the admin view", async () => {
    const org = uniqueOrg("activity");
    const stub = orgStub(org);
    const one = message("q1", [{ hour: hoursAgo(2), accepted: 10, would_refuse: 3 }], { stream: "iso1", seq: 1 });
    expect(await stub.recordUsage([one])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    // Redelivered (another queue id, the same batch), and a message from before streams, twice.
    const legacy = message("q_legacy", [{ hour: hoursAgo(2), parked: 2 }, { hour: hoursAgo(0), refused: 7 }]);
    expect(await stub.recordUsage([{ ...one, id: "q2" }, legacy])).toEqual({ ok: true, recorded: 1, duplicates: 1 });
    expect(await stub.recordUsage([legacy])).toEqual({ ok: true, recorded: 0, duplicates: 1 });
    const view = await orgState(org);
    expect(view.activity).toEqual({
      unit: "requests",
      days: 30,
      hours: [
        // Would-be refusals in a message naming no code (an ingest Worker from before the split) count under `unknown`.
        { ...viewed(hoursAgo(2)), accepted: 10, would_refuse: 3, parked: 2, would_refuse_by_code: { billing_suspended: 0, plan_limit_reached: 0, unknown: 3 } },
        { ...viewed(hoursAgo(0)), refused: 7 },
      ],
    });
  });

  it("keeps 30 days: an hour older than the window is deleted at the next fold, and never shown", async () => {
    const org = uniqueOrg("activity-old");
    const stub = orgStub(org);
    await stub.recordUsage([message("m1", [{ hour: hoursAgo(1), accepted: 1 }])]);
    // A row left from 31 days ago (as if folded then).
    await runInDurableObject(stub, (_instance: OrgBilling, state) => {
      state.storage.sql.exec("INSERT INTO usage_activity (hour, accepted) VALUES (?, 5), (?, 6)", hoursAgo(31 * 24), hoursAgo(ACTIVITY_HOURS));
    });
    expect((await orgState(org)).activity.hours.map((h) => h.accepted)).toEqual([1]);
    await stub.recordUsage([message("m2", [{ hour: hoursAgo(ACTIVITY_HOURS - 1), accepted: 2 }])]);
    const rows = await runInDurableObject(stub, (_instance: OrgBilling, state) => state.storage.sql.exec<{ hour: number }>("SELECT hour FROM usage_activity ORDER BY hour").toArray().map((r) => r.hour));
    expect(rows).toEqual([hoursAgo(ACTIVITY_HOURS - 1), hoursAgo(1)]);
  });

  it("an object at schema 5 is migrated: usage_activity is created, and folds", async () => {
    const org = uniqueOrg("activity-migrate");
    const stub = orgStub(org);
    await stub.recordUsage([message("v5", [{ hour: hoursAgo(1), accepted: 1 }])]);
    const version = await runInDurableObject(stub, (_instance: OrgBilling, state) => {
      const sql = state.storage.sql;
      sql.exec("DROP TABLE usage_activity");
      sql.exec("UPDATE schema_version SET version = 5");
      new OrgStore(state.storage, [EVENT_TABLES, USAGE_TABLES, ACTIVITY_TABLES]);
      return sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version;
    });
    expect(version).toBe(7);
    await stub.recordUsage([message("v6", [{ hour: hoursAgo(1), refused: 2 }])]);
    expect((await orgState(org)).activity.hours).toEqual([{ ...viewed(hoursAgo(1)), refused: 2 }]);
  });

  it("the console's org page draws it", async () => {
    const org = uniqueOrg("activity-page");
    await orgStub(org).recordUsage([message("p1", [{ hour: hoursAgo(3), accepted: 40, parked: 9 }])]);
    const page = await consolePage(`/admin/org/${org}`);
    const chart = page.indexOf('<section class="card" id="activity">');
    expect(chart).toBeGreaterThan(0);
    expect(chart).toBeLessThan(page.indexOf("<h2>Timeline</h2>"));
    expect(page).toContain('<path class="layer accepted"');
    expect(page).toContain('<path class="layer parked"');
    expect(page).toMatch(/<th scope="row">Parked<\/th><td>9<\/td><td>9<\/td>/);
  });
});

describe("would-be refusals per code, and the items of what went upstream (schema 7)", () => {
  it("activityOf sums each code, counts a message naming no code under unknown, and items only where a message carried them", () => {
    const now = Date.UTC(2026, 10, 30, 12, 30);
    const current = hourOf(now);
    const rows = activityOf(
      [
        [{ hour: current, would_refuse: 3, would_refuse_codes: { billing_suspended: 2, plan_limit_reached: 1 }, accepted: 1, items: { accepted: 40, would_refuse: 25 } }],
        [{ hour: current, would_refuse: 4 }, { hour: current - HOUR_MS, refused: 2 }],
        // Codes beyond the forwarded would-be refusals: requests observe mode let through that were parked in an outage.
        [{ hour: current, parked: 2, would_refuse: 0, would_refuse_codes: { plan_limit_reached: 2 } }],
      ],
      now,
    );
    expect(rows).toEqual([
      { ...row(current - HOUR_MS), refused: 2 },
      { ...row(current), accepted: 1, parked: 2, would_refuse: 7, would_refuse_billing_suspended: 2, would_refuse_plan_limit_reached: 3, would_refuse_unknown: 4, accepted_items: 40, would_refuse_items: 25 },
    ]);
  });

  it("the org's object counts would-be refusals per code and items per hour; the admin view shows the total, each code, and the items", async () => {
    const org = uniqueOrg("activity-codes");
    const stub = orgStub(org);
    await stub.recordUsage([
      message("c1", [{ hour: hoursAgo(1), would_refuse: 5, would_refuse_codes: { billing_suspended: 5 }, items: { would_refuse: 50 } }], { stream: "iso1", seq: 1 }),
      message("c2", [{ hour: hoursAgo(1), would_refuse: 2, would_refuse_codes: { plan_limit_reached: 2 }, accepted: 3, items: { accepted: 30, would_refuse: 20 } }], { stream: "iso1", seq: 2 }),
    ]);
    // An older ingest Worker's message: a total with no code, no items.
    await stub.recordUsage([message("legacy", [{ hour: hoursAgo(1), would_refuse: 4 }, { hour: hoursAgo(0), refused: 1 }])]);
    // GET /admin/orgs/{id}
    expect((await orgState(org)).activity).toEqual({
      unit: "requests",
      days: 30,
      hours: [
        { ...viewed(hoursAgo(1)), accepted: 3, would_refuse: 11, would_refuse_by_code: { billing_suspended: 5, plan_limit_reached: 2, unknown: 4 }, items: { accepted: 30, would_refuse: 70 } },
        // Nothing metered this hour: no items, not 0 items.
        { ...viewed(hoursAgo(0)), refused: 1 },
      ],
    });
  });

  it("an object at schema 6 is migrated to 7: its rows keep their counts (would-be refusals under no code, no items), and fold per code", async () => {
    const org = uniqueOrg("activity-v7");
    const stub = orgStub(org);
    const version = await runInDurableObject(stub, (_instance: OrgBilling, state) => {
      const sql = state.storage.sql;
      // The table as version 6 made it, with a row folded then.
      sql.exec("DROP TABLE usage_activity");
      sql.exec("CREATE TABLE usage_activity (hour INTEGER PRIMARY KEY, accepted INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0, would_refuse INTEGER NOT NULL DEFAULT 0, parked INTEGER NOT NULL DEFAULT 0)");
      sql.exec("INSERT INTO usage_activity (hour, accepted, would_refuse) VALUES (?, 6, 8)", hoursAgo(2));
      sql.exec("UPDATE schema_version SET version = 6");
      new OrgStore(state.storage, [EVENT_TABLES, USAGE_TABLES, ACTIVITY_TABLES]);
      return sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version;
    });
    expect(version).toBe(7);
    await stub.recordUsage([message("v7", [{ hour: hoursAgo(2), would_refuse: 1, would_refuse_codes: { plan_limit_reached: 1 }, items: { would_refuse: 9 } }])]);
    expect((await orgState(org)).activity.hours).toEqual([
      { ...viewed(hoursAgo(2)), accepted: 6, would_refuse: 9, would_refuse_by_code: { billing_suspended: 0, plan_limit_reached: 1, unknown: 8 }, items: { accepted: 0, would_refuse: 9 } },
    ]);
  });
});

describe("the console overview's would-be-refused list (the index)", () => {
  it("is due when a fold brings would-be refusals, at most once per org and hour", () => {
    const now = Date.UTC(2026, 10, 30, 12, 30);
    const some = [{ ...row(hourOf(now)), would_refuse: 1, would_refuse_billing_suspended: 1 }];
    // Parked in an outage though observe mode let it through: a would-be refusal all the same.
    const parkedThrough = [{ ...row(hourOf(now)), parked: 1, would_refuse_plan_limit_reached: 1 }];
    const beforeTheSplit = [{ ...row(hourOf(now)), would_refuse: 2, would_refuse_unknown: 2 }];
    const none = [{ ...row(hourOf(now)), accepted: 5, refused: 1, parked: 2 }];
    expect(wouldRefuseDue(some, null, now)).toBe(true);
    expect(wouldRefuseDue(some, hourOf(now) - HOUR_MS, now)).toBe(true);
    expect(wouldRefuseDue(some, hourOf(now), now)).toBe(false);
    expect(wouldRefuseDue(parkedThrough, null, now)).toBe(true);
    expect(wouldRefuseDue(beforeTheSplit, null, now)).toBe(true);
    expect(wouldRefuseDue(none, null, now)).toBe(false);
    expect(wouldRefuseDue([], null, now)).toBe(false);
  });

  it("an org's object writes its last 24 hours' would-be refusals to the index; the overview sums them per org, the most first", async () => {
    const big = uniqueOrg("would-big");
    const small = uniqueOrg("would-small");
    // The first fold with would-be refusals this hour writes every hour of the last 24 that had some (not the 30th hour ago).
    await orgStub(big).recordUsage([message("b1", [{ hour: hoursAgo(30), would_refuse: 1_000 }, { hour: hoursAgo(5), would_refuse: 400 }, { hour: hoursAgo(0), would_refuse: 20, accepted: 3 }])]);
    // A second fold in the same hour does not write again: the index keeps the first write's count for this hour.
    await orgStub(big).recordUsage([message("b2", [{ hour: hoursAgo(0), would_refuse: 5 }])]);
    await orgStub(small).recordUsage([message("s1", [{ hour: hoursAgo(1), would_refuse: 7 }])]);
    await orgStub(uniqueOrg("would-none")).recordUsage([message("n1", [{ hour: hoursAgo(1), accepted: 7, refused: 2 }])]);
    const overview = await orgIndex(env).overview(Date.now(), 24 * HOUR_MS);
    const ours = overview.would_refuse.filter((row) => row.org_id === big || row.org_id === small || row.org_id.startsWith("would-none"));
    expect(ours).toEqual([
      { org_id: big, requests: 420, last_hour: hoursAgo(0) },
      { org_id: small, requests: 7, last_hour: hoursAgo(1) },
    ]);
    // The object's own count is exact all the same.
    expect((await orgState(big)).activity.hours.find((h) => h.hour === new Date(hoursAgo(0)).toISOString())?.would_refuse).toBe(25);
    const page = await consolePage("/admin");
    const card = page.slice(page.indexOf('id="would-refuse"'));
    expect(card).toContain("Would have been refused in the last 24 hours");
    expect(card).toMatch(new RegExp(`${big}</a></td><td>420</td>`));
  });

  it("the index keeps the larger count for an hour (a late, older write cannot lower it) and refuses a malformed write", async () => {
    const org = uniqueOrg("would-late");
    const index = orgIndex(env);
    expect(await index.recordWouldRefuse(org, [{ hour: hoursAgo(2), requests: 9 }])).toEqual({ ok: true });
    expect(await index.recordWouldRefuse(org, [{ hour: hoursAgo(2), requests: 4 }])).toEqual({ ok: true });
    expect(await index.recordWouldRefuse(org, [{ hour: hoursAgo(1), requests: 3 }, { hour: hoursAgo(0), requests: -1 }])).toEqual({ ok: false });
    expect((await index.overview(Date.now(), HOUR_MS)).would_refuse.filter((row) => row.org_id === org)).toEqual([{ org_id: org, requests: 9, last_hour: hoursAgo(2) }]);
  });
});
