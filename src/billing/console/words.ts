import type { Disagreement } from "../reconcile/compare.ts";
import type { OrgView } from "../org/view.ts";

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

/** "2026-12-05 10:00 UTC": how the console and the CLI write an instant people act on. */
export function utcMinute(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/**
 * An exemption in force (the policy's reason is `exempt`): when it ends, and the deadline that
 * applies then (the org view's `published_deadline`, from `publishedDeadline`); both null for
 * an exemption with no end, which has no deadline until it is cleared. Null when none is in force.
 */
export function exemptionInForce(org: Pick<OrgView, "reason" | "override" | "published_deadline">): { until: string | null; then_deadline: string | null } | null {
  if (org.reason !== "exempt" || org.override?.action !== "exempt") return null;
  return { until: org.override.until, then_deadline: org.override.until === null ? null : org.published_deadline };
}

/** What an exemption with no end means, in the console and the CLI alike. */
export const NO_END_EXEMPTION = "with no end (until cleared); no deadline meanwhile: clearing it publishes a new deadline, no sooner than the minimum notice";

/** What happens once an exemption with an end is over, after "then the deadline … applies". */
export const AFTER_EXEMPTION = "unless the overdue invoice is paid";
