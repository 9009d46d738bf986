import { formatDuration } from "../../shared/duration.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";
import type { UsageSettings } from "../config.ts";
import type { OrgRecord } from "../org/record.ts";
import type { LedgerRow } from "./ledger-row.ts";
import { meteredFeatures } from "../autumn/answers.ts";

/**
 * The admin view's `usage` block (README, "Usage metering"): per metered feature, the ledger
 * (received, reported, the backlog still owed to Autumn and the report in flight), the balance
 * Autumn showed at the last read, and the limit in force. Features no longer mapped keep their
 * ledger rows, so a backlog never disappears from view.
 */
export function usageView(record: OrgRecord, rows: LedgerRow[], settings: UsageSettings, now: number) {
  const mapped = meteredFeatures(settings.features);
  const ids = [...new Set([...mapped.keys(), ...rows.map((row) => row.feature_id)])].sort();
  return {
    metering: mapped.size > 0,
    enforced: settings.enforce,
    report_interval: formatDuration(settings.reportIntervalMs),
    features: ids.map((featureId) => {
      const row = rows.find((r) => r.feature_id === featureId);
      const balance = record.evidence?.balances[featureId] ?? null;
      const limit = record.limits.find((l) => l.feature_id === featureId) ?? null;
      const inFlight = row?.report_value ?? null;
      return {
        feature_id: featureId,
        signals: mapped.get(featureId) ?? [],
        received: row?.received ?? 0,
        reported: row?.reported ?? 0,
        /** Received but not yet confirmed by Autumn: what is pending plus the report in flight. */
        backlog: (row?.pending ?? 0) + (inFlight ?? 0),
        pending: row?.pending ?? 0,
        in_flight:
          inFlight === null
            ? null
            : { value: inFlight, attempts: row!.report_attempts, next_attempt_at: iso(row!.report_next_at), first_attempt_at: iso(row!.report_first_at) },
        reports: row?.reports ?? 0,
        duplicates_refused: row?.duplicates ?? 0,
        last_reported_at: iso(row?.last_reported_at ?? null),
        last_error: row?.last_error ?? null,
        balance: balance === null ? null : { ...balance, next_reset_at: iso(balance.next_reset_at) },
        limit: limit === null ? null : { since: iso(limit.since), reset_at: iso(limit.reset_at), in_force: limit.reset_at === null || limit.reset_at > now },
      };
    }),
  };
}
export type UsageView = ReturnType<typeof usageView>;
