import type { ActivityKind, WouldRefuseCode } from "../../shared/usage.ts";

/**
 * The admin view's shape of the org's activity (activity.ts keeps the table): apart from the
 * table's code so the CLI, which runs in Node, can import the view's types.
 */

export const ACTIVITY_DAYS = 30;

/**
 * `would_refuse` split by the code that was not answered (402 `billing_suspended`, 429 `plan_limit_reached`);
 * `unknown`: would-be refusals counted by an ingest Worker from before the split, whose messages name no code.
 */
export type WouldRefuseByCode = Record<WouldRefuseCode | "unknown", number>;

/**
 * One hour: its counts in requests (`unit`), the would-be refusals per code, and, for an hour where
 * metering counted them, the items of the requests that went upstream (accepted and would-be-refused);
 * `items` is absent for an hour whose requests nobody metered (metering off, or only refusals).
 */
export type ActivityViewHour = { hour: string } & Record<ActivityKind, number> & { would_refuse_by_code: WouldRefuseByCode; items?: { accepted: number; would_refuse: number } };

/**
 * Hours as ISO strings, only those with something counted, oldest first; counts in `unit`. `incomplete`: the
 * org's index shard, which keeps its activity since issue 20, could not be read just now, so `hours` holds only
 * what the org's own object kept (from older ingest Workers): the console says so under its chart.
 */
export type ActivityView = { unit: "requests"; days: number; hours: ActivityViewHour[]; incomplete?: boolean };
export const NO_ACTIVITY: ActivityView = { unit: "requests", days: ACTIVITY_DAYS, hours: [] };
