/**
 * The console's only script: live countdowns for `<time data-countdown>`. Pages are
 * complete without it (the server renders the same relative times once).
 */
import { relativeTime } from "../../../shared/relative-time.ts";

function tick(): void {
  const now = Date.now();
  for (const element of document.querySelectorAll<HTMLTimeElement>("time[data-countdown]")) {
    const at = element.getAttribute("datetime");
    if (!at) continue;
    element.textContent = Date.parse(at) <= now ? "now: reload for the new state" : relativeTime(at, now);
  }
}

tick();
setInterval(tick, 1_000);
