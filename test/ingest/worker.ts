export { OrgBilling } from "../../src/billing/org-billing.ts";
export { default } from "../../src/ingest/worker.ts";
