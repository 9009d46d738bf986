import type { OrgBilling } from "./object.ts";
import type { OrgIndex } from "../index/object.ts";
import type { Reconciler } from "../reconcile/sweeper.ts";

/** The org's object. Callers must have validated `orgId` (see shared/org-id.ts) first. */
export function orgBilling(env: { ORG_BILLING?: DurableObjectNamespace<OrgBilling> }, orgId: string): DurableObjectStub<OrgBilling> {
  if (!env.ORG_BILLING) {
    throw new Error("The ORG_BILLING Durable Object binding is missing: did you forget to add it to durable_objects.bindings in your wrangler.jsonc?");
  }
  return env.ORG_BILLING.getByName(orgId);
}

/** The single index of orgs that are not ok. */
export function orgIndex(env: { ORG_INDEX?: DurableObjectNamespace<OrgIndex> }): DurableObjectStub<OrgIndex> {
  if (!env.ORG_INDEX) {
    throw new Error("The ORG_INDEX Durable Object binding is missing: did you forget to add it (class OrgIndex, migration v2) to your wrangler.jsonc?");
  }
  return env.ORG_INDEX.getByName("index");
}

/** The single reconciliation sweeper. */
export function reconciler(env: { RECONCILER?: DurableObjectNamespace<Reconciler> }): DurableObjectStub<Reconciler> {
  if (!env.RECONCILER) {
    throw new Error("The RECONCILER Durable Object binding is missing: did you forget to add it (class Reconciler, migration v3) to your wrangler.jsonc?");
  }
  return env.RECONCILER.getByName("sweeper");
}
