import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { shardName, shardOf } from "../../src/shared/index-shard.ts";
import { UsageBatcher } from "../../src/ingest/usage/batcher.ts";
import type { ActivityMessage, UsageMessage } from "../../src/shared/usage.ts";
import { countedNamespace, uniqueOrg } from "../support/billing.ts";
import { consumeUsage, queueMessage, shardActivityOf } from "../support/usage-queue.ts";
import { recordingQueue } from "../support/parking.ts";

/**
 * Issue 20: the usage consumer hands activity messages to the index shards (one call per shard for a whole
 * batch), never to the orgs' objects; each part is folded once however often the queue delivers it. Real
 * OrgIndex shards and OrgBilling objects (the test Worker binds both, as the ingest Worker binds them by script_name).
 */

const HOUR = 3_600_000;

/** Orgs in `count` different shards, each the first of its shard. */
function orgsInShards(count: number, label: string): string[] {
  const orgs: string[] = [];
  for (let i = 0; orgs.length < count; i++) {
    const org = uniqueOrg(`${label}${i}`);
    if (!orgs.some((o) => shardOf(o) === shardOf(org))) orgs.push(org);
  }
  return orgs;
}

/** The activity messages a real batcher sends for these outcomes (one flush). */
async function activityMessages(outcomes: [org: string, kind: "accepted" | "refused" | "parked", at: number][]): Promise<{ messages: ActivityMessage[]; usage: UsageMessage[] }> {
  const queue = recordingQueue();
  const timers: (() => void)[] = [];
  const batcher = new UsageBatcher(queue, { wait: () => new Promise((resolve) => timers.push(resolve)), now: () => 0 });
  let done: Promise<void> | undefined;
  for (const [org, kind, at] of outcomes) done = batcher.addActivity(org, kind, at).done;
  timers.shift()!();
  await done;
  return { messages: queue.activity, usage: queue.sent };
}


const counted = async (org: string) => (await shardActivityOf(org)).map((row) => ({ hour: row.hour, accepted: row.accepted, refused: row.refused, parked: row.parked }));

describe("the usage consumer's activity", () => {
  it("hands each shard its parts in one call, acks every message, and the org's shard keeps its hours", async () => {
    const [a, b, c] = orgsInShards(3, "actc-");
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const { messages, usage } = await activityMessages([[a!, "accepted", hour], [a!, "accepted", hour + 1], [b!, "refused", hour], [c!, "parked", hour - HOUR]]);
    expect(usage).toEqual([]);
    expect(messages).toHaveLength(1);
    const { env: countedEnv, calls: call } = countedNamespace("ORG_BILLING");
    const result = await consumeUsage([queueMessage("a1", messages[0])], countedEnv as never);
    expect(result.explicitAcks).toEqual(["a1"]);
    expect(result.retryMessages).toEqual([]);
    // No org's object was asked anything: activity goes to the shards only.
    expect(call).not.toHaveBeenCalled();
    expect(await counted(a!)).toEqual([{ hour, accepted: 2, refused: 0, parked: 0 }]);
    expect(await counted(b!)).toEqual([{ hour, accepted: 0, refused: 1, parked: 0 }]);
    expect(await counted(c!)).toEqual([{ hour: hour - HOUR, accepted: 0, refused: 0, parked: 1 }]);
  });

  it("a message delivered again (a retry, or the same batch sent twice) is counted once", async () => {
    const [org] = orgsInShards(1, "actd-");
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const { messages } = await activityMessages([[org!, "accepted", hour]]);
    await consumeUsage([queueMessage("d1", messages[0])]);
    // Redelivered, and put on the queue a second time under another id (a send that threw after the queue took it).
    expect((await consumeUsage([queueMessage("d1", messages[0], 2), queueMessage("d2", messages[0])])).explicitAcks.sort()).toEqual(["d1", "d2"]);
    expect(await counted(org!)).toEqual([{ hour, accepted: 1, refused: 0, parked: 0 }]);
  });

  it("a shard that fails has the messages with a part for it retried; the parts other shards took are not counted twice when they come back", async () => {
    const [up, down] = orgsInShards(2, "actf-");
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const both = await activityMessages([[up!, "accepted", hour], [down!, "accepted", hour]]);
    const onlyUp = await activityMessages([[up!, "refused", hour]]);
    const downShard = shardName(shardOf(down!));
    const failing = {
      ...env,
      ORG_INDEX: { getByName: (name: string) => (name === downShard ? { recordActivity: async () => Promise.reject(new Error("shard overloaded")) } : env.ORG_INDEX.getByName(name)) },
    } as unknown as IngestEnv;
    const warn = vi.spyOn(console, "warn");
    const first = await consumeUsage([queueMessage("f1", both.messages[0], 2), queueMessage("f2", onlyUp.messages[0])], failing);
    expect(first.explicitAcks).toEqual(["f2"]);
    expect(first.retryMessages).toEqual([{ msgId: "f1" }]);
    expect(warn.mock.calls.map(([line]) => (line as { event?: string }).event)).toContain("activity_record_failed");
    warn.mockRestore();
    expect(await counted(up!)).toEqual([{ hour, accepted: 1, refused: 1, parked: 0 }]);
    expect(await counted(down!)).toEqual([]);
    // Redelivered once the shard is back: the part its first delivery landed is a duplicate, the other is new.
    expect((await consumeUsage([queueMessage("f1", both.messages[0], 3)])).explicitAcks).toEqual(["f1"]);
    expect(await counted(up!)).toEqual([{ hour, accepted: 1, refused: 1, parked: 0 }]);
    expect(await counted(down!)).toEqual([{ hour, accepted: 1, refused: 0, parked: 0 }]);
  });

  it("a message that can never succeed (an org in another shard's part, a bad id, a malformed body) is acked and logged, and stores nothing", async () => {
    const [a, b] = orgsInShards(2, "acti-");
    const hours = [{ hour: 0, accepted: 1 }];
    const misplaced = { kind: "activity", stream: "s1", parts: [{ shard: shardOf(b!), seq: 1, orgs: [{ org_id: a!, hours }] }] };
    const badId = { kind: "activity", stream: "s1", parts: [{ shard: shardOf("bad id!"), seq: 1, orgs: [{ org_id: "bad id!", hours }] }] };
    const malformed = { kind: "activity", stream: "s1", parts: [] };
    const warn = vi.spyOn(console, "warn");
    const result = await consumeUsage([queueMessage("i1", misplaced), queueMessage("i2", badId), queueMessage("i3", malformed)]);
    expect(result.explicitAcks.sort()).toEqual(["i1", "i2", "i3"]);
    expect(warn.mock.calls.map(([line]) => (line as { event?: string }).event).filter((e) => e === "usage_message_invalid")).toHaveLength(3);
    warn.mockRestore();
    expect(await shardActivityOf(a!)).toEqual([]);
  });

  it("a usage message from an older ingest Worker, carrying its activity, still goes to the org's object, and the org's view sums both homes", async () => {
    const org = uniqueOrg("acto-");
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const old: UsageMessage = { org_id: org, stream: "old_iso", seq: 1, counts: {}, first_at: hour, last_at: hour, activity: { unit: "requests", hours: [{ hour, accepted: 2 }] } };
    const { messages } = await activityMessages([[org, "accepted", hour]]);
    expect((await consumeUsage([queueMessage("o1", old), queueMessage("o2", messages[0])])).explicitAcks.sort()).toEqual(["o1", "o2"]);
    const view = await env.ORG_BILLING.getByName(org).view();
    expect(view.activity.hours.map((h) => [h.hour, h.accepted])).toEqual([[new Date(hour).toISOString(), 3]]);
  });
});
