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
    const noCodes = { billing_suspended: 0, plan_limit_reached: 0, unknown: 0 };
    expect(series[0]).toEqual({ hour: T0, accepted: 4, refused: 2, would_refuse: 0, parked: 0, would_refuse_by_code: noCodes, items: null });
    // A point without codes (an older view) counts its would-be refusals under no code.
    expect(series[5]).toEqual({ hour: T0 + 5 * HOUR_MS, accepted: 0, refused: 0, would_refuse: 4, parked: 7, would_refuse_by_code: { ...noCodes, unknown: 4 }, items: null });
    expect(series.reduce((sum, p) => sum + p.accepted + p.refused + p.would_refuse + p.parked, 0)).toBe(17);
  });

  it("sums the would-be refusals per code and the items, items staying null in an hour none were metered", () => {
    const codes = (billing_suspended: number, plan_limit_reached: number, unknown = 0) => ({ billing_suspended, plan_limit_reached, unknown });
    const series = hourlySeries(
      [
        { hour: T0, accepted: 2, refused: 0, would_refuse: 3, parked: 0, would_refuse_by_code: codes(2, 1), items: { accepted: 20, would_refuse: 30 } },
        { hour: T0, accepted: 1, refused: 0, would_refuse: 1, parked: 0, would_refuse_by_code: codes(0, 1), items: { accepted: 5, would_refuse: 0 } },
        { hour: T0 + HOUR_MS, accepted: 0, refused: 4, would_refuse: 0, parked: 0, would_refuse_by_code: codes(0, 0) },
      ],
      T0,
      2,
    );
    expect(series).toEqual([
      { hour: T0, accepted: 3, refused: 0, would_refuse: 4, parked: 0, would_refuse_by_code: codes(2, 2), items: { accepted: 25, would_refuse: 30 } },
      { hour: T0 + HOUR_MS, accepted: 0, refused: 4, would_refuse: 0, parked: 0, would_refuse_by_code: codes(0, 0), items: null },
    ]);
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

  it("per code: a row for each would-be refusal's code, and one for those counted before codes only when there are some", () => {
    const page = activityChart({
      now,
      unit: "requests",
      points: [
        { hour: start + 700 * HOUR_MS, accepted: 0, refused: 0, would_refuse: 5, parked: 0, would_refuse_by_code: { billing_suspended: 3, plan_limit_reached: 2, unknown: 0 } },
        { hour: start + 100 * HOUR_MS, accepted: 0, refused: 0, would_refuse: 4, parked: 0 },
      ],
      history: [],
    }).value;
    expect(page).toMatch(/<th scope="row">Would be refused<\/th><td>5<\/td><td>9<\/td>/);
    expect(page).toMatch(/<th scope="row">Would be refused: 402 billing_suspended<\/th><td>3<\/td><td>3<\/td>/);
    expect(page).toMatch(/<th scope="row">Would be refused: 429 plan_limit_reached<\/th><td>2<\/td><td>2<\/td>/);
    expect(page).toMatch(/<th scope="row">Would be refused: code not recorded<\/th><td>0<\/td><td>4<\/td>/);
    const coded = activityChart({ now, unit: "requests", points: [{ hour: start, accepted: 0, refused: 0, would_refuse: 1, parked: 0, would_refuse_by_code: { billing_suspended: 1, plan_limit_reached: 0, unknown: 0 } }], history: [] }).value;
    expect(coded).not.toContain("code not recorded");
  });

  it("metering on: items above the line for what went upstream, requests below it for what did not, each on its own scale and named", () => {
    const page = activityChart({
      now,
      unit: "requests",
      points: [
        { hour: start + 719 * HOUR_MS, accepted: 3, refused: 0, would_refuse: 2, parked: 0, would_refuse_by_code: { billing_suspended: 2, plan_limit_reached: 0, unknown: 0 }, items: { accepted: 300, would_refuse: 140 } },
        { hour: start + 718 * HOUR_MS, accepted: 0, refused: 7, would_refuse: 0, parked: 4, would_refuse_by_code: { billing_suspended: 0, plan_limit_reached: 0, unknown: 0 } },
      ],
      history: [],
    }).value;
    const [month, day] = page.split("</svg>");
    for (const drawn of [month!, day!]) {
      // Never stacked on one scale: items up from the line at 100 (topping at 500), requests down from it (topping at 20).
      expect(drawn.match(/<path class="layer (\w+)"/g)).toEqual(['<path class="layer accepted"', '<path class="layer would_refuse"', '<path class="layer parked"', '<path class="layer refused"']);
      expect(drawn).toMatch(/<title>Accepted: 300 items<\/title>/);
      expect(drawn).toMatch(/<title>Would be refused: 140 items<\/title>/);
      expect(drawn).toMatch(/<title>Parked: 4 requests<\/title>/);
      expect(drawn).toMatch(/<title>Refused: 7 requests<\/title>/);
      expect(drawn).toMatch(/text-anchor="end">500<\/text>/);
      expect(drawn).toMatch(/text-anchor="end">20<\/text>/);
      expect(drawn).toMatch(/band-unit"[^>]*>items<\/text>/);
      expect(drawn).toMatch(/band-unit"[^>]*>requests<\/text>/);
      expect(drawn).toContain('<line class="axis-line" x1="40" x2="400" y1="100" y2="100" />');
    }
    expect(month).toMatch(/<desc id="chart-30d-desc">accepted 300 items in 3 requests, refused 7 requests, would be refused 140 items in 2 requests, parked 4 requests in the last 30 days; never/);
    expect(month).toContain("Items that went upstream (above the line) and requests that did not (below it) per hour, the last 30 days");
    // The last day, 15 units an hour: accepted's 300 of 500 rise 42 of the 70 units above the line; parked's 4 of 20 drop 9.2 of 46 below it.
    expect(day).toContain('<path class="layer accepted" d="M40 100L385 100L385 58L400 58L400 100Z">');
    expect(day).toContain('<path class="layer parked" d="M40 100L370 100L370 109.2L385 109.2L385 100Z">');
    expect(page).toContain("Accepted (items, above the line)");
    expect(page).toContain("Refused (requests, below the line)");
    expect(page).toContain("Below it: requests that did not, whose items are not known");
    expect(page).toContain("<caption>Items and requests, counted by the ingest Worker (each row names its unit)</caption>");
    for (const [label, last, month30] of [
      ["Accepted, items", 300, 300],
      ["Accepted, requests", 3, 3],
      ["Refused, requests", 7, 7],
      ["Would be refused, items", 140, 140],
      ["Would be refused, requests", 2, 2],
      ["Would be refused, requests: 402 billing_suspended", 2, 2],
      ["Would be refused, requests: 429 plan_limit_reached", 0, 0],
      ["Parked, requests", 4, 4],
    ] as const) {
      expect(page).toContain(`<th scope="row">${label}</th><td>${last}</td><td>${month30}</td>`);
    }
    // Every row of the table names its unit.
    expect(page.match(/<th scope="row">[^<]*<\/th>/g)!.every((row) => /, (items|requests)/.test(row))).toBe(true);
  });

  it("metering off (no hour has items): requests only, one scale, and it says why", () => {
    const page = activityChart({ now, unit: "requests", points: [{ hour: start + 719 * HOUR_MS, accepted: 3, refused: 1, would_refuse: 0, parked: 0 }], history: [] }).value;
    expect(page).not.toContain("band-unit");
    expect(page).not.toContain(", items");
    expect(page).toContain("In requests: items are drawn only when the requests that went upstream were metered in every hour");
    expect(page).toContain("<caption>Requests, counted by the ingest Worker</caption>");
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
