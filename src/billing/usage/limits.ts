import type { Signal, UsageFeatures } from "../../shared/usage.ts";
import { isAutumnTime, type AutumnBalance } from "../autumn/schemas.ts";
import type { LimitRecord } from "../org/record.ts";

/** The metered features (USAGE_FEATURES values), each with the signals reported under it. */
export function meteredFeatures(features: UsageFeatures): Map<string, Signal[]> {
  const out = new Map<string, Signal[]>();
  for (const [signal, feature] of Object.entries(features) as [Signal, string][]) out.set(feature, [...(out.get(feature) ?? []), signal]);
  return out;
}

/**
 * Whether a balance is used up. Allowances are read, never assumed: an unlimited balance or one
 * that allows overage is never used up, and a feature with no balance at all is not limited
 * (Autumn has said nothing about it).
 */
export function exhausted(balance: AutumnBalance | undefined | null): boolean {
  return balance != null && !balance.unlimited && !balance.overage_allowed && balance.remaining <= 0;
}

/**
 * The plan limits a fresh read shows: every metered feature whose balance is used up, until its
 * next reset. A limit already in force keeps its `since`. Pure: the org's object calls it on
 * every good read, so a plan change or a reset that shows room again lifts the limit.
 */
export function limitsFrom(balances: Record<string, AutumnBalance>, features: UsageFeatures, previous: readonly LimitRecord[], now: number): LimitRecord[] {
  const limits: LimitRecord[] = [];
  for (const [featureId, signals] of meteredFeatures(features)) {
    const balance = balances[featureId];
    if (!exhausted(balance)) continue;
    const since = previous.find((limit) => limit.feature_id === featureId)?.since ?? now;
    // The schema already makes an out-of-range reset absent; checked again because a limit's reset is formatted into
    // events and the mirror, where one bad time would stop every commit of the org.
    const resetAt = isAutumnTime(balance!.next_reset_at) ? balance!.next_reset_at : null;
    limits.push({ feature_id: featureId, signals, reset_at: resetAt, since, usage: balance!.usage, granted: balance!.granted });
  }
  return limits;
}

/** The balances worth keeping as evidence: the metered features' only. */
export function meteredBalances(balances: Record<string, AutumnBalance>, features: UsageFeatures): Record<string, AutumnBalance> {
  const out: Record<string, AutumnBalance> = {};
  for (const featureId of meteredFeatures(features).keys()) if (balances[featureId]) out[featureId] = balances[featureId];
  return out;
}

/** What changed between two sets of limits: features newly used up, and features with room again. */
export function limitChanges(before: readonly LimitRecord[], after: readonly LimitRecord[]): { reached: LimitRecord[]; cleared: LimitRecord[] } {
  const had = new Set(before.map((limit) => limit.feature_id));
  const has = new Set(after.map((limit) => limit.feature_id));
  return { reached: after.filter((limit) => !had.has(limit.feature_id)), cleared: before.filter((limit) => !has.has(limit.feature_id)) };
}

/** What a usage report's answer (the track response's balance) said of its feature. */
export type BalanceAnswer = { feature_id: string; exhausted: boolean };

/**
 * The features whose report answers disagree with the limits held at `now`: used up but not held limited,
 * or held limited but showing room. Only those are worth a full Autumn read (customers.get, and invoices.list
 * while past due); an answer that agrees changes nothing, so a balance that stays used up while usage keeps
 * coming (ENFORCE_LIMITS=false) costs no read per report. A held limit whose reset has passed is lifted at
 * the edge already, so it counts as not held: a used-up answer then reads, for the new period's reset.
 */
export function limitDisagreements(answers: readonly BalanceAnswer[], held: readonly LimitRecord[], now: number): { reached: string[]; room: string[] } {
  const inForce = new Set(held.filter((limit) => limit.reset_at === null || limit.reset_at > now).map((limit) => limit.feature_id));
  const reached = new Set<string>();
  const room = new Set<string>();
  for (const answer of answers) {
    if (answer.exhausted && !inForce.has(answer.feature_id)) reached.add(answer.feature_id);
    if (!answer.exhausted && inForce.has(answer.feature_id)) room.add(answer.feature_id);
  }
  return { reached: [...reached], room: [...room] };
}
