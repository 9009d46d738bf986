export { OrgBilling } from "../../src/billing/org-billing.ts";
export { OrgIndex } from "../../src/billing/org-index.ts";
export { default } from "../../src/ingest/worker.ts";
