import { orgBillingRpc, type UsageDelivery } from "../../shared/contract.ts";
import { logError, logWarn } from "../../shared/log.ts";
import { isValidOrgId } from "../../shared/storage-keys.ts";
import { UsageMessage } from "../../shared/usage.ts";

/**
 * The `tollgate-usage` consumer (docs/metering.md): each org's messages of a batch go to
 * the org's object in one call, `recordUsage`, which deduplicates them by the batch's own id (its
 * isolate's stream and sequence; the queue's message id for older messages), so a redelivered message or a
 * batch sent twice is counted once. A message is acked once its org's call succeeded and
 * retried with backoff otherwise (the call failed, or the object refused it); the consumer deduplicates nothing itself. A message that is not
 * a UsageMessage is acked and logged: it can never succeed, so it must not be retried forever.
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

export async function handleUsage(batch: MessageBatch<unknown>, env: IngestEnv): Promise<UsageRunResult[]> {
  const byOrg = new Map<string, { message: Message<unknown>; body: UsageMessage }[]>();
  for (const message of batch.messages) {
    const parsed = UsageMessage.safeParse(message.body);
    if (!parsed.success || !isValidOrgId(parsed.data.org_id)) {
      logWarn({ event: "usage_message_invalid", message_id: message.id, error: parsed.success ? "invalid org id" : parsed.error.message });
      message.ack();
      continue;
    }
    const list = byOrg.get(parsed.data.org_id) ?? [];
    list.push({ message, body: parsed.data });
    byOrg.set(parsed.data.org_id, list);
  }
  return Promise.all([...byOrg].map(([orgId, messages]) => recordOrg(env, orgId, messages)));
}

async function recordOrg(env: IngestEnv, orgId: string, messages: { message: Message<unknown>; body: UsageMessage }[]): Promise<UsageRunResult> {
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
