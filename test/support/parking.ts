import { createExecutionContext, createMessageBatch, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { ActivityMessage, OrgActivity, UsageMessage } from "../../src/shared/usage.ts";
import type { QueuedMessage } from "../../src/ingest/usage/batcher.ts";
import { handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { INGEST } from "./ingest.ts";

/** Shared by the ingest parking tests: the test bucket, queues that stand in for bindings, and one request or delivery run. */

/** Every usage feature metered (USAGE_FEATURES). */
export const ALL = "traces=spans logs=log_records metrics=data_points logpush=log_records bytes=ingest_bytes";

/** The R2 bucket the test Worker binds as PARKING_TEST. */
export const parkingBucket = (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST;

/** A queue binding that drops what it is sent. */
export const noQueue = { send: async () => {}, sendBatch: async () => {} };

/** The ingest env with parking on (4 MiB cap, 72 h retention), deliveries dropped. */
export const parkingEnv = (extra: Record<string, unknown> = {}) => ({ ...env, PARKING: parkingBucket, DELIVERIES: noQueue, PARK_MAX_BYTES: "4MiB", PARK_RETENTION: "72h", ...extra }) as unknown as IngestEnv;

/** A USAGE queue that records the messages it is sent: usage messages in `sent`, activity messages in `activity`. */
export function recordingQueue() {
  const sent: UsageMessage[] = [];
  const activity: ActivityMessage[] = [];
  return {
    sent,
    activity,
    sendBatch: async (messages: Iterable<{ body: QueuedMessage }>) => {
      for (const { body } of messages) {
        if ("kind" in body) activity.push(body);
        else sent.push(body);
      }
    },
  };
}

/** Every org's activity hours in these activity messages, in the order sent (an org twice if it was in two windows). */
export const orgActivity = (messages: readonly ActivityMessage[]): OrgActivity[] => messages.flatMap((m) => m.parts.flatMap((part) => part.orgs));

/** The counts of usage messages summed by feature. */
export const total = (messages: UsageMessage[]) => {
  const sum: Record<string, number> = {};
  for (const m of messages) for (const [k, v] of Object.entries(m.counts)) sum[k] = (sum[k] ?? 0) + (v ?? 0);
  return sum;
};

/**
 * One request through the ingest Worker; with `settle`, resolves once its waitUntil work has settled
 * (not by default: a second park of an org within 10 s holds its trailing report that long).
 */
export async function send(workerEnv: object, path: string, key: string, init: RequestInit = {}, settle = false) {
  const { default: worker } = await import("../../src/ingest/worker.ts");
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${key}`);
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`${INGEST}${path}`, { method: "POST", ...init, headers }) as never, workerEnv as IngestEnv, ctx);
  // Decoded rather than .text(): an upstream answer passed through may be protobuf, and workerd warns on .text() of one.
  const text = new TextDecoder().decode(await response.arrayBuffer());
  if (settle) await waitOnExecutionContext(ctx);
  return { status: response.status, text };
}

/** One delivery run for an org, as the deliveries queue would start it. */
export async function deliver(workerEnv: object, orgId: string) {
  const batch = createMessageBatch("tollgate-deliveries", [{ id: `m-${orgId}-${Math.random()}`, timestamp: new Date(), attempts: 1, body: { org_id: orgId } }]);
  return (await handleDeliveries(batch, workerEnv as never))[0]!;
}
