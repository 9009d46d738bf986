import { logError } from "../../shared/log.ts";
import { LogThrottle } from "../log-throttle.ts";

/**
 * Per-org counters in Workers Analytics Engine, when the optional INGEST_ANALYTICS binding is configured.
 * `would_refuse` (observe mode, issue 21): the refusal `code` that was not carried out; the request's own
 * `accepted` (or refused) point follows it, so request totals stay one point per request per outcome.
 */
export type AnalyticsPoint = { orgId: string; route: string; outcome: "accepted" | "refused" | "would_refuse"; code: string; bytes: number };

/** Analytics Engine's limit on the one index of a data point, in bytes. */
export const MAX_INDEX_BYTES = 96;

const failureLog = new LogThrottle({ windowMs: 60_000, capacity: 1 });

/**
 * Org ids may be 128 characters; an index may be 96 bytes. A longer id keeps its first 79
 * characters and gets `~` and 16 hex digits of a hash of the whole id, so it stays readable
 * and distinct. The full id is always in blob 4, for exact filtering.
 */
export function analyticsIndex(orgId: string): string {
  if (new TextEncoder().encode(orgId).byteLength <= MAX_INDEX_BYTES) return orgId;
  return `${orgId.slice(0, MAX_INDEX_BYTES - 17)}~${fnv1a64(orgId)}`;
}

/**
 * Writes one point: index the org (shortened if needed), blobs route, outcome, code and the
 * full org id, doubles 1 (a request) and the bytes. Accounting never fails a request: the
 * data may already be upstream, and a 5xx now would make the client send it again.
 */
export function writeAnalyticsPoint(env: object, point: AnalyticsPoint): void {
  const dataset = (env as { INGEST_ANALYTICS?: AnalyticsEngineDataset }).INGEST_ANALYTICS;
  if (!dataset) return;
  try {
    dataset.writeDataPoint({ indexes: [analyticsIndex(point.orgId)], blobs: [point.route, point.outcome, point.code, point.orgId], doubles: [1, point.bytes] });
  } catch (error) {
    const failures = failureLog.hit("analytics", Date.now());
    if (failures !== null) logError({ event: "analytics_write_failed", org_id: point.orgId, error: error instanceof Error ? error.message : String(error), failures });
  }
}

/** FNV-1a, 64 bits, as 16 hex digits: synchronous (no crypto.subtle round trip on the hot path) and plenty for telling ids apart. */
function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, "0");
}
