/** Per-org counters in Workers Analytics Engine, when the optional INGEST_ANALYTICS binding is configured. */
export type UsagePoint = { orgId: string; route: string; outcome: "accepted" | "refused"; code: string; bytes: number };

export function recordUsage(env: object, point: UsagePoint): void {
  const dataset = (env as { INGEST_ANALYTICS?: AnalyticsEngineDataset }).INGEST_ANALYTICS;
  dataset?.writeDataPoint({ indexes: [point.orgId], blobs: [point.route, point.outcome, point.code], doubles: [1, point.bytes] });
}
