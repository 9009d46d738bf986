import { z } from "zod";
import { Disagreement, HandOver } from "./compare.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";

/** `held`: stopped before restoring too many orgs, waiting for an operator; `discarded`: a held sweep the next one replaced. */
export const SweepStatus = z.enum(["running", "held", "finished", "failed", "discarded"]);
export const SweepTrigger = z.enum(["cron", "admin"]);

const count = z.number().int().default(0);
const Counts = z.object({ unknown_past_due: count, no_longer_past_due: count, missing_from_autumn: count, limit_reached: count, limit_lifted: count });
const RestoreCounts = z.object({ no_longer_past_due: count, missing_from_autumn: count, limit_lifted: count });

/**
 * One reconciliation sweep, as the sweeper stores it: its cursor, counters and status survive crashes and deploys.
 * The hand-overs it owes are rows of its `sweep_pending` table, never part of this document (which must stay
 * far below SQLite's 2 MB row limit however many orgs are pending).
 */
export const SweepRecord = z.object({
  id: z.string(),
  trigger: SweepTrigger,
  status: SweepStatus,
  started_at: z.number(),
  finished_at: z.number().nullable(),
  /**
   * `pages`: walking customers.list from `cursor` (handing over what cannot restore anyone as it goes);
   * `missing`: looking for not-ok orgs the listing never showed, then weighing the restores; `held`: waiting
   * for an operator; `finishing`: handing the rest over; `done`.
   */
  phase: z.enum(["pages", "missing", "held", "finishing", "done"]),
  cursor: z.string(),
  pages: z.number().int(),
  customers_seen: z.number().int(),
  orgs_handed_over: Counts,
  /** What the sweep would move toward ok, by kind (known after the last page), and a sample of those orgs. */
  would_restore: RestoreCounts.default({ no_longer_past_due: 0, missing_from_autumn: 0, limit_lifted: 0 }),
  would_restore_sample: z.array(HandOver).default([]),
  /** The orgs Tollgate held restricted (not ok, or with a plan limit) when the restores were weighed, and how many could go without a hold. */
  restricted_held: z.number().int().default(0),
  restore_allowance: z.number().int().default(0),
  /** Orgs the listing did not show that were already missing at the last sweep that acted: not handed over again (their objects re-read them on the resync schedule). */
  still_missing: z.number().int().default(0),
  /** Whether an operator confirmed a held sweep, and when. */
  confirmed: z.boolean().default(false),
  confirmed_at: z.number().nullable().default(null),
  /** Objects that could not be reached; the next sweep finds the same disagreement again. */
  hand_over_failures: z.number().int(),
  autumn_calls: z.number().int(),
  /** Org objects asked (one per hand-over). */
  object_calls: z.number().int(),
  /** Index calls: one per page (which listed orgs it holds) and two after the last (not-ok orgs, restricted count): docs/scale.md's formula. */
  index_calls: z.number().int().default(0),
  /** Consecutive failures of the current page, for backoff. */
  attempts: z.number().int(),
  next_at: z.number().nullable(),
  /** The newest errors (page failures and hand-over failures), at most ERROR_LIMIT. */
  errors: z.array(z.object({ at: z.number(), page: z.number().int(), message: z.string(), org_id: z.string().nullable() })),
  error_count: z.number().int(),
});
export type SweepRecord = z.infer<typeof SweepRecord>;

export const ERROR_LIMIT = 20;
/** Orgs shown of what a sweep would restore. */
export const SAMPLE_LIMIT = 20;

export function newSweep(id: string, trigger: SweepRecord["trigger"], now: number): SweepRecord {
  return {
    id,
    trigger,
    status: "running",
    started_at: now,
    finished_at: null,
    phase: "pages",
    cursor: "",
    pages: 0,
    customers_seen: 0,
    orgs_handed_over: Object.fromEntries(Disagreement.options.map((kind) => [kind, 0])) as z.infer<typeof Counts>,
    would_restore: { no_longer_past_due: 0, missing_from_autumn: 0, limit_lifted: 0 },
    would_restore_sample: [],
    restricted_held: 0,
    restore_allowance: 0,
    still_missing: 0,
    confirmed: false,
    confirmed_at: null,
    hand_over_failures: 0,
    autumn_calls: 0,
    object_calls: 0,
    index_calls: 0,
    attempts: 0,
    next_at: now,
    errors: [],
    error_count: 0,
  };
}

export function withErrors(sweep: SweepRecord, errors: SweepRecord["errors"]): SweepRecord {
  return { ...sweep, errors: [...errors, ...sweep.errors].slice(0, ERROR_LIMIT), error_count: sweep.error_count + errors.length };
}

/** The admin API's JSON for a sweep: times as ISO strings, the internal cursor left out; `pending` counts its pending rows. */
export function sweepView(sweep: SweepRecord, pending = 0) {
  const { cursor: _cursor, attempts, next_at, phase, ...rest } = sweep;
  return {
    ...rest,
    pending_hand_overs: pending,
    started_at: iso(sweep.started_at),
    finished_at: iso(sweep.finished_at),
    confirmed_at: iso(sweep.confirmed_at),
    next_page_at: sweep.status === "running" ? iso(next_at) : null,
    phase,
    page_attempts: attempts,
    errors: sweep.errors.map((error) => ({ ...error, at: iso(error.at) })),
  };
}
export type SweepView = ReturnType<typeof sweepView>;
