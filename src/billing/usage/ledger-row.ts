/**
 * One feature's row of the ledger. Usage moves received → pending → in flight (a frozen report:
 * `report_value` under idempotency key `epoch:report_seq`) → reported. A report's value never
 * changes once frozen, so every retry of it carries the same key, and Autumn refuses any retry
 * of a report it already applied (409) instead of counting it twice.
 */
export type LedgerRow = {
  feature_id: string;
  /** Random, fixed when the row is created: keys stay unique even if the object's storage were ever lost and seq restarted. */
  epoch: string;
  received: number;
  pending: number;
  pending_since: number | null;
  report_seq: number;
  report_value: number | null;
  report_attempts: number;
  report_next_at: number | null;
  report_first_at: number | null;
  reported: number;
  reports: number;
  /** Reports Autumn answered 409 duplicate_idempotency_key: an earlier attempt had been applied (a timeout after applying). */
  duplicates: number;
  last_reported_at: number | null;
  last_error: string | null;
};
