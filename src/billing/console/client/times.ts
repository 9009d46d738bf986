import { relativeTime } from "../../../shared/relative-time.ts";
import { utcMinute } from "../words.ts";

/** What the tick needs of a `<time>` element (a DOM element, or a stand-in in tests). */
export type TimeElement = { textContent: string | null; getAttribute(name: string): string | null; hasAttribute(name: string): boolean };

/**
 * Rewrites every relative time the server rendered (`data-relative`): past ones count up,
 * future ones down. A countdown (`data-countdown`, a deadline) that has passed says so
 * instead of "3s ago", since the org's state has changed with it.
 */
export function refreshTimes(elements: Iterable<TimeElement>, now: number): void {
  for (const element of elements) {
    const at = element.getAttribute("datetime");
    if (!at || Number.isNaN(Date.parse(at))) continue;
    element.textContent = element.hasAttribute("data-countdown") && Date.parse(at) <= now ? "now: reload for the new state" : relativeTime(at, now);
  }
}

/** The current UTC time beside the override's UTC field (`data-utc-now`), so it never goes stale on an open page. */
export function refreshUtcNow(elements: Iterable<TimeElement>, now: number): void {
  for (const element of elements) element.textContent = utcMinute(new Date(now).toISOString());
}
