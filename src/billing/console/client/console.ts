/**
 * The console's only script: every relative time (`<time data-relative>`) ticks, once a
 * second. Pages are complete without it (the server renders the same relative times once).
 */
import { refreshTimes } from "./times.ts";

function tick(): void {
  refreshTimes(document.querySelectorAll<HTMLTimeElement>("time[data-relative]"), Date.now());
}

tick();
setInterval(tick, 1_000);
