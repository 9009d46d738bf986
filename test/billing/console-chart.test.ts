import { describe, expect, it } from "vitest";
import { activityChart, chartWindow, CHART_HOURS, hourlySeries, layerPath, niceMax, periodsFrom, type ChartHistoryEntry } from "../../src/billing/console/chart.ts";
import { HOUR_MS } from "../../src/shared/usage.ts";

/** Issue 21: the org page's chart of the last 30 days, its pure parts. */

const DAY = 24 * HOUR_MS;
const T0 = Date.UTC(2026, 10, 1); // a start of day, so of an hour
const iso = (t: number) => new Date(t).toISOString();

function entry(at: number, fields: Partial<ChartHistoryEntry>): ChartHistoryEntry {
  return { at: iso(at), kind: "transition", from: "ok", to: "ok", override: null, limit: null, ...fields };
}

describe("periodsFrom: the shaded periods from the org's history", () => {
  const start = T0;
  const end = T0 + 30 * DAY;

  it("overdue then suspended then ok, from each entry's state; in any order", () => {
    const history = [
      entry(T0 + 5 * DAY, { from: "overdue", to: "suspended" }),
      entry(T0 + 2 * DAY, { from: "ok", to: "overdue" }),
      entry(T0 + 7 * DAY, { from: "suspended", to: "ok" }),
    ];
    expect(periodsFrom(history, start, end)).toEqual([
      { kind: "overdue", from: T0 + 2 * DAY, to: T0 + 5 * DAY },
      { kind: "suspended", from: T0 + 5 * DAY, to: T0 + 7 * DAY },
    ]);
  });

  it("a state entered before the window (or before the kept history) starts at the window; one still in force ends at its end", () => {
    expect(periodsFrom([entry(T0 - 3 * DAY, { from: "ok", to: "overdue" })], start, end)).toEqual([{ kind: "overdue", from: start, to: end }]);
    // The oldest kept entry leaves `overdue`: the org was overdue from before the window.
    expect(periodsFrom([entry(T0 + DAY, { from: "overdue", to: "ok" })], start, end)).toEqual([{ kind: "overdue", from: start, to: T0 + DAY }]);
    expect(periodsFrom([entry(T0 - 3 * DAY, { from: "ok", to: "suspended" }), entry(T0 - DAY, { from: "suspended", to: "ok" })], start, end)).toEqual([]);
  });

  it("an exemption (exempt or unsuspend) lasts until its end or the next override; a manual suspension is a suspended period", () => {
    const history = [
      entry(T0 + DAY, { from: "ok", to: "overdue" }),
      entry(T0 + 2 * DAY, { kind: "override", from: "overdue", to: "overdue", override: { action: "exempt", until: iso(T0 + 4 * DAY) } }),
      entry(T0 + 10 * DAY, { kind: "override", from: "overdue", to: "overdue", override: { action: "unsuspend", until: iso(T0 + 20 * DAY) } }),
      entry(T0 + 12 * DAY, { kind: "override", from: "overdue", to: "suspended", override: { action: "suspend", until: null } }),
      entry(T0 + 13 * DAY, { kind: "override", from: "suspended", to: "ok", override: { action: "clear", until: null } }),
    ];
    expect(periodsFrom(history, start, end)).toEqual([
      { kind: "overdue", from: T0 + DAY, to: T0 + 12 * DAY },
      { kind: "exempt", from: T0 + 2 * DAY, to: T0 + 4 * DAY },
      { kind: "exempt", from: T0 + 10 * DAY, to: T0 + 12 * DAY },
      { kind: "suspended", from: T0 + 12 * DAY, to: T0 + 13 * DAY },
    ]);
  });

  it("an exemption without end runs to the window's end; an enforcement-mode entry changes nothing", () => {
    const history = [
      entry(T0 + DAY, { kind: "override", from: "ok", to: "ok", override: { action: "exempt", until: null } }),
      entry(T0 + 2 * DAY, { kind: "override", from: "ok", to: "ok", override: null }),
    ];
    expect(periodsFrom(history, start, end)).toEqual([{ kind: "exempt", from: T0 + DAY, to: end }]);
  });

  it("limited while any feature's limit is reached and not cleared", () => {
    const history = [
      entry(T0 + DAY, { kind: "limit_reached", limit: { feature_id: "spans" } }),
      entry(T0 + 2 * DAY, { kind: "limit_reached", limit: { feature_id: "log_records" } }),
      entry(T0 + 3 * DAY, { kind: "limit_cleared", limit: { feature_id: "spans" } }),
      entry(T0 + 4 * DAY, { kind: "limit_cleared", limit: { feature_id: "log_records" } }),
      entry(T0 + 8 * DAY, { kind: "limit_reached", limit: { feature_id: "spans" } }),
    ];
    expect(periodsFrom(history, start, end)).toEqual([
      { kind: "limited", from: T0 + DAY, to: T0 + 4 * DAY },
      { kind: "limited", from: T0 + 8 * DAY, to: end },
    ]);
  });

  it("no history: no periods; an entry without a time is left out", () => {
    expect(periodsFrom([], start, end)).toEqual([]);
    expect(periodsFrom([{ ...entry(0, { from: "ok", to: "suspended" }), at: null }], start, end)).toEqual([]);
  });
});

describe("the series and its scale", () => {
  it("the window is the 720 hours ending with the current one", () => {
    const now = T0 + 30 * DAY + 5 * 60_000;
    expect(chartWindow(now)).toEqual({ start: T0 + HOUR_MS, end: T0 + 30 * DAY + HOUR_MS });
  });

  it("one point per hour, zeros filled, points outside the window left out, the same hour summed", () => {
    const series = hourlySeries(
      [
        { hour: T0, accepted: 3, refused: 0, would_refuse: 0, parked: 0 },
        { hour: T0, accepted: 1, refused: 2, would_refuse: 0, parked: 0 },
        { hour: T0 + 5 * HOUR_MS, accepted: 0, refused: 0, would_refuse: 4, parked: 7 },
        { hour: T0 - HOUR_MS, accepted: 99, refused: 0, would_refuse: 0, parked: 0 },
        { hour: T0 + CHART_HOURS * HOUR_MS, accepted: 99, refused: 0, would_refuse: 0, parked: 0 },
      ],
      T0,
    );
    expect(series).toHaveLength(CHART_HOURS);
    expect(series[0]).toEqual({ hour: T0, accepted: 4, refused: 2, would_refuse: 0, parked: 0 });
    expect(series[5]).toEqual({ hour: T0 + 5 * HOUR_MS, accepted: 0, refused: 0, would_refuse: 4, parked: 7 });
    expect(series.reduce((sum, p) => sum + p.accepted + p.refused + p.would_refuse + p.parked, 0)).toBe(17);
  });

  it("the y axis tops at the next 1, 2 or 5 × 10^k; an empty chart at 1", () => {
    expect([0, 1, 2, 3, 7, 10, 11, 19, 20, 21, 99, 100, 101, 4_500, 123_456].map(niceMax)).toEqual([1, 1, 2, 5, 10, 10, 20, 20, 20, 50, 100, 100, 200, 5_000, 200_000]);
  });

  it("a layer's outline keeps only its corners: a flat hour run is one segment", () => {
    const y = (v: number) => 100 - v * 10;
    expect(layerPath([0, 0, 0], [2, 2, 2], y)).toBe("M40 80L41.5 80L41.5 100L40 100Z");
    expect(layerPath([0, 0, 0], [2, 2, 2], y, 15)).toBe("M40 80L85 80L85 100L40 100Z");
    expect(layerPath([0, 0], [1, 3], y)).toBe("M40 90L40.5 90L40.5 70L41 70L41 100L40 100Z");
  });
});

describe("activityChart", () => {
  const now = T0 + 30 * DAY - 1;
  const { start } = chartWindow(now);

  it("draws each kind counted, the periods behind, and says it all in words (title, desc, table); the last day again, closer", () => {
    const page = activityChart({
      now,
      unit: "requests",
      points: [
        { hour: start + 10 * HOUR_MS, accepted: 120, refused: 0, would_refuse: 0, parked: 0 },
        { hour: start + 500 * HOUR_MS, accepted: 0, refused: 30, would_refuse: 0, parked: 45 },
        { hour: start + 719 * HOUR_MS, accepted: 0, refused: 0, would_refuse: 6, parked: 0 },
      ],
      history: [entry(start + 100 * HOUR_MS, { from: "ok", to: "overdue" }), entry(start + 400 * HOUR_MS, { from: "overdue", to: "suspended" })],
    }).value;
    const [month, day] = page.split("</svg>");
    expect(month).toContain('viewBox="0 0 406 166" width="100%" role="img" aria-labelledby="chart-30d-title chart-30d-desc"');
    expect(month!.match(/<path class="layer (\w+)"/g)).toEqual(['<path class="layer accepted"', '<path class="layer would_refuse"', '<path class="layer parked"', '<path class="layer refused"']);
    // The longer period first, the shorter drawn over it.
    expect(month!.match(/<rect class="period (\w+)"/g)).toEqual(['<rect class="period suspended"', '<rect class="period overdue"']);
    // The y axis tops at 200 (the largest hour holds 120).
    expect(month).toMatch(/text-anchor="end">200<\/text>/);
    expect(month).toMatch(/<desc id="chart-30d-desc">accepted 120, refused 30, would be refused 6, parked 45 requests in the last 30 days; overdue from [^;]+; suspended from .+ to now\.<\/desc>/);
    // The last 24 hours: only the would-be refusals of the last hour, 15 units wide, under the suspension still in force.
    expect(day).toContain('aria-labelledby="chart-24h-title chart-24h-desc"');
    expect(day!.match(/<path class="layer (\w+)"/g)).toEqual(['<path class="layer would_refuse"']);
    expect(day).toContain('d="M40 146L385 146L385 76.4L400 76.4L400 146Z"'); // 6 of an axis topping at 10
    expect(day!.match(/<rect class="period (\w+)"[^>]*>/g)).toEqual(['<rect class="period suspended" x="40" y="30" width="360" height="116">']);
    expect(page).toMatch(/<th scope="row">Parked<\/th><td>0<\/td><td>45<\/td>/);
    expect(page).toMatch(/<th scope="row">Would be refused<\/th><td>6<\/td><td>6<\/td>/);
    expect(page).toContain("Suspended: ");
    expect(page).not.toContain("No requests counted");
  });

  it("a spell of seconds overdue before a suspension is still seen: drawn 3 units wide, over the suspension", () => {
    const overdueAt = now - 2 * HOUR_MS;
    const page = activityChart({
      now,
      unit: "requests",
      points: [],
      history: [entry(overdueAt, { from: "ok", to: "overdue" }), entry(overdueAt + 20_000, { from: "overdue", to: "suspended" })],
    }).value;
    const day = page.split("</svg>")[1]!;
    const rects = day.match(/<rect class="period (\w+)" x="([\d.]+)" y="\d+" width="([\d.]+)"/g)!;
    expect(rects.map((r) => r.match(/period (\w+)/)![1])).toEqual(["suspended", "overdue"]);
    const overdue = /<rect class="period overdue" x="([\d.]+)" y="\d+" width="([\d.]+)"/.exec(day)!;
    const suspended = /<rect class="period suspended" x="([\d.]+)"/.exec(day)!;
    expect(Number(overdue[2])).toBe(3);
    expect(Number(overdue[1])).toBeLessThanOrEqual(Number(suspended[1]));
  });

  it("an org with no activity and no history: axes, a sentence, zeros in the table", () => {
    const page = activityChart({ now, unit: "requests", points: [], history: [] }).value;
    expect(page).not.toContain('<path class="layer');
    expect(page).not.toContain('<rect class="period');
    expect(page).toContain("No requests counted in the last 30 days");
    expect(page).toContain("No requests counted in the last 24 hours");
    expect(page).toContain("Never overdue, suspended, exempt or limited in the last 30 days.");
    expect(page).toMatch(/<th scope="row">Accepted<\/th><td>0<\/td><td>0<\/td>/);
  });

  it("escapes nothing it should not, and fits a phone: a viewBox and no fixed width or inline style", () => {
    const page = activityChart({ now, unit: "requests", points: [{ hour: start, accepted: 1, refused: 0, would_refuse: 0, parked: 0 }], history: [] }).value;
    expect(page).not.toMatch(/style=/);
    expect(page).not.toMatch(/<svg[^>]*\swidth="\d+(px)?"/);
    // A count is whole: no 0.5 on the axis of an hour holding one request.
    expect(page).not.toContain(">0.5<");
    expect(page).not.toContain("&lt;");
  });
});
