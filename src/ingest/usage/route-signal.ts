import type { Signal } from "../../shared/usage.ts";

/** A route's own signal (docs/metering.md); `bytes` is no route's: it is counted on all of them. */
export type RouteSignal = Exclude<Signal, "bytes">;

const SIGNALS: Record<string, RouteSignal> = { "/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics", "/v1/logpush": "logpush" };

/** The signal of an ingest route (`/v1/traces`, `/v1/logs`, `/v1/metrics`, `/v1/logpush`); null for any other path. */
export function signalOfRoute(route: string): RouteSignal | null {
  return SIGNALS[route] ?? null;
}
