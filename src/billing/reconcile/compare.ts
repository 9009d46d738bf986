import { z } from "zod";
import { isValidOrgId } from "../../shared/org-id.ts";
import { AutumnCustomer } from "../autumn-schemas.ts";
import type { IndexEntry } from "../index-entry.ts";

/** Why the sweep hands an org to its object: the ways Autumn and Tollgate can disagree. */
export const Disagreement = z.enum(["unknown_past_due", "no_longer_past_due", "missing_from_autumn"]);
export type Disagreement = z.infer<typeof Disagreement>;

/** An org to hand to its object, and why (stored in the sweep's record until handed over). */
export const HandOver = z.object({ org_id: z.string(), kind: Disagreement });
export type HandOver = z.infer<typeof HandOver>;

/** What Tollgate holds for an org that is not ok (from the index); absent means ok or never seen. */
export type Held = Pick<IndexEntry, "org_id" | "state" | "reason">;

/** The policy's own definition of past due: a base (not add-on) subscription is past due. */
export function customerPastDue(customer: Pick<AutumnCustomer, "subscriptions">): boolean {
  return customer.subscriptions.some((s) => !s.add_on && s.past_due);
}

/** A manual suspension is support's decision, not Autumn's: no listing can disagree with it. */
function settledBySupport(held: Held): boolean {
  return held.reason === "manual_suspend";
}

/**
 * Pure: the orgs of one `customers.list` page whose state Tollgate and Autumn disagree on.
 * Agreeing customers cost nothing; the object of each returned org does its own fresh read
 * and decides (the sweep never decides a state). Customers whose id is not a valid org id
 * cannot be Tollgate orgs and are skipped.
 */
export function disagreements(customers: Pick<AutumnCustomer, "id" | "subscriptions">[], held: ReadonlyMap<string, Held>): HandOver[] {
  const handOvers: HandOver[] = [];
  for (const customer of customers) {
    if (customer.id === null || !isValidOrgId(customer.id)) continue;
    const tollgate = held.get(customer.id);
    const pastDue = customerPastDue(customer);
    if (pastDue && tollgate === undefined) handOvers.push({ org_id: customer.id, kind: "unknown_past_due" });
    else if (!pastDue && tollgate !== undefined && !settledBySupport(tollgate)) handOvers.push({ org_id: customer.id, kind: "no_longer_past_due" });
  }
  return handOvers;
}

/** Pure: the orgs Tollgate holds as not ok that the whole listing never showed. */
export function missingFromListing(notOk: Held[], listed: ReadonlySet<string>): HandOver[] {
  return notOk.filter((held) => !listed.has(held.org_id) && !settledBySupport(held)).map((held) => ({ org_id: held.org_id, kind: "missing_from_autumn" }));
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
