import type { OrgBilling } from "./object.ts";

/** The org's object. Callers must have validated `orgId` (see shared/org-id.ts) first. */
export function orgBilling(env: { ORG_BILLING?: DurableObjectNamespace<OrgBilling> }, orgId: string): DurableObjectStub<OrgBilling> {
  if (!env.ORG_BILLING) {
    throw new Error("The ORG_BILLING Durable Object binding is missing: did you forget to add it to durable_objects.bindings in your wrangler.jsonc?");
  }
  return env.ORG_BILLING.getByName(orgId);
}
