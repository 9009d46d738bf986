import { z } from "zod";
import { Disagreement, HandOver } from "./compare.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";

export const SweepStatus = z.enum(["running", "finished", "failed"]);
export const SweepTrigger = z.enum(["cron", "admin"]);

const Counts = z.object({ unknown_past_due: z.number().int(), no_longer_past_due: z.number().int(), missing_from_autumn: z.number().int() });

/** One reconciliation sweep, as the sweeper stores it: its cursor, counters and status survive crashes and deploys. */
export const SweepRecord = z.object({
  id: z.string(),
  trigger: SweepTrigger,
  status: SweepStatus,
  started_at: z.number(),
  finished_at: z.number().nullable(),
  /**
   * `pages`: walking customers.list from `cursor`; `missing`: looking for not-ok orgs the listing never showed;
   * `finishing`: handing those over; `done`.
   */
  phase: z.enum(["pages", "missing", "finishing", "done"]),
  /** Disagreements found but not yet handed over: handed over a chunk per alarm run, so a big page cannot outlast one. */
  pending: z.array(HandOver).default([]),
  cursor: z.string(),
  pages: z.number().int(),
  customers_seen: z.number().int(),
  orgs_handed_over: Counts,
  /** Objects that could not be reached; the next sweep finds the same disagreement again. */
  hand_over_failures: z.number().int(),
  autumn_calls: z.number().int(),
  object_calls: z.number().int(),
  /** Consecutive failures of the current page, for backoff. */
  attempts: z.number().int(),
  next_at: z.number().nullable(),
  /** The newest errors (page failures and hand-over failures), at most ERROR_LIMIT. */
  errors: z.array(z.object({ at: z.number(), page: z.number().int(), message: z.string(), org_id: z.string().nullable() })),
  error_count: z.number().int(),
});
export type SweepRecord = z.infer<typeof SweepRecord>;

export const ERROR_LIMIT = 20;

export function newSweep(id: string, trigger: SweepRecord["trigger"], now: number): SweepRecord {
  return {
    id,
    trigger,
    status: "running",
    started_at: now,
    finished_at: null,
    phase: "pages",
    pending: [],
    cursor: "",
    pages: 0,
    customers_seen: 0,
    orgs_handed_over: Object.fromEntries(Disagreement.options.map((kind) => [kind, 0])) as z.infer<typeof Counts>,
    hand_over_failures: 0,
    autumn_calls: 0,
    object_calls: 0,
    attempts: 0,
    next_at: now,
    errors: [],
    error_count: 0,
  };
}

export function withErrors(sweep: SweepRecord, errors: SweepRecord["errors"]): SweepRecord {
  return { ...sweep, errors: [...errors, ...sweep.errors].slice(0, ERROR_LIMIT), error_count: sweep.error_count + errors.length };
}


/** The admin API's JSON for a sweep: times as ISO strings, the internal cursor left out. */
export function sweepView(sweep: SweepRecord) {
  const { cursor: _cursor, attempts, next_at, phase, pending, ...rest } = sweep;
  return {
    ...rest,
    pending_hand_overs: pending.length,
    started_at: iso(sweep.started_at),
    finished_at: iso(sweep.finished_at),
    next_page_at: sweep.status === "running" ? iso(next_at) : null,
    phase,
    page_attempts: attempts,
    errors: sweep.errors.map((error) => ({ ...error, at: iso(error.at) })),
  };
}
export type SweepView = ReturnType<typeof sweepView>;
