import { logWarn } from "../../shared/log.ts";
import { IngestGate } from "./gate.ts";
import { LogThrottle } from "../log-throttle.ts";

/** One gate per isolate: its caches are what make the hot path free. */
export const gate = new IngestGate({
  onDependencyFailure: (event) => logWarn({ event: event.decision === "accept" ? "ingest_fail_open" : "ingest_refusal_unconfirmed", ...event }),
});

/** How often one kind of refusal or upstream trouble of one org is logged per isolate. */
export const DECISION_LOG_WINDOW_MS = 10_000;

/**
 * Per-isolate throttle of refusal and upstream lines: the first per org and code in a
 * 10 s window, then one line with the count. 10,000 keys at most (a few hundred KiB).
 */
export const logThrottle = new LogThrottle({ windowMs: DECISION_LOG_WINDOW_MS, capacity: 10_000 });
