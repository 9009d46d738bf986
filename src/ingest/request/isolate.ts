import { logWarn } from "../../shared/log.ts";
import { IngestGate } from "./gate.ts";

/** One gate per isolate: its caches are what make the hot path free. */
export const gate = new IngestGate({
  onDependencyFailure: (event) => logWarn({ event: event.decision === "accept" ? "ingest_fail_open" : "ingest_refusal_unconfirmed", ...event }),
});
