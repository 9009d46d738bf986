import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { UsageMessage } from "../../src/shared/usage.ts";
import worker from "../../src/ingest/worker.ts";
import { UsageBatcher } from "../../src/ingest/usage/batcher.ts";
import type { UsageDelivery } from "../../src/shared/contract.ts";
import { usageRetryDelaySeconds, USAGE_MAX_RETRIES } from "../../src/ingest/usage/consumer.ts";
import { deferredQueue, manualTime, settle } from "../support/batcher-fakes.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the usage batcher", () => {
  it("aggregates per org until the flush; every add's promise settles only once the send carrying it has; only the window's first add must hold the isolate", async () => {
    const time = manualTime();
    const queue = deferredQueue<UsageMessage>();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    let settled = 0;
    const added = [batcher.add("org_a", { traces: 3, bytes: 100 }, 1_000), batcher.add("org_b", { logs: 2 }, 1_001), batcher.add("org_a", { traces: 4, bytes: 50, logs: 1 }, 999)];
    // One waitUntil per window, not per request: the first add's covers the flush that carries all three.
    expect(added.map((a) => a.opened)).toEqual([true, false, false]);
    expect(new Set(added.map((a) => a.done)).size).toBe(1);
    const adds = added.map(({ done }) => done.then(() => settled++));
    expect(time.timers.map((t) => t.ms)).toEqual([0]); // the first flush after a quiet interval is due at once
    expect(time.fire()).toBe(0);
    await settle();
    expect(queue.calls).toHaveLength(1);
    expect(queue.calls[0]!.messages).toEqual([
      { org_id: "org_a", stream: batcher.stream, seq: 1, counts: { traces: 7, bytes: 150, logs: 1 }, first_at: 999, last_at: 1_000 },
      { org_id: "org_b", stream: batcher.stream, seq: 1, counts: { logs: 2 }, first_at: 1_001, last_at: 1_001 },
    ]);
    expect(settled).toBe(0); // the send has not finished: the requests' waitUntil still holds
    queue.calls[0]!.resolve();
    await Promise.all(adds);
    expect(settled).toBe(3);
  });

  it("flushes at most once per interval: counts arriving meanwhile wait for the next flush, together", async () => {
    const time = manualTime();
    const queue = deferredQueue<UsageMessage>();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    const first = batcher.add("org_a", { traces: 1 }, time.now).done;
    time.fire();
    await settle();
    queue.calls[0]!.resolve();
    await first;
    time.now += 300;
    const second = batcher.add("org_a", { traces: 2 }, time.now).done;
    const third = batcher.add("org_a", { traces: 5 }, time.now + 1).done;
    expect(time.timers.map((t) => t.ms)).toEqual([700]); // the rest of the interval since the last flush
    await settle();
    expect(queue.calls).toHaveLength(1);
    time.now += 700;
    time.fire();
    await settle();
    expect(queue.calls[1]!.messages).toEqual([{ org_id: "org_a", stream: batcher.stream, seq: 2, counts: { traces: 7 }, first_at: 1_000_300, last_at: 1_000_301 }]);
    queue.calls[1]!.resolve();
    await Promise.all([second, third]);
  });

  it("an add that must wait for its counts (a queue consumer's) sends them at once in its own flush, never through a window another request opened", async () => {
    const time = manualTime();
    const queue = deferredQueue<UsageMessage>();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    const rider = batcher.add("org_a", { traces: 1 }, time.now);
    expect(rider.opened).toBe(true);
    const own = batcher.add("org_b", { logs: 2 }, time.now, undefined, true);
    expect(own.opened).toBe(true);
    expect(own.done).not.toBe(rider.done);
    await settle();
    // Sent now, with everything pending (the other request's counts too), without waiting for the window's timer.
    expect(queue.calls).toHaveLength(1);
    expect(queue.calls[0]!.messages.map((m) => ("org_id" in m ? m.org_id : "activity"))).toEqual(["org_a", "org_b"]);
    queue.calls[0]!.resolve();
    await own.done;
    // The window's timer still fires; the rider's done covers the send that carried its counts.
    time.fire();
    await rider.done;
    expect(queue.calls).toHaveLength(1);
  });

  it("flushes at once when 100 orgs wait, in sendBatch calls of at most 100 messages", async () => {
    const time = manualTime();
    const queue = deferredQueue<UsageMessage>();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    const first = batcher.add("org_0", { bytes: 1 }, time.now).done;
    time.fire();
    await settle();
    queue.calls[0]!.resolve();
    await first;
    // Within the interval: no timer fires, yet the 100th org starts the flush.
    const adds = Array.from({ length: 100 }, (_, i) => batcher.add(`org_${i}`, { bytes: i + 1 }, time.now));
    await settle();
    expect(queue.calls).toHaveLength(2);
    expect(queue.calls[1]!.messages).toHaveLength(100);
    queue.calls[1]!.resolve();
    // The request that filled the window sent it itself, in its own context, and holds it: its own promise, opened.
    // Workers does not let one request carry on I/O another request started (see UsageBatcher.ride).
    expect(adds.map((a) => a.opened)).toEqual([true, ...Array(98).fill(false), true]);
    await adds[99]!.done;
    expect(adds[0]!.done).not.toBe(adds[99]!.done);
    // The window's own timer still fires, for what came after; it finds nothing left and sends nothing.
    time.fire();
    await Promise.all(adds.map((a) => a.done));
    expect(queue.calls).toHaveLength(2);

    const wideTime = manualTime();
    const wide = new UsageBatcher(queue, { wait: wideTime.wait, now: () => wideTime.now, maxOrgs: 1_000 });
    const many = Array.from({ length: 250 }, (_, i) => wide.add(`org_${i}`, { bytes: 1 }, wideTime.now).done);
    wideTime.fire();
    await settle();
    expect(queue.calls.slice(2).map((call) => call.messages.length)).toEqual([100, 100, 50]);
    for (const call of queue.calls.slice(2)) call.resolve();
    await Promise.all(many);
  });

  it("a failing send is retried with a short backoff, then each org's counts are logged usage_lost; the promise still resolves", async () => {
    const error = vi.spyOn(console, "error");
    const time = manualTime();
    const queue = deferredQueue<UsageMessage>();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now, retryDelaysMs: [100, 400] });
    const add = batcher.add("org_lost", { traces: 9, bytes: 900 }, time.now).done;
    time.fire();
    await settle();
    queue.calls[0]!.reject(new Error("queue unavailable"));
    await settle();
    expect(time.fire()).toBe(100);
    await settle();
    queue.calls[1]!.reject(new Error("queue unavailable"));
    await settle();
    expect(time.fire()).toBe(400);
    await settle();
    expect(queue.calls).toHaveLength(3);
    queue.calls[2]!.reject(new Error("queue still unavailable"));
    await add;
    const lines = error.mock.calls.map(([line]) => line as { event?: string }).filter((line) => line.event === "usage_lost");
    expect(lines).toEqual([{ event: "usage_lost", org_id: "org_lost", stream: batcher.stream, seq: 1, counts: { traces: 9, bytes: 900 }, first_at: time.now, last_at: time.now, attempts: 3, error: "queue still unavailable" }]);
  });

  it("a send that succeeds on a retry loses nothing and logs nothing", async () => {
    const error = vi.spyOn(console, "error");
    const time = manualTime();
    const queue = deferredQueue<UsageMessage>();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now, retryDelaysMs: [100] });
    const add = batcher.add("org_retry", { logs: 1 }, time.now).done;
    time.fire();
    await settle();
    queue.calls[0]!.reject(new Error("blip"));
    await settle();
    time.fire();
    await settle();
    queue.calls[1]!.resolve();
    await add;
    expect(queue.calls[1]!.messages).toEqual([{ org_id: "org_retry", stream: batcher.stream, seq: 1, counts: { logs: 1 }, first_at: time.now, last_at: time.now }]);
    expect(error).not.toHaveBeenCalled();
  });

  it("each batch carries an id minted in the isolate (stream and per-org sequence): the same on every retry of a send, the next number on the next flush", async () => {
    // Defect 7: a send can throw after the queue took the batch; its retry must be recognisable as the same batch.
    const time = manualTime();
    const queue = deferredQueue<UsageMessage>();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now, retryDelaysMs: [100] });
    const first = batcher.add("org_a", { traces: 1 }, time.now).done;
    batcher.add("org_b", { traces: 2 }, time.now);
    time.fire();
    await settle();
    queue.calls[0]!.reject(new Error("network lost after the queue accepted"));
    await settle();
    time.fire();
    await settle();
    queue.calls[1]!.resolve();
    await first;
    expect(queue.calls[1]!.messages).toEqual(queue.calls[0]!.messages);
    const [a1, b1] = queue.calls[0]!.messages;
    expect(a1!.stream).toMatch(/^[A-Za-z0-9_-]{8,64}$/);
    expect([a1!.seq, b1!.seq]).toEqual([1, 1]);
    expect(b1!.stream).toBe(a1!.stream);
    time.now += 1_000;
    const second = batcher.add("org_a", { traces: 3 }, time.now).done;
    time.fire();
    await settle();
    queue.calls[2]!.resolve();
    await second;
    expect(queue.calls[2]!.messages).toEqual([{ org_id: "org_a", stream: a1!.stream, seq: 2, counts: { traces: 3 }, first_at: time.now, last_at: time.now }]);
    // Another isolate (another batcher) has a stream of its own.
    const other = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    const third = other.add("org_a", { traces: 1 }, time.now).done;
    time.fire();
    await settle();
    queue.calls[3]!.resolve();
    await third;
    expect(queue.calls[3]!.messages[0]!.stream).not.toBe(a1!.stream);
  });
});

describe("the usage queue's consumer", () => {
  type Call = { orgId: string; records: UsageDelivery[] };
  /** An env whose org objects record what they are handed; `failing` orgs throw. */
  function objects(failing: Set<string> = new Set(), refusing: Set<string> = new Set()) {
    const calls: Call[] = [];
    const workerEnv = {
      ...env,
      ORG_BILLING: {
        getByName: (orgId: string) => ({
          recordUsage: async (records: UsageDelivery[]) => {
            calls.push({ orgId, records });
            if (failing.has(orgId)) throw new Error("object overloaded");
            if (refusing.has(orgId)) return { ok: false, error: "USAGE_FEATURES is invalid" };
            return { ok: true, recorded: records.length, duplicates: 0 };
          },
        }),
      },
    } as unknown as IngestEnv;
    return { calls, workerEnv };
  }
  const message = (id: string, body: unknown, attempts = 1) => ({ id, timestamp: new Date(), attempts, body });
  const usage = (org: string, counts: Record<string, number>, seq?: number) => ({ org_id: org, ...(seq === undefined ? {} : { stream: "iso_1", seq }), counts, first_at: 1, last_at: 2 });

  it("hands each org's messages to its object in one call, with the queue's message ids and the batches' own ids (stream, seq) when they have them, and acks them", async () => {
    const { calls, workerEnv } = objects();
    const batch = createMessageBatch("tollgate-usage", [message("m1", usage("org_a", { traces: 1 }, 7)), message("m2", usage("org_b", { logs: 2 })), message("m3", usage("org_a", { bytes: 5 }, 8))]);
    const ctx = createExecutionContext();
    await worker.queue!(batch as never, workerEnv, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks.sort()).toEqual(["m1", "m2", "m3"]);
    expect(result.retryMessages).toEqual([]);
    expect(calls.sort((a, b) => a.orgId.localeCompare(b.orgId))).toEqual([
      { orgId: "org_a", records: [{ id: "m1", stream: "iso_1", seq: 7, counts: { traces: 1 }, first_at: 1, last_at: 2 }, { id: "m3", stream: "iso_1", seq: 8, counts: { bytes: 5 }, first_at: 1, last_at: 2 }] },
      { orgId: "org_b", records: [{ id: "m2", counts: { logs: 2 }, first_at: 1, last_at: 2 }] },
    ]);
  });

  it("a redelivered message goes to the object again with the same id: the object dedupes, not the consumer", async () => {
    const { calls, workerEnv } = objects();
    for (const attempts of [1, 2]) {
      const batch = createMessageBatch("tollgate-usage", [message("same", usage("org_dup", { traces: 3 }), attempts)]);
      const ctx = createExecutionContext();
      await worker.queue!(batch as never, workerEnv, ctx);
      expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["same"]);
    }
    expect(calls.map((c) => c.records.map((r) => r.id))).toEqual([["same"], ["same"]]);
  });

  it("an org whose object fails has its messages retried with backoff; other orgs' are acked", async () => {
    const warn = vi.spyOn(console, "warn");
    const { workerEnv } = objects(new Set(["org_down"]));
    const batch = createMessageBatch("tollgate-usage", [message("d1", usage("org_down", { traces: 1 }), 3), message("u1", usage("org_up", { traces: 1 }))]);
    const retry = vi.spyOn(batch.messages[0]!, "retry");
    const ctx = createExecutionContext();
    await worker.queue!(batch as never, workerEnv, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual(["u1"]);
    expect(result.retryMessages).toEqual([{ msgId: "d1" }]);
    expect(retry).toHaveBeenCalledWith({ delaySeconds: 20 });
    expect(usageRetryDelaySeconds(3)).toBe(20);
    expect(usageRetryDelaySeconds(1)).toBe(5);
    expect(usageRetryDelaySeconds(100)).toBe(3600);
    expect(warn.mock.calls.map(([line]) => (line as { event?: string }).event)).toContain("usage_record_failed");
  });

  it("an object that refuses the usage (its settings invalid) has the messages retried, not acked", async () => {
    const { workerEnv } = objects(new Set(), new Set(["org_refusing"]));
    const batch = createMessageBatch("tollgate-usage", [message("r1", usage("org_refusing", { traces: 1 }))]);
    const ctx = createExecutionContext();
    await worker.queue!(batch as never, workerEnv, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages).toEqual([{ msgId: "r1" }]);
  });

  it("the last attempt's failure is logged usage_lost with the org and counts", async () => {
    const error = vi.spyOn(console, "error");
    const { workerEnv } = objects(new Set(["org_gone"]));
    const batch = createMessageBatch("tollgate-usage", [message("g1", usage("org_gone", { logs: 4 }), USAGE_MAX_RETRIES + 1)]);
    const ctx = createExecutionContext();
    await worker.queue!(batch as never, workerEnv, ctx);
    expect((await getQueueResult(batch, ctx)).retryMessages).toHaveLength(1);
    expect(error.mock.calls.map(([line]) => line)).toContainEqual(expect.objectContaining({ event: "usage_lost", org_id: "org_gone", message_id: "g1", counts: { logs: 4 } }));
  });

  it("poison (not a usage message, or an invalid org id) is acked and logged, never retried", async () => {
    const warn = vi.spyOn(console, "warn");
    const { calls, workerEnv } = objects();
    const batch = createMessageBatch("tollgate-usage", [
      message("p1", { org_id: "org_a" }),
      message("p2", usage("bad org/id", { traces: 1 })),
      message("p3", usage("org_ok", { traces: -1 })),
      message("p4", "not even an object"),
      message("p5", { ...usage("org_ok", { traces: 1 }), stream: "iso_1" }),
      message("p6", usage("org_ok", { traces: 1 }, 0)),
      message("ok1", usage("org_ok", { traces: 1 })),
    ]);
    const ctx = createExecutionContext();
    await worker.queue!(batch as never, workerEnv, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks.sort()).toEqual(["ok1", "p1", "p2", "p3", "p4", "p5", "p6"]);
    expect(result.retryMessages).toEqual([]);
    expect(calls).toEqual([{ orgId: "org_ok", records: [{ id: "ok1", counts: { traces: 1 }, first_at: 1, last_at: 2 }] }]);
    const invalid = warn.mock.calls.map(([line]) => line as { event?: string; message_id?: string }).filter((line) => line.event === "usage_message_invalid");
    expect(invalid.map((line) => line.message_id).sort()).toEqual(["p1", "p2", "p3", "p4", "p5", "p6"]);
  });

  it("messages of the deliveries queue still go to delivery", async () => {
    const batch = createMessageBatch("tollgate-deliveries", [message("x1", { org_id: "org-parking-off" })]);
    const ctx = createExecutionContext();
    await worker.queue!(batch as never, env as unknown as IngestEnv, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["x1"]);
  });
});
