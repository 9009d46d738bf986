import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { UsageBatcher, type QueuedMessage as QueuedMessageBody } from "../../src/ingest/usage/batcher.ts";
import { INDEX_SHARDS, shardName, shardOf } from "../../src/shared/index-shard.ts";
import type { ActivityMessage, UsageMessage } from "../../src/shared/usage.ts";
import { uniqueOrg } from "../support/billing.ts";
import { consumeUsage, queueMessage, shardActivityOf } from "../support/usage-queue.ts";

/**
 * Breaker's tests for issue 20 (activity on its own messages, folded by the index shards): exactness of the
 * chart's counts across redelivery, retried sends, partial shard failures, out-of-order delivery, both
 * message formats in one batch, many orgs in one window, and hostile messages.
 */

const HOUR = 3_600_000;



/** A batcher whose sendBatch takes the batch and then throws on its first call (the queue took it, the caller saw an error). */
function flakyQueue() {
  const bodies: QueuedMessageBody[] = [];
  let calls = 0;
  return {
    bodies,
    sendBatch: async (messages: Iterable<{ body: QueuedMessageBody }>) => {
      for (const { body } of messages) bodies.push(structuredClone(body));
      calls++;
      if (calls === 1) throw new Error("network error after the queue took the batch");
    },
  };
}

describe("activity under redelivery, retried sends and partial failures", () => {
  it("250 orgs over every shard in one window across an hour boundary, sent twice (a throw after the queue took it), delivered reversed, a shard failing on the first pass: each request counted once", async () => {
    const queue = flakyQueue();
    const timers: (() => void)[] = [];
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const batcher = new UsageBatcher(queue, { wait: () => new Promise((resolve) => timers.push(resolve)), now: () => 0, retryDelaysMs: [0] });
    const orgs = Array.from({ length: 250 }, (_, i) => uniqueOrg(`brk${i}`));
    expect(new Set(orgs.map(shardOf)).size).toBe(INDEX_SHARDS);
    const expected = new Map<string, { before: number; after: number; codes: number }>();
    let done: Promise<void> | undefined;
    orgs.forEach((org, i) => {
      const before = (i % 3) + 1;
      const after = i % 2;
      for (let n = 0; n < before; n++) done = batcher.addActivity(org, "accepted", hour - 1).done;
      for (let n = 0; n < after; n++) done = batcher.addActivity(org, "would_refuse", hour + 5, "plan_limit_reached").done;
      expected.set(org, { before, after, codes: after });
    });
    // Full windows (100 orgs) went at once; release the last window's timer, then any timer a retry waits on.
    while (timers.length > 0) timers.shift()!();
    const settle = done!;
    for (let i = 0; i < 5 && timers.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    while (timers.length > 0) timers.shift()!();
    await settle;
    const activity = queue.bodies.filter((body): body is ActivityMessage => "kind" in body);
    // Three flushes (the 100th and 200th orgs' requests each sent their full window at once, the timer the rest),
    // one activity message each; the first was put on the queue twice (the throw after the queue took it, then the retry).
    expect(activity.length).toBe(4);
    const failingShard = shardName(shardOf(orgs[0]!));
    const failing = {
      ...env,
      ORG_INDEX: { getByName: (name: string) => (name === failingShard ? { recordActivity: async () => Promise.reject(new Error("down")) } : env.ORG_INDEX.getByName(name)) },
    } as unknown as IngestEnv;
    const deliveries = activity.map((body, i) => queueMessage(`m${i}`, body)).reverse();
    const first = await consumeUsage(deliveries, failing);
    expect(first.retryMessages.length).toBeGreaterThan(0);
    // Redelivered (each retried one, and every acked one too: a lost ack), then again, in another order.
    await consumeUsage(deliveries.map((d) => ({ ...d, attempts: 2 })));
    await consumeUsage(deliveries.slice().reverse().map((d) => ({ ...d, attempts: 3 })));
    for (const org of orgs) {
      const want = expected.get(org)!;
      const rows = (await shardActivityOf(org)).map((row) => ({ hour: row.hour, accepted: row.accepted, would_refuse: row.would_refuse, plan: row.would_refuse_plan_limit_reached }));
      const wanted = [{ hour: hour - HOUR, accepted: want.before, would_refuse: 0, plan: 0 }];
      // The hour 5 ms past the boundary is the current hour (or, a clock ahead, counted in it).
      if (want.after > 0) wanted.push({ hour, accepted: 0, would_refuse: want.after, plan: want.codes });
      expect(rows, org).toEqual(wanted);
    }
  });

  it("both formats in one batch for the same org and hour (an older ingest Worker's usage message with activity, and an activity message), each redelivered: the view counts each request once", async () => {
    const org = uniqueOrg("brkmix");
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const old: UsageMessage = {
      org_id: org,
      stream: "old_isolate",
      seq: 1,
      counts: {},
      first_at: hour,
      last_at: hour,
      activity: { unit: "requests", hours: [{ hour, accepted: 2, would_refuse: 1, would_refuse_codes: { billing_suspended: 1 } }] },
    };
    const fresh: ActivityMessage = { kind: "activity", stream: "new_isolate", parts: [{ shard: shardOf(org), seq: 1, orgs: [{ org_id: org, hours: [{ hour, accepted: 3, would_refuse: 4, would_refuse_codes: { billing_suspended: 4 } }] }] }] };
    await consumeUsage([queueMessage("x1", old), queueMessage("x2", fresh), queueMessage("x3", fresh)]);
    await consumeUsage([queueMessage("x2", fresh, 2), queueMessage("x1", old, 2)]);
    const view = await env.ORG_BILLING.getByName(org).view();
    expect(view.activity.incomplete).toBeUndefined();
    expect(view.activity.hours.map((h) => [h.accepted, h.would_refuse, h.would_refuse_by_code.billing_suspended])).toEqual([[5, 5, 5]]);
  });
});

describe("hostile or malformed activity messages", () => {
  it("a message with several parts for one shard is refused alone (acked, logged), and the batch's other messages are not held back with it", async () => {
    const org = uniqueOrg("brkdup");
    const shard = shardOf(org);
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    // 16 parts, all for one shard: 100 such messages make 1,600 deliveries for one shard in one call.
    const hostile = (i: number): ActivityMessage => ({
      kind: "activity",
      stream: `hostile${i}`,
      parts: Array.from({ length: INDEX_SHARDS }, (_, seq) => ({ shard, seq: seq + 1, orgs: [{ org_id: org, hours: [{ hour, accepted: 1 }] }] })),
    });
    const legit: ActivityMessage = { kind: "activity", stream: "legit", parts: [{ shard, seq: 1, orgs: [{ org_id: org, hours: [{ hour, refused: 1 }] }] }] };
    const warn = vi.spyOn(console, "warn");
    const result = await consumeUsage([queueMessage("legit", legit), ...Array.from({ length: 99 }, (_, i) => queueMessage(`h${i}`, hostile(i)))]);
    warn.mockRestore();
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toContain("legit");
    expect((await shardActivityOf(org)).map((row) => [row.accepted, row.refused])).toEqual([[0, 1]]);
  });
});
