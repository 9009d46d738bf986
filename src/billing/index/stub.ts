import type { OrgIndex } from "./object.ts";

/** The single index of orgs that are not ok. */
export function orgIndex(env: { ORG_INDEX?: DurableObjectNamespace<OrgIndex> }): DurableObjectStub<OrgIndex> {
  if (!env.ORG_INDEX) {
    throw new Error("The ORG_INDEX Durable Object binding is missing: did you forget to add it (class OrgIndex, migration v2) to your wrangler.jsonc?");
  }
  return env.ORG_INDEX.getByName("index");
}
