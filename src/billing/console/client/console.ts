/**
 * The console's only script: every relative time (`<time data-relative>`) ticks, once a
 * second, and so does the UTC clock beside the override's UTC field. Pages are complete without it (the server renders the same relative times once).
 */
import { refreshTimes, refreshUtcNow } from "./times.ts";

function tick(): void {
  const now = Date.now();
  refreshTimes(document.querySelectorAll<HTMLTimeElement>("time[data-relative]"), now);
  refreshUtcNow(document.querySelectorAll<HTMLTimeElement>("time[data-utc-now]"), now);
}

tick();
setInterval(tick, 1_000);
