import type { Disagreement } from "../reconcile/compare.ts";

/**
 * Operator wording shared by the console and the CLI (`tools/cli/format.ts`), so both name
 * the sweep's findings the same way. Keyed by the stable codes: a new code fails to compile here.
 */
export const DISAGREEMENT_LABELS: Record<Disagreement, string> = {
  unknown_past_due: "past due in Autumn, ok or unknown here",
  no_longer_past_due: "no longer past due in Autumn",
  missing_from_autumn: "not in Autumn's customer list",
  limit_reached: "a balance used up in Autumn, no plan limit here",
  limit_lifted: "a plan limit here, room again in Autumn",
};

/** The label of a history note written by the sweep (its note is the kind of disagreement). */
export function disagreementLabel(note: string | null): string {
  return note !== null && note in DISAGREEMENT_LABELS ? DISAGREEMENT_LABELS[note as Disagreement] : (note ?? "reconciliation");
}
