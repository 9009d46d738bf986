/**
 * Reaching the Durable Objects that `listDurableObjectIds` lists (the storage reset of
 * test/support/fresh-storage.ts, `deleteAllAlarms` in billing.ts) without starting them nameless.
 *
 * A listed id carries no name, and an object started through one keeps that nameless start for its later
 * callers, `getByName` included, until the next reset (workerd). An OrgBilling without a name and without a
 * stored record cannot tell its org (src/billing/org/object.ts, `orgId`), so an earlier file's leftover work
 * reaching it by name (a parked report held back up to 10 s, src/ingest/parking/after-park.ts) threw "OrgBilling
 * has no org id" into the output (issue 22). In production every object is reached by name.
 *
 * So every name reached through a namespace is remembered (`rememberNames`, installed by the setup file),
 * and a listed object is reached by its name when it has one (`listedStub`).
 */
const names = new Map<string, string>();
const remembering = new WeakSet<DurableObjectNamespace>();

/** The objects this file's reset emptied, by id: they hold nothing, so walks over the listed ids skip them. */
export const emptiedByReset = new Set<string>();

/** Wraps the namespace's `getByName` (the tests' and the Workers' only way in) to remember each id's name. */
export function rememberNames(namespace: DurableObjectNamespace): void {
  if (remembering.has(namespace)) return;
  remembering.add(namespace);
  const getByName = namespace.getByName.bind(namespace);
  namespace.getByName = (name, options) => {
    names.set(namespace.idFromName(name).toString(), name);
    return getByName(name, options);
  };
}

/** The listed object's stub: through its name when one was ever reached, else through the bare id. */
export function listedStub<T extends Rpc.DurableObjectBranded | undefined>(namespace: DurableObjectNamespace<T>, id: DurableObjectId): DurableObjectStub<T> {
  const name = names.get(id.toString());
  return name === undefined ? namespace.get(id) : namespace.getByName(name);
}
