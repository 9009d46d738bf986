import { isoOrNull } from "../../shared/iso-time.ts";
import type { FeatureLimit } from "../../shared/usage.ts";
import { payUrlOf } from "../customer/pay-link.ts";
import type { Verdict } from "../request/gate.ts";
import type { Enforcement, OrgStatus } from "./answer.ts";

/** The gate's verdict as a status can answer it: not `fail_open` (the route answers what was known before, as `unconfirmed`, or 503). */
export type KnownVerdict = Omit<Verdict, "source"> & { source: OrgStatus["source"] };

export type StatusContext = { orgId: string; now: number; enforceLimits: boolean; upgradeUrl: string | null; enforcement: Enforcement };

/** "2026-12-01T10:00:00Z": seconds are enough for people. */
function readable(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The pay link as its own sentence, when there is one. */
const payClause = (payUrl: string | null) => (payUrl ? ` Pay at ${payUrl}.` : "");

/** Why the org is in its billing state, from the state, the reason code and the dates the mirror carries. */
function stateSentence(verdict: KnownVerdict, now: number, payUrl: string | null): string {
  const since = verdict.since === undefined ? "" : ` since ${readable(verdict.since)}`;
  const pay = payClause(payUrl);
  if (verdict.state === "ok") return "In good standing: no invoice is past due.";
  if (verdict.state === "suspended") {
    const at = verdict.suspended_at === null ? "" : ` since ${readable(verdict.suspended_at)}`;
    if (verdict.reason === "manual_suspend") return `Ingestion is suspended by support${at}; contact support to resume it.`;
    return `Ingestion is suspended${at}: an invoice stayed past due beyond its grace period and no payment was received; ingestion resumes within seconds of payment.${pay}`;
  }
  // Overdue: with a deadline (in grace, exempt with an end, or the deadline passed and billing confirming), or without (lapsed, exempt until cleared).
  if (verdict.suspend_at !== null) {
    const deadline = readable(verdict.suspend_at);
    if (verdict.suspend_at <= now) return `An invoice is past due${since} and its deadline ${deadline} has passed; ingestion stops as soon as billing confirms it is still unpaid.${pay}`;
    const exempt = verdict.reason === "exempt" ? " support has exempted the org for now, but" : "";
    return `An invoice is past due${since};${exempt} ingestion stops at ${deadline} unless it is paid.${pay}`;
  }
  if (verdict.reason === "lapsed_customer") return `An invoice is past due${since}; ingestion is not scheduled to stop (the usual payment reminders apply).${pay}`;
  if (verdict.reason === "exempt") return `An invoice is past due${since}; support has exempted the org until further notice, so ingestion is not scheduled to stop.${pay}`;
  return `An invoice is past due${since}; no date is set for ingestion to stop.${pay}`;
}

/** Observe mode (issue 21): a suspended org is told its data still goes through, so the state is not read as a cut-off. */
function observedSentence(verdict: KnownVerdict, enforcement: Enforcement): string {
  if (enforcement !== "observe" || verdict.state !== "suspended") return "";
  return " Enforcement is only observed for now: exports are still accepted, and would be refused (402) once it is enforced.";
}

/** The limits in force (not yet reset), as the gate would apply them. */
function limitsInForce(limits: readonly FeatureLimit[], now: number): FeatureLimit[] {
  return limits.filter((limit) => limit.reset_at === null || limit.reset_at > now);
}

function limitSentence(limits: readonly FeatureLimit[], enforced: boolean, observed: boolean): string {
  if (limits.length === 0) return "";
  const each = limits.map((limit) => `${limit.feature_id} (${limit.signals.join(", ")}) ${limit.reset_at === null ? "until the plan changes" : `until ${readable(limit.reset_at)}`}`);
  const effect = !enforced
    ? "those signals are still accepted (plan limits are not enforced)"
    : observed
      ? "those signals would be refused (429) until then, but enforcement is only observed for now: they are still accepted"
      : "those signals are refused (429) until then";
  return ` The plan's allowance is used up for ${each.join("; ")}: ${effect}.`;
}

/** The customer's status, pure: the gate's verdict (the org's mirror entry) and the Worker's settings at `now`. */
export function orgStatus(verdict: KnownVerdict, context: StatusContext): OrgStatus {
  const { now } = context;
  const payUrl = verdict.state === "ok" ? null : payUrlOf(verdict.pay_url);
  const limits = limitsInForce(verdict.limits, now);
  const parked = verdict.parked ?? { batches: 0, bytes: 0, updated_at: null };
  // `enforced` says whether the gate refuses the signals (429): under observe it lets them through, so they are not.
  const enforced = context.enforceLimits && context.enforcement !== "observe";
  return {
    org_id: context.orgId,
    state: verdict.state,
    reason: stateSentence(verdict, now, payUrl) + observedSentence(verdict, context.enforcement) + limitSentence(limits, context.enforceLimits, context.enforcement === "observe"),
    since: isoOrNull(verdict.since),
    deadline: verdict.state === "overdue" ? isoOrNull(verdict.suspend_at) : null,
    suspended_at: verdict.state === "suspended" ? isoOrNull(verdict.suspended_at) : null,
    pay_url: payUrl,
    limits: limits.map((limit) => ({ feature_id: limit.feature_id, signals: [...limit.signals], reset_at: isoOrNull(limit.reset_at), enforced })),
    upgrade_url: context.upgradeUrl,
    parked: { batches: parked.batches, bytes: parked.bytes, updated_at: isoOrNull(parked.updated_at) },
    enforcement: context.enforcement,
    checked_at: new Date(now).toISOString(),
    source: verdict.source,
  };
}
