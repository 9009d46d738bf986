import { activityShardRpc, orgBillingRpc, type ActivityDelivery, type UsageDelivery } from "../../shared/contract.ts";
import { shardOf } from "../../shared/index-shard.ts";
import { logError, logWarn } from "../../shared/log.ts";
import { isValidOrgId } from "../../shared/storage-keys.ts";
import { ActivityMessage, UsageMessage } from "../../shared/usage.ts";

/**
 * The `tollgate-usage` consumer (docs/metering.md): each org's messages of a batch go to
 * the org's object in one call, `recordUsage`, which deduplicates them by the batch's own id (its
 * isolate's stream and sequence; the queue's message id for older messages), so a redelivered message or a
 * batch sent twice is counted once. A message is acked once its org's call succeeded and
 * retried with backoff otherwise (the call failed, or the object refused it); the consumer deduplicates nothing itself. A message that is not
 * a UsageMessage is acked and logged: it can never succeed, so it must not be retried forever.
 *
 * Activity messages (shared/usage.ts `ActivityMessage`) go to the index shards instead: the batch's parts
 * grouped by shard, one `recordActivity` call per shard (at most 16 a batch, however many orgs), which dedupes
 * each part by its stream and number. A message is acked once every shard it has a part for took it.
 */

/** The queue's name, in src/ingest/wrangler.jsonc and the test Worker's config alike. */
export const USAGE_QUEUE = "tollgate-usage";

/** The queue's max_retries (src/ingest/wrangler.jsonc): a failure on the delivery after the last retry loses the usage. */
export const USAGE_MAX_RETRIES = 100;

/** Backoff between attempts: 5 s doubling, at most an hour, so 100 retries span about the queue's 4-day retention. */
export function usageRetryDelaySeconds(attempts: number): number {
  return Math.min(3600, 5 * 2 ** Math.min(20, Math.max(0, attempts - 1)));
}

export type UsageRunResult = { orgId: string; outcome: "recorded" | "failed"; messages: number; recorded?: number; duplicates?: number; error?: string };
export type ActivityRunResult = { shard: number; outcome: "recorded" | "failed"; parts: number; recorded?: number; duplicates?: number; error?: string };

type Received<T> = { message: Message<unknown>; body: T };

export async function handleUsage(batch: MessageBatch<unknown>, env: IngestEnv): Promise<{ usage: UsageRunResult[]; activity: ActivityRunResult[] }> {
  const byOrg = new Map<string, Received<UsageMessage>[]>();
  const activity: Received<ActivityMessage>[] = [];
  for (const message of batch.messages) {
    const received = readMessage(message);
    if (received === null) {
      message.ack();
    } else if ("kind" in received.body) {
      activity.push(received as Received<ActivityMessage>);
    } else {
      const usage = received as Received<UsageMessage>;
      const list = byOrg.get(usage.body.org_id) ?? [];
      list.push(usage);
      byOrg.set(usage.body.org_id, list);
    }
  }
  const [usage, recorded] = await Promise.all([Promise.all([...byOrg].map(([orgId, messages]) => recordOrg(env, orgId, messages))), recordActivity(env, activity)]);
  return { usage, activity: recorded };
}

/** The message as a usage or activity message, or null (logged) when it is neither: it can never succeed. */
function readMessage(message: Message<unknown>): Received<UsageMessage | ActivityMessage> | null {
  const problem = (error: string) => {
    logWarn({ event: "usage_message_invalid", message_id: message.id, error });
    return null;
  };
  const body = message.body;
  if (typeof body === "object" && body !== null && "kind" in body) {
    const parsed = ActivityMessage.safeParse(body);
    if (!parsed.success) return problem(parsed.error.message);
    // An org the shard would refuse (a bad id, or in another shard's part) would fail every retry alike.
    const misplaced = parsed.data.parts.some((part) => part.orgs.some((org) => !isValidOrgId(org.org_id) || shardOf(org.org_id) !== part.shard));
    return misplaced ? problem("an org id is invalid or in another shard's part") : { message, body: parsed.data };
  }
  const parsed = UsageMessage.safeParse(body);
  if (!parsed.success) return problem(parsed.error.message);
  return isValidOrgId(parsed.data.org_id) ? { message, body: parsed.data } : problem("invalid org id");
}

/** The batch's activity parts, one call per shard; each message acked once all its shards took their parts, retried otherwise. */
async function recordActivity(env: IngestEnv, messages: Received<ActivityMessage>[]): Promise<ActivityRunResult[]> {
  const byShard = new Map<number, { deliveries: ActivityDelivery[]; messages: Received<ActivityMessage>[] }>();
  for (const received of messages) {
    for (const part of received.body.parts) {
      const entry = byShard.get(part.shard) ?? { deliveries: [], messages: [] };
      entry.deliveries.push({ stream: received.body.stream, seq: part.seq, orgs: part.orgs });
      entry.messages.push(received);
      byShard.set(part.shard, entry);
    }
  }
  const failed = new Map<Received<ActivityMessage>, string>();
  const results = await Promise.all(
    [...byShard].map(async ([shard, { deliveries, messages: touched }]): Promise<ActivityRunResult> => {
      try {
        const answer = await activityShardRpc(env.ORG_INDEX, shard).recordActivity(deliveries);
        if (!answer.ok) throw new Error(`the index shard refused the activity: ${answer.error}`);
        return { shard, outcome: "recorded", parts: deliveries.length, recorded: answer.recorded, duplicates: answer.duplicates };
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        for (const received of touched) failed.set(received, reason);
        logWarn({ event: "activity_record_failed", shard, parts: deliveries.length, error: reason });
        return { shard, outcome: "failed", parts: deliveries.length, error: reason };
      }
    }),
  );
  for (const received of messages) {
    const reason = failed.get(received);
    if (reason === undefined) {
      received.message.ack();
      continue;
    }
    const { message, body } = received;
    // The queue drops it after this delivery: never silently (the shards that took their parts dedupe them if it comes back).
    if (message.attempts > USAGE_MAX_RETRIES) logError({ event: "activity_lost", message_id: message.id, stream: body.stream, parts: body.parts, attempts: message.attempts, error: reason });
    message.retry({ delaySeconds: usageRetryDelaySeconds(message.attempts) });
  }
  return results;
}

async function recordOrg(env: IngestEnv, orgId: string, messages: Received<UsageMessage>[]): Promise<UsageRunResult> {
  const records: UsageDelivery[] = messages.map(({ message, body }) => ({
    id: message.id,
    ...(body.stream === undefined || body.seq === undefined ? {} : { stream: body.stream, seq: body.seq }),
    counts: body.counts,
    first_at: body.first_at,
    last_at: body.last_at,
    ...(body.activity === undefined ? {} : { activity: body.activity }),
  }));
  try {
    const stub = orgBillingRpc(env.ORG_BILLING, orgId);
    const answer = await stub.recordUsage(records);
    // A refusal (the billing Worker's USAGE_FEATURES invalid, or a message it cannot read) keeps the usage on the queue.
    if (!answer.ok) throw new Error(`the org's object refused the usage: ${answer.error}`);
    const { recorded, duplicates } = answer;
    // The object logs usage_recorded itself.
    for (const { message } of messages) message.ack();
    return { orgId, outcome: "recorded", messages: messages.length, recorded, duplicates };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    for (const { message, body } of messages) {
      if (message.attempts > USAGE_MAX_RETRIES) {
        // The queue drops it after this delivery: never silently.
        logError({ event: "usage_lost", org_id: orgId, message_id: message.id, counts: body.counts, first_at: body.first_at, last_at: body.last_at, attempts: message.attempts, error: reason });
      }
      message.retry({ delaySeconds: usageRetryDelaySeconds(message.attempts) });
    }
    logWarn({ event: "usage_record_failed", org_id: orgId, messages: messages.length, attempts: Math.max(...messages.map((m) => m.message.attempts)), error: reason });
    return { orgId, outcome: "failed", messages: messages.length, error: reason };
  }
}
