import { z } from "zod";
import { isValidOrgId } from "../../shared/storage-keys.ts";
import { AutumnCustomer, balancesOf, exhausted } from "../autumn/answers.ts";
import type { IndexEntry } from "../index/entry.ts";

/** Why the sweep hands an org to its object: the ways Autumn and Tollgate can disagree. */
export const Disagreement = z.enum(["unknown_past_due", "no_longer_past_due", "missing_from_autumn", "limit_reached", "limit_lifted"]);
export type Disagreement = z.infer<typeof Disagreement>;

/**
 * The kinds that can move an org toward ok (restore it, or lift a limit). A sweep with too many of them
 * is held for an operator (sweeper.ts, RECONCILE_MAX_RESTORE_SHARE): a wrong Autumn account or URL
 * looks exactly like everyone paying at once.
 */
export const RESTORING: ReadonlySet<Disagreement> = new Set(["no_longer_past_due", "missing_from_autumn", "limit_lifted"]);

/** An org to hand to its object, and why (a row of the sweep's `sweep_pending` table until handed over). */
export const HandOver = z.object({ org_id: z.string(), kind: Disagreement });
export type HandOver = z.infer<typeof HandOver>;

/**
 * What Tollgate holds for an org that is not ok or holds a plan limit (from the index); absent
 * means ok with no limit, or never seen. `limits`: the feature ids limited.
 */
export type Held = Pick<IndexEntry, "org_id" | "state" | "reason"> & { since?: number; limits?: readonly string[] };

/** The policy's own definition of past due: a base (not add-on) subscription is past due. */
export function customerPastDue(customer: Pick<AutumnCustomer, "subscriptions">): boolean {
  return customer.subscriptions.some((s) => !s.add_on && s.past_due);
}

/** A manual suspension is support's decision, not Autumn's: no listing can disagree with it. */
function settledBySupport(held: Held): boolean {
  return held.reason === "manual_suspend";
}

/** The metered features whose listed balance is used up, decided as the object decides them (autumn/answers.ts). */
function limitedFeatures(customer: Pick<AutumnCustomer, "balances">, metered: readonly string[]): string[] {
  const balances = balancesOf(customer.balances ?? {});
  return metered.filter((feature) => exhausted(balances[feature]));
}

/**
 * Pure: the orgs of one `customers.list` page whose state or plan limits Tollgate and Autumn
 * disagree on (`metered`: the USAGE_FEATURES feature ids; none when metering is off). Agreeing
 * customers cost nothing; the object of each returned org does its own fresh read and decides
 * (the sweep never decides a state). At most one hand-over per org: one read settles both.
 * Customers whose id is not a valid org id cannot be Tollgate orgs and are skipped.
 */
export function disagreements(
  customers: Pick<AutumnCustomer, "id" | "subscriptions" | "balances">[],
  held: ReadonlyMap<string, Held>,
  metered: readonly string[] = [],
): HandOver[] {
  const handOvers: HandOver[] = [];
  for (const customer of customers) {
    if (customer.id === null || !isValidOrgId(customer.id)) continue;
    const tollgate = held.get(customer.id);
    const notOk = tollgate !== undefined && tollgate.state !== "ok";
    const pastDue = customerPastDue(customer);
    if (pastDue && !notOk) handOvers.push({ org_id: customer.id, kind: "unknown_past_due" });
    else if (!pastDue && notOk && !settledBySupport(tollgate)) handOvers.push({ org_id: customer.id, kind: "no_longer_past_due" });
    else if (metered.length > 0) {
      const autumn = new Set(limitedFeatures(customer, metered));
      const tollgateLimits = new Set(tollgate?.limits ?? []);
      if ([...tollgateLimits].some((feature) => !autumn.has(feature))) handOvers.push({ org_id: customer.id, kind: "limit_lifted" });
      else if ([...autumn].some((feature) => !tollgateLimits.has(feature))) handOvers.push({ org_id: customer.id, kind: "limit_reached" });
    }
  }
  return handOvers;
}

/**
 * Pure: the orgs Tollgate holds as not ok that the whole listing never showed. Only orgs already in
 * their state when the sweep started (`since <= startedAt`) count: one that turned overdue after the
 * sweep passed its page was never absent from Autumn, only read before it changed.
 */
export function missingFromListing(notOk: Held[], listed: Pick<ReadonlySet<string>, "has">, startedAt = Infinity): HandOver[] {
  return notOk
    .filter((held) => !listed.has(held.org_id) && !settledBySupport(held) && (held.since ?? -Infinity) <= startedAt)
    .map((held) => ({ org_id: held.org_id, kind: "missing_from_autumn" }));
}

/** The customers of a page that read as Autumn's schema says, and why each other one did not (skipped and reported). */
export function readCustomers(items: unknown[]): { customers: AutumnCustomer[]; unreadable: string[] } {
  const customers: AutumnCustomer[] = [];
  const unreadable: string[] = [];
  for (const item of items) {
    const parsed = AutumnCustomer.safeParse(item);
    if (parsed.success) customers.push(parsed.data);
    else {
      const id = typeof item === "object" && item !== null && "id" in item ? String((item as { id: unknown }).id) : "without an id";
      const issue = parsed.error.issues[0];
      unreadable.push(`customer ${id} is unreadable (${issue?.path.join(".") ?? "?"}: ${issue?.message ?? "invalid"}): skipped`);
    }
  }
  return { customers, unreadable };
}
