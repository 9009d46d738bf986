import type { ActivityKind } from "../../shared/usage.ts";

/**
 * The admin view's shape of the org's activity (activity.ts keeps the table): apart from the
 * table's code so the CLI, which runs in Node, can import the view's types.
 */

export const ACTIVITY_DAYS = 30;

/** Hours as ISO strings, only those with something counted, oldest first; counts in `unit`. */
export type ActivityView = { unit: "requests"; days: number; hours: ({ hour: string } & Record<ActivityKind, number>)[] };
export const NO_ACTIVITY: ActivityView = { unit: "requests", days: ACTIVITY_DAYS, hours: [] };
