import { log, logWarn } from "../../shared/log.ts";
import { Serialized } from "../../shared/serialized.ts";
import type { AutumnClient, AutumnFailure } from "../autumn/client.ts";
import { AutumnBalance, exhausted } from "../autumn/answers.ts";
import type { Transact } from "../org/store.ts";
import { retryDelay, type BalanceAnswer } from "../org/record.ts";
import type { FrozenReport, UsageLedger } from "./ledger.ts";

/** What one report attempt came to, for the ledger. */
export type ReportOutcome =
  /**
   * `exhausted`: what the answer's balance says; null when it says nothing: no balance, or one that does not read
   * (the schema makes that null too), or Autumn 2.5's asynchronous track (`balance: null`). Null decides no read:
   * a held limit is lifted by the reads the object owes anyway (reset, LIMIT_RESYNC_INTERVAL, webhooks).
   */
  | { kind: "applied"; exhausted: boolean | null }
  /** 409 duplicate_idempotency_key: an earlier attempt of this very report was applied (it timed out after Autumn took it). */
  | { kind: "duplicate" }
  /** Autumn cannot take it now (timeout, 5xx, 429, network): the same report again after backoff. */
  | { kind: "retry"; error: string; retryAfterMs?: number }
  /** Autumn refuses it as it stands (no such customer or feature, invalid): kept, and tried again only after `refusedRetryMs`. */
  | { kind: "refused"; error: string };

/** The answer to one `balances.track`, classified. Pure. */
export function reportOutcome(result: { ok: true; value: { balance: unknown } } | { ok: false; failure: AutumnFailure }): ReportOutcome {
  if (result.ok) {
    // Not "room": taking a missing balance for room would read Autumn after every report while a limit is held (issue 18).
    if (result.value.balance == null) return { kind: "applied", exhausted: null };
    const balance = AutumnBalance.safeParse(result.value.balance);
    return { kind: "applied", exhausted: balance.success ? exhausted(balance.data) : null };
  }
  const { failure } = result;
  if (failure.status === 409 && failure.code === "duplicate_idempotency_key") return { kind: "duplicate" };
  const final = failure.kind === "http" && failure.status !== undefined && failure.status >= 400 && failure.status < 500 && failure.status !== 408 && failure.status !== 409 && failure.status !== 429;
  if (final || failure.kind === "not_configured") return { kind: "refused", error: failure.message };
  return { kind: "retry", error: failure.message, ...(failure.retryAfterMs === undefined ? {} : { retryAfterMs: failure.retryAfterMs }) };
}

/**
 * Reports the org's usage to Autumn: one `balances.track` per feature with a frozen report,
 * strictly one report in flight per feature, each under its own idempotency key (ledger.ts).
 * Failures keep the report and its key for the object's alarm to retry; nothing is ever dropped.
 */
export class UsageReporter {
  private readonly runs = new Serialized<{ answers: BalanceAnswer[] }>();
  private readonly ledger: UsageLedger;
  private readonly transact: Transact;

  constructor(ledger: UsageLedger, transact: Transact) {
    this.ledger = ledger;
    this.transact = transact;
  }

  /**
   * Freezes what has waited `intervalMs` and sends every due report. `client` a failure: Autumn is not
   * configured, so each due report waits `refusedRetryMs` like a refused one (never a tight loop of
   * alarms; the configuration error itself is reported by the object).
   * Returns what each applied report's answer said of its balance: the object reads Autumn only when that
   * disagrees with the limits it holds (org/record.ts, `limitDisagreements`).
   */
  flush(orgId: string, client: AutumnClient | AutumnFailure, options: { intervalMs: number; refusedRetryMs: number }): Promise<{ answers: BalanceAnswer[] }> {
    return this.runs.run(async () => {
      const found: BalanceAnswer[] = [];
      this.transact(() => this.ledger.freezeDue(Date.now(), options.intervalMs));
      for (const report of this.ledger.due(orgId, Date.now())) {
        const result = "track" in client ? await client.track(orgId, report.feature_id, report.value, report.key) : { ok: false as const, failure: client };
        const outcome = reportOutcome(result);
        const now = Date.now();
        this.settle(orgId, report, outcome, now, options.refusedRetryMs);
        if (outcome.kind === "applied" && outcome.exhausted !== null) found.push({ feature_id: report.feature_id, exhausted: outcome.exhausted });
      }
      return { answers: found };
    });
  }

  private settle(orgId: string, report: FrozenReport, outcome: ReportOutcome, now: number, refusedRetryMs: number): void {
    const fields = { org_id: orgId, feature_id: report.feature_id, value: report.value, idempotency_key: report.key, attempts: report.attempts + 1 };
    if (outcome.kind === "applied" || outcome.kind === "duplicate") {
      this.transact(() => this.ledger.settled(report.feature_id, now, outcome.kind === "duplicate"));
      log({ event: outcome.kind === "applied" ? "usage_reported" : "usage_report_duplicate", ...fields, ...(outcome.kind === "applied" ? { exhausted: outcome.exhausted } : {}) });
      return;
    }
    const nextAt = now + (outcome.kind === "refused" ? refusedRetryMs : retryDelay(report.attempts + 1, outcome.retryAfterMs));
    this.transact(() => this.ledger.failed(report.feature_id, outcome.error, nextAt, now));
    logWarn({ event: outcome.kind === "refused" ? "usage_report_refused" : "usage_report_failed", ...fields, error: outcome.error, retry_at: nextAt });
  }
}
