// The model's test Worker: the ingest Worker (default export) with every Durable Object the
// billing Worker has (OrgBilling, OrgIndex, Reconciler), so one workerd holds the whole org.
// The billing Worker's fetch is called directly by the model (test/model/harness.ts) with this env.
export { OrgBilling } from "../../src/billing/org/object.ts";
export { OrgIndex } from "../../src/billing/index/object.ts";
export { Reconciler } from "../../src/billing/reconcile/sweeper.ts";
export { default } from "../../src/ingest/worker.ts";
