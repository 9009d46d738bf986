import { describe, expect, it } from "vitest";
import { activityChart, chartWindow, type ActivityPoint } from "../../src/billing/console/chart.ts";
import { HOUR_MS } from "../../src/shared/usage.ts";

/**
 * Issue 21, third read (adversarial): the chart's units where they meet the v6→v7 migration and metering
 * switched on part way through the 30 days. The chart goes "metered" (items above the line) as soon as one
 * hour of the window carries items; every hour that carried none then draws its accepted and would-be-refused
 * requests as 0 items: the data accepted before the switch vanishes from the drawing.
 */

const T0 = Date.UTC(2026, 10, 1);
const now = T0 + 30 * 24 * HOUR_MS + 5 * 60_000;
const { start } = chartWindow(now);
const noCodes = { billing_suspended: 0, plan_limit_reached: 0, unknown: 0 };

/** What the two drawings (30 days, last 24 hours) draw: their layers' outlines (the words are checked apart). */
const drawings = (points: ActivityPoint[]) => {
  const page = activityChart({ now, unit: "requests", points, history: [] }).value;
  return page.match(/<path class="layer \w+" d="[^"]*"/g) ?? [];
};

describe("the chart once metering counted items in one hour of the 30 days", () => {
  it("an hour of accepted requests with no items (a v6 row kept by the migration, or metering off then) is still drawn as accepted data", () => {
    // The v6→v7 story: an org accepted 500 requests an hour ago under v6 (its row migrated with no items, docs/metering.md),
    // then the first message after the deploy carries items. Or: metering switched on in the last hour.
    const metered: ActivityPoint = { hour: start + 719 * HOUR_MS, accepted: 1, refused: 0, would_refuse: 0, parked: 0, would_refuse_by_code: noCodes, items: { accepted: 10, would_refuse: 0 } };
    const beforeItems: ActivityPoint = { hour: start + 718 * HOUR_MS, accepted: 500, refused: 0, would_refuse: 40, parked: 0, would_refuse_by_code: { ...noCodes, unknown: 40 } };
    const withHistory = drawings([metered, beforeItems]);
    const without = drawings([metered]);
    // 540 requests went upstream in that hour. The drawing must show something there: it may not be the same picture as
    // an hour in which nothing at all was accepted (today the two draw the same outlines).
    expect(withHistory).not.toEqual(without);
  });

  it("the words say it too: the 30 days' description does not read as if the 500 accepted requests carried 10 items", () => {
    const metered: ActivityPoint = { hour: start + 719 * HOUR_MS, accepted: 1, refused: 0, would_refuse: 0, parked: 0, would_refuse_by_code: noCodes, items: { accepted: 10, would_refuse: 0 } };
    const beforeItems: ActivityPoint = { hour: start + 100 * HOUR_MS, accepted: 500, refused: 0, would_refuse: 0, parked: 0, would_refuse_by_code: noCodes };
    const page = activityChart({ now, unit: "requests", points: [metered, beforeItems], history: [] }).value;
    // "accepted 10 items in 501 requests" says the 501 requests held 10 items: 500 of them were never metered.
    expect(page).not.toMatch(/accepted 10 items in 501 requests/);
  });

  it("metering switched off since: the last 24 hours' drawing never says 'No items or requests counted' over 500 accepted requests", () => {
    // Ten days ago an hour carried items (metering on then); since yesterday USAGE_FEATURES is empty, and the last
    // hour accepted 500 requests. The 30 days are "metered", so the last day's drawing has only items to draw: none.
    const meteredThen: ActivityPoint = { hour: start + 480 * HOUR_MS, accepted: 2, refused: 0, would_refuse: 0, parked: 0, would_refuse_by_code: noCodes, items: { accepted: 20, would_refuse: 0 } };
    const acceptedNow: ActivityPoint = { hour: start + 719 * HOUR_MS, accepted: 500, refused: 0, would_refuse: 0, parked: 0, would_refuse_by_code: noCodes };
    const page = activityChart({ now, unit: "requests", points: [meteredThen, acceptedNow], history: [] }).value;
    // The table beside it says 500 accepted requests in the last 24 hours (the window is in requests: not every hour was metered)...
    expect(page).toMatch(/<th scope="row">Accepted<\/th>(<td>\d+<\/td>)?<td>500<\/td>/);
    // ...so the drawing of those 24 hours may not say nothing was counted in them.
    expect(page).not.toContain("No items or requests counted in the last 24 hours");
  });
});
