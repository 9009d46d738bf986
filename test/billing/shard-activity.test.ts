import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { WOULD_REFUSED_SQL } from "../../src/billing/index/activity.ts";
import { orgIndex } from "../../src/billing/index/object.ts";
import { ACTIVITY_HOURS, activityStart, mergeActivity, type ActivityRow } from "../../src/billing/usage/activity.ts";
import { USAGE_STREAM_WINDOW_MS } from "../../src/billing/usage/stream-marks.ts";
import type { ActivityDelivery } from "../../src/shared/contract.ts";
import { LEGACY_INDEX_NAME, shardNameOf } from "../../src/shared/index-shard.ts";
import { HOUR_MS, hourOf, type ActivityHour } from "../../src/shared/usage.ts";
import { countedNamespace, deleteAllAlarms, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { consolePage } from "../support/console-page.ts";

/**
 * Issue 20: the ingest Worker sends activity in messages of its own, one part per index shard, and the consumer hands
 * each part to its shard's `recordActivity`. The shard folds each part once (per stream and seq) and keeps 30 days;
 * the org's view merges those rows with the ones its own object still keeps from older ingest Workers.
 */

afterEach(async () => {
  vi.restoreAllMocks();
  await deleteAllAlarms();
});

const hoursAgo = (n: number, now = Date.now()) => hourOf(now) - n * HOUR_MS;
const shardOf = (org: string) => env.ORG_INDEX.getByName(shardNameOf(org));
const part = (stream: string, seq: number, orgs: { org_id: string; hours: ActivityHour[] }[]): ActivityDelivery => ({ stream, seq, orgs });

/** A fresh org id in the same shard as `org`. */
function neighbourOf(org: string): string {
  for (;;) {
    const candidate = uniqueOrg("neighbour");
    if (shardNameOf(candidate) === shardNameOf(org)) return candidate;
  }
}

/** A fresh org id in another shard than `org`. */
function strangerTo(org: string): string {
  for (;;) {
    const candidate = uniqueOrg("stranger");
    if (shardNameOf(candidate) !== shardNameOf(org)) return candidate;
  }
}

/** What a shard (by an org of it, or a name) holds: its activity rows and its streams' marks. */
async function held(shard: string): Promise<{ rows: (ActivityRow & { org_id: string })[]; streams: { stream: string; high: number; gaps: string }[] }> {
  return runInDurableObject(env.ORG_INDEX.getByName(shard), (_instance, state) => ({
    rows: state.storage.sql.exec<ActivityRow & { org_id: string }>("SELECT * FROM org_activity ORDER BY org_id, hour").toArray(),
    streams: state.storage.sql.exec<{ stream: string; high: number; gaps: string }>("SELECT stream, high, gaps FROM activity_streams ORDER BY stream").toArray(),
  }));
}

/** The admin view's hour with nothing counted (as in usage-activity.test.ts). */
const viewed = (hour: number) => ({ hour: new Date(hour).toISOString(), accepted: 0, refused: 0, would_refuse: 0, parked: 0, would_refuse_by_code: { billing_suspended: 0, plan_limit_reached: 0, unknown: 0 } });
/** A table row with nothing counted. */
const row = (hour: number): ActivityRow => ({ hour, accepted: 0, refused: 0, would_refuse: 0, parked: 0, would_refuse_billing_suspended: 0, would_refuse_plan_limit_reached: 0, would_refuse_unknown: 0, accepted_items: null, would_refuse_items: null });

/** The structured log lines with this event, logged (at any level) while `run` ran. */
async function logged<T>(event: string, run: () => Promise<T>): Promise<{ result: T; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  for (const level of ["log", "warn", "error"] as const) {
    const original = console[level].bind(console);
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      const entry = args[0] as { event?: unknown } | null;
      if (typeof entry === "object" && entry !== null && entry.event === event) lines.push({ ...entry, level });
      original(...args);
    });
  }
  return { result: await run(), lines };
}

describe("an index shard records activity parts", () => {
  it("folds each part once by stream and seq: a repeat is a duplicate, seqs out of order are all new", async () => {
    const org = uniqueOrg("act_once");
    const other = neighbourOf(org);
    const shard = shardOf(org);
    const { result, lines } = await logged("activity_recorded", async () =>
      shard.recordActivity([part("iso_a", 1, [{ org_id: org, hours: [{ hour: hoursAgo(1), accepted: 5, items: { accepted: 50 } }] }, { org_id: other, hours: [{ hour: hoursAgo(1), refused: 1 }] }])]),
    );
    expect(result).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    expect(lines).toEqual([{ event: "activity_recorded", shard: shardNameOf(org), parts: 1, recorded: 1, duplicates: 0, level: "log" }]);
    // The same part again (a retried send, a redelivery): folded no more.
    expect(await shard.recordActivity([part("iso_a", 1, [{ org_id: org, hours: [{ hour: hoursAgo(1), accepted: 5, items: { accepted: 50 } }] }])])).toEqual({ ok: true, recorded: 0, duplicates: 1 });
    // Another stream's parts 3, 1, 2 (the queue reorders): all new; 2 again in the same call is not.
    const later = (seq: number) => part("iso_b", seq, [{ org_id: org, hours: [{ hour: hoursAgo(1), accepted: seq }, { hour: hoursAgo(0), would_refuse: 1, would_refuse_codes: { billing_suspended: 1 } }] }]);
    expect(await shard.recordActivity([later(3)])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    expect(await shard.recordActivity([later(1), later(2), later(2)])).toEqual({ ok: true, recorded: 2, duplicates: 1 });
    expect(await orgIndex(env).activityOf(org, Date.now())).toEqual([
      { ...row(hoursAgo(1)), accepted: 5 + 3 + 1 + 2, accepted_items: 50, would_refuse_items: 0 },
      { ...row(hoursAgo(0)), would_refuse: 3, would_refuse_billing_suspended: 3 },
    ]);
    expect(await orgIndex(env).activityOf(other, Date.now())).toEqual([{ ...row(hoursAgo(1)), refused: 1 }]);
    expect((await held(shardNameOf(org))).streams.filter((s) => s.stream.startsWith("iso_"))).toEqual([
      { stream: "iso_a", high: 1, gaps: "[]" },
      { stream: "iso_b", high: 3, gaps: "[]" },
    ]);
  });

  it("keeps 30 days: an hour before the window is not stored, and older rows go at the next record", async () => {
    const org = uniqueOrg("act_old");
    const shard = shardOf(org);
    await runInDurableObject(shard, (_instance, state) => {
      state.storage.sql.exec("INSERT INTO org_activity (org_id, hour, accepted) VALUES (?, ?, 7), (?, ?, 8)", org, hoursAgo(31 * 24), org, hoursAgo(ACTIVITY_HOURS - 1));
    });
    // A row past the window is never shown, even before it is deleted.
    expect((await orgIndex(env).activityOf(org, Date.now())).map((r) => r.accepted)).toEqual([8]);
    expect(await shard.recordActivity([part("iso_old", 1, [{ org_id: org, hours: [{ hour: activityStart(Date.now()) - HOUR_MS, accepted: 100 }, { hour: hoursAgo(0), parked: 2 }] }])])).toMatchObject({ ok: true, recorded: 1 });
    expect((await held(shardNameOf(org))).rows.filter((r) => r.org_id === org).map((r) => [r.hour, r.accepted, r.parked])).toEqual([
      [hoursAgo(ACTIVITY_HOURS - 1), 8, 0],
      [hoursAgo(0), 0, 2],
    ]);
  });

  it("refuses a part naming an org of another shard, and stores nothing of the call", async () => {
    const org = uniqueOrg("act_here");
    const stranger = strangerTo(org);
    const before = await held(shardNameOf(org));
    const { result, lines } = await logged("activity_refused", async () =>
      shardOf(org).recordActivity([
        part("iso_w", 1, [{ org_id: org, hours: [{ hour: hoursAgo(0), accepted: 1 }] }]),
        part("iso_w", 2, [{ org_id: org, hours: [{ hour: hoursAgo(0), accepted: 1 }] }, { org_id: stranger, hours: [{ hour: hoursAgo(0), accepted: 1 }] }]),
      ]),
    );
    expect(result).toEqual({ ok: false, error: `org ${stranger} belongs to shard ${shardNameOf(stranger)}, not ${shardNameOf(org)}` });
    expect(lines).toHaveLength(1);
    expect(await held(shardNameOf(org))).toEqual(before);
    expect((await held(shardNameOf(stranger))).rows.filter((r) => r.org_id === stranger)).toEqual([]);
  });

  it("refuses activity sent to the old single index object", async () => {
    const org = uniqueOrg("act_legacy");
    const legacy = env.ORG_INDEX.getByName(LEGACY_INDEX_NAME);
    expect(await legacy.recordActivity([part("iso_l", 1, [{ org_id: org, hours: [{ hour: hoursAgo(0), accepted: 1 }] }])])).toMatchObject({ ok: false, error: expect.stringContaining("keeps no activity") });
    expect(await held(LEGACY_INDEX_NAME)).toEqual({ rows: [], streams: [] });
    expect(await orgIndex(env).activityOf(org, Date.now())).toEqual([]);
  });

  it.each([
    ["a seq of 0", [{ stream: "iso_m", seq: 0, orgs: [{ org_id: "m", hours: [{ hour: 0, accepted: 1 }] }] }]],
    ["no orgs", [{ stream: "iso_m", seq: 1, orgs: [] }]],
    ["an hour not on the hour", [{ stream: "iso_m", seq: 1, orgs: [{ org_id: "m", hours: [{ hour: 5, accepted: 1 }] }] }]],
    ["a negative count", [{ stream: "iso_m", seq: 1, orgs: [{ org_id: "m", hours: [{ hour: 0, accepted: -1 }] }] }]],
    ["a stream id with a space", [{ stream: "iso m", seq: 1, orgs: [{ org_id: "m", hours: [{ hour: 0, accepted: 1 }] }] }]],
    ["not a list", { stream: "iso_m", seq: 1 }],
  ])("refuses a malformed call (%s) and stores nothing", async (_name, deliveries) => {
    // "m" and a valid delivery of it first: the whole call is refused, so not even that one is stored.
    const shard = shardOf("m");
    const valid = part("iso_valid", 1, [{ org_id: "m", hours: [{ hour: hoursAgo(0), accepted: 1 }] }]);
    const before = await held(shardNameOf("m"));
    const call = Array.isArray(deliveries) ? [valid, ...deliveries] : deliveries;
    const { result, lines } = await logged("activity_refused", async () => shard.recordActivity(call as never));
    expect(result).toMatchObject({ ok: false, error: expect.stringMatching(/^malformed activity deliveries/) });
    expect(lines).toMatchObject([{ level: "warn" }]);
    expect(await held(shardNameOf("m"))).toEqual(before);
  });

  it("reads the overview's would-be-refused list through the hour index of org_activity", async () => {
    const plan = await runInDurableObject(shardOf("planned"), (_instance, state) =>
      state.storage.sql
        .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${WOULD_REFUSED_SQL}`, 0, 0, 50)
        .toArray()
        .map((step) => step.detail)
        .join("; "),
    );
    expect(plan).toContain("SEARCH org_activity USING INDEX org_activity_hour (hour>?)");
    expect(plan).not.toContain("SCAN org_activity");
  });

  it("the sharded client's activityOf costs one call, to the org's shard", async () => {
    const org = uniqueOrg("act_one_call");
    const { env: counted, calls } = countedNamespace("ORG_INDEX");
    await orgIndex(counted).activityOf(org, Date.now());
    expect(calls.mock.calls).toEqual([[shardNameOf(org)]]);
  });
});

describe("a shard's streams", () => {
  const clock = fakeClock();

  it("go once silent for the window (the queue's retention and an hour); a gap is owed until then", async () => {
    const org = uniqueOrg("act_window");
    const shard = shardOf(org);
    const start = clock.now;
    const hours = [{ hour: hourOf(start), accepted: 1 }];
    await shard.recordActivity([part("iso_x", 1, [{ org_id: org, hours }]), part("iso_x", 3, [{ org_id: org, hours }]), part("iso_y", 1, [{ org_id: org, hours }])]);
    expect(JSON.parse((await held(shardNameOf(org))).streams.find((s) => s.stream === "iso_x")!.gaps).map(([from, to]: number[]) => [from, to])).toEqual([[2, 2]]);
    // Just inside the window the gap is still owed: part 2 is folded.
    clock.set(start + USAGE_STREAM_WINDOW_MS);
    expect(await shard.recordActivity([part("iso_x", 2, [{ org_id: org, hours: [{ hour: hourOf(clock.now), accepted: 1 }] }])])).toMatchObject({ recorded: 1, duplicates: 0 });
    // Past it, iso_y (silent since the start) is gone; iso_x folded at the last record stays.
    clock.set(start + USAGE_STREAM_WINDOW_MS + 1);
    await shard.recordActivity([part("iso_z", 1, [{ org_id: org, hours: [{ hour: hourOf(clock.now), accepted: 1 }] }])]);
    expect((await held(shardNameOf(org))).streams.map((s) => s.stream).filter((s) => ["iso_x", "iso_y", "iso_z"].includes(s))).toEqual(["iso_x", "iso_z"]);
  });
});

describe("the org's view merges its own activity with its shard's", () => {
  it("mergeActivity sums per hour; items stay null only where both are", () => {
    const own = [{ ...row(0), accepted: 2 }, { ...row(HOUR_MS), accepted: 1, accepted_items: 10, would_refuse_items: 0 }];
    const shard = [{ ...row(0), accepted: 3, would_refuse: 1, would_refuse_plan_limit_reached: 1 }, { ...row(HOUR_MS), refused: 4 }, { ...row(2 * HOUR_MS), parked: 1, accepted_items: 0, would_refuse_items: 5 }];
    expect(mergeActivity(own, shard)).toEqual([
      { ...row(0), accepted: 5, would_refuse: 1, would_refuse_plan_limit_reached: 1 },
      { ...row(HOUR_MS), accepted: 1, refused: 4, accepted_items: 10, would_refuse_items: 0 },
      { ...row(2 * HOUR_MS), parked: 1, accepted_items: 0, would_refuse_items: 5 },
    ]);
    // The inputs are left as they were.
    expect(own[0]).toEqual({ ...row(0), accepted: 2 });
  });

  it("GET /admin/orgs/{id} shows the object's rows (an older ingest Worker's) and the shard's, summed per hour", async () => {
    const org = uniqueOrg("act_view");
    const at = Date.now();
    // An older ingest Worker: activity inside a usage message, folded by the org's object.
    await orgStub(org).recordUsage([{ id: "q_old", counts: {}, first_at: at, last_at: at, activity: { unit: "requests", hours: [{ hour: hoursAgo(2), accepted: 2 }, { hour: hoursAgo(1), accepted: 1, items: { accepted: 10 } }] } }]);
    await shardOf(org).recordActivity([
      part("iso_v", 1, [{ org_id: org, hours: [{ hour: hoursAgo(2), accepted: 3 }, { hour: hoursAgo(1), refused: 4 }, { hour: hoursAgo(0), would_refuse: 2, would_refuse_codes: { plan_limit_reached: 2 }, items: { would_refuse: 20 } }] }]),
    ]);
    const view = await orgState(org);
    expect(view.activity).toEqual({
      unit: "requests",
      days: 30,
      hours: [
        // Nothing metered in either: no items.
        { ...viewed(hoursAgo(2)), accepted: 5 },
        { ...viewed(hoursAgo(1)), accepted: 1, refused: 4, items: { accepted: 10, would_refuse: 0 } },
        { ...viewed(hoursAgo(0)), would_refuse: 2, would_refuse_by_code: { billing_suspended: 0, plan_limit_reached: 2, unknown: 0 }, items: { accepted: 0, would_refuse: 20 } },
      ],
    });
  });

  it("answers with the object's rows, incomplete, when the shard cannot be read; the console says so under the chart", async () => {
    const org = uniqueOrg("act_down");
    const at = Date.now();
    await orgStub(org).recordUsage([{ id: "q_own", counts: {}, first_at: at, last_at: at, activity: { unit: "requests", hours: [{ hour: hoursAgo(1), accepted: 6 }] } }]);
    await shardOf(org).recordActivity([part("iso_d", 1, [{ org_id: org, hours: [{ hour: hoursAgo(1), accepted: 100 }] }])]);
    await runInDurableObject(orgStub(org), (instance) => {
      const namespace = (instance as unknown as { env: BillingEnv }).env.ORG_INDEX;
      vi.spyOn(namespace, "getByName").mockImplementation(() => ({ activityOf: () => Promise.reject(new Error("shard overloaded")) }) as never);
    });
    const { result: view, lines } = await logged("activity_read_failed", () => orgState(org));
    expect(view).toMatchObject({ org_id: org, activity: { incomplete: true, hours: [{ ...viewed(hoursAgo(1)), accepted: 6 }] } });
    expect(view.activity.hours).toHaveLength(1);
    expect(lines).toMatchObject([{ org_id: org, error: "shard overloaded", level: "warn" }]);
    const page = await consolePage(`/admin/org/${org}`);
    const chart = page.slice(page.indexOf('<section class="card" id="activity">'), page.indexOf("<h2>Timeline</h2>"));
    expect(chart).toContain("Part of this org's activity could not be read just now");
    // Once the shard answers again, the view is whole.
    vi.restoreAllMocks();
    expect((await orgState(org)).activity).toEqual({ unit: "requests", days: 30, hours: [{ ...viewed(hoursAgo(1)), accepted: 106 }] });
  });
});

describe("the console overview's would-be-refused list", () => {
  it("sums the last 24 hours per org over the object-written would_refuse rows and the shard's org_activity", async () => {
    const both = uniqueOrg("wr_both");
    const onlyShard = neighbourOf(both);
    const none = neighbourOf(both);
    const index = orgIndex(env);
    // An org object folding an older ingest Worker's messages wrote these ...
    expect(await index.recordWouldRefuse(both, [{ hour: hoursAgo(3), requests: 10 }])).toEqual({ ok: true });
    // ... and a newer ingest Worker's parts reached the shard (every code counts, an hour past 24 h does not; nor do other kinds).
    await shardOf(both).recordActivity([
      part("iso_o", 1, [
        { org_id: both, hours: [{ hour: hoursAgo(30), would_refuse: 1_000 }, { hour: hoursAgo(1), would_refuse: 4, would_refuse_codes: { billing_suspended: 3, plan_limit_reached: 1 } }] },
        { org_id: onlyShard, hours: [{ hour: hoursAgo(2), would_refuse: 6 }, { hour: hoursAgo(0), parked: 2, would_refuse_codes: { plan_limit_reached: 2 } }] },
        { org_id: none, hours: [{ hour: hoursAgo(0), accepted: 50, refused: 3, parked: 1 }] },
      ]),
    ]);
    const overview = await index.overview(Date.now(), HOUR_MS);
    expect(overview.would_refuse.filter((o) => [both, onlyShard, none].includes(o.org_id))).toEqual([
      { org_id: both, requests: 14, last_hour: hoursAgo(1) },
      // Would-be refusals naming no code count as `unknown`, and one parked in an outage counts by its code.
      { org_id: onlyShard, requests: 8, last_hour: hoursAgo(0) },
    ]);
  });
});
