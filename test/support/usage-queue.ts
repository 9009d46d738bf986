import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import worker from "../../src/ingest/worker.ts";
import { shardName, shardOf } from "../../src/shared/index-shard.ts";

/** The usage queue's consumer driven by hand (the test Workers bind no consumer): a batch in, its acks and retries out. */

export type QueuedForTest = { id: string; timestamp: Date; attempts: number; body: unknown };

/** One message as the queue delivers it: its id, body and delivery count. */
export const queueMessage = (id: string, body: unknown, attempts = 1): QueuedForTest => ({ id, timestamp: new Date(), attempts, body });

/** The batch through the ingest Worker's queue handler; what it acked and retried. */
export async function consumeUsage(messages: QueuedForTest[], workerEnv: IngestEnv = env as unknown as IngestEnv) {
  const batch = createMessageBatch("tollgate-usage", messages);
  const ctx = createExecutionContext();
  await worker.queue!(batch as never, workerEnv, ctx);
  return getQueueResult(batch, ctx);
}

/** The org's activity rows as its index shard keeps them (the last 30 days). */
export const shardActivityOf = (org: string) => env.ORG_INDEX.getByName(shardName(shardOf(org))).activityOf(org, Date.now());
