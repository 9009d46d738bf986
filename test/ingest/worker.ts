export { OrgBilling } from "../../src/billing/org/object.ts";
export { OrgIndex } from "../../src/billing/index/object.ts";
export { default } from "../../src/ingest/worker.ts";
