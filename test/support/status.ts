import { expect } from "vitest";
import type { OrgStatus } from "../../src/ingest/status/answer.ts";
import { autumn } from "./autumn.ts";
import { billingAdmin, ingestWithEnv } from "./ingest.ts";

/** What the status tests share (test/ingest/status*.test.ts): reading GET /v1/status and putting an org in a state. */

/** "2026-12-01T10:00:00Z", as the reason sentence writes times. */
export const readable = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export const status = (workerEnv: object, key: string | null, init: RequestInit = {}, path = "/v1/status") =>
  ingestWithEnv(workerEnv, path, { method: "GET", ...init, ...(key === null ? {} : { key }) });

/** A 200 status, never cached, as JSON. */
export async function statusOf(workerEnv: object, key: string): Promise<OrgStatus> {
  const response = await status(workerEnv, key);
  expect(response.status).toBe(200);
  expect(response.headers.get("cache-control")).toBe("no-store");
  expect(response.headers.get("content-type")).toContain("application/json");
  return (await response.json()) as OrgStatus;
}

/** The org's base plan goes past due on an invoice created `at`, and the object reads it (an operator's resync: the test Worker serves the ingest routes, not the webhook). */
export async function pastDue(org: string, at: number): Promise<void> {
  await autumn.pastDue(org, { at, webhook: false });
  const resync = await billingAdmin(`/orgs/${org}/resync`, { method: "POST" });
  expect(resync.ok).toBe(true);
}
