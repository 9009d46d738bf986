import type { Reconciler } from "./sweeper.ts";

/** The single reconciliation sweeper. */
export function reconciler(env: { RECONCILER?: DurableObjectNamespace<Reconciler> }): DurableObjectStub<Reconciler> {
  if (!env.RECONCILER) {
    throw new Error("The RECONCILER Durable Object binding is missing: did you forget to add it (class Reconciler, migration v3) to your wrangler.jsonc?");
  }
  return env.RECONCILER.getByName("sweeper");
}
