import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { GATE_TIMINGS, IngestGate, type DependencyFailure } from "../../src/ingest/request/gate.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { UsageBatcher, type QueuedMessage } from "../../src/ingest/usage/batcher.ts";
import type { UsageMessage } from "../../src/shared/usage.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { ingestWithEnv, mintKey, override, sink } from "../support/ingest.ts";
import { ALL, deliver, parkingEnv, recordingQueue, total } from "../support/parking.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";
import { entry, heldSources, T, turns, until } from "../support/gate-fakes.ts";
import { deferredQueue, manualTime, settle } from "../support/batcher-fakes.ts";

function tracesJson(n: number): string {
  const spans = Array.from({ length: n }, (_, i) => ({ traceId: "5b8efff798038103d269b633813fc60c", spanId: i.toString(16).padStart(16, "0"), name: `op-${i}-${Math.random()}`, kind: 2, startTimeUnixNano: "1544712660000000000", endTimeUnixNano: "1544712661000000000" }));
  return JSON.stringify({ resourceSpans: [{ resource: {}, scopeSpans: [{ scope: { name: "s" }, spans }] }] });
}

/**
 * A second breaker on today's "no request awaits another request's I/O" changes (8d4f1a9, 6a9d675, 6ff89e6), where they
 * meet other features: the gate's stamp rule against fail-open and unconfirmed entries, the batcher's early and
 * sendNow flushes, and metering through the delivery consumer with fetch-path adds on the same batcher.
 */

afterEach(() => {
  vi.restoreAllMocks();
});

const { failOpenTtlMs, stateTtlMs } = GATE_TIMINGS;

// ---- the gate: the stamp rule against failed lookups ----

describe("the stamp rule: a failed lookup's entry against an answer the object gave", () => {
  /**
   * Two lookups overlap (an isolate that knows nothing yet; or a re-read older than the stale window). The later one's
   * KV read fails first: nothing known, so it fails open, stamped later. The earlier one's object then confirms the
   * suspension (its request gets 402, source "object"), but the stamp rule refuses to store it: the fail-open
   * acceptance outranks the object's answer. While KV stays down, every later lookup peeks that fail-open entry
   * ("not suspended"), never puts the org to its object, and accepts again: a suspended org the isolate has just
   * refused is let through for the whole KV outage. docs/ingest-api.md: "When KV cannot be reached, an org this
   * isolate last saw suspended is put to its object". Before 6ff89e6 the later-landing confirmation replaced it. Fixed: a failed lookup's entry is never firm.
   */
  it("a suspension the object confirmed is not lost to a fail-open acceptance stamped later: while KV stays down the org is put to its object and refused", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources, held } = heldSources();
    state.mirror.set("org_s", entry("suspended"));
    state.object.set("org_s", entry("suspended"));
    state.holdObject = true;
    const confirming = gate.verdict("org_s", sources, T); // mirror: suspended; the object's confirmation is slow
    await turns();
    expect(held.map((h) => h.what)).toEqual(["object"]);
    state.kvDown = true; // KV fails from here on
    // Documented: nothing known, KV down: accepted (fail open).
    expect(await gate.verdict("org_s", sources, T + 1)).toMatchObject({ suspended: false, source: "fail_open" });
    state.holdObject = false;
    held[0]!.release();
    expect(await confirming).toMatchObject({ suspended: true, source: "object" }); // this isolate refused the org: 402
    // KV still down, the object up: the org this isolate last saw suspended is put to its object.
    const calls = gate.counters.objectCalls;
    expect(await gate.verdict("org_s", sources, T + 1 + failOpenTtlMs)).toMatchObject({ suspended: true });
    expect(gate.counters.objectCalls).toBe(calls + 1);
  });

  /**
   * The mirror image, for a paying org: the KV mirror still says suspended after the payment (propagation), the object
   * says ok. The earlier lookup's object call hears the payment; the later lookup's object call fails, so it keeps the
   * mirror's suspension as `unconfirmed`, stamped later. The object's ok lands after it and is refused. The isolate,
   * told by the object that the org paid, keeps refusing; and through a KV + object outage it refuses the whole time
   * (it peeks the unconfirmed suspension, cannot reach the object, refuses again), where an org last seen paying is
   * documented to be accepted.
   */
  it("a payment the object confirmed is not lost to an unconfirmed suspension stamped later: through a KV and object outage the org is accepted", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_p", entry("suspended")); // stale: the org has paid
    state.object.set("org_p", entry("ok", { version: 2 })); // the payment raised the object's version
    state.holdObject = true;
    const hearing = gate.verdict("org_p", sources, T); // the object says ok; slow to come back
    await turns();
    expect(held.map((h) => h.what)).toEqual(["object"]);
    state.holdObject = false;
    state.objectDown = true;
    // Documented: the object cannot confirm the mirror's suspension, so it stands (402, unconfirmed).
    expect(await gate.verdict("org_p", sources, T + 1)).toMatchObject({ suspended: true, source: "unconfirmed" });
    held[0]!.release();
    expect(await hearing).toMatchObject({ suspended: false, source: "object" }); // the object: paid
    // The object's answer is held now (accepted from memory); past it, KV and the object both down: the org this isolate last heard paying is accepted.
    expect(await gate.verdict("org_p", sources, T + 1 + failOpenTtlMs)).toMatchObject({ suspended: false, source: "memory" });
    state.kvDown = true;
    expect(await gate.verdict("org_p", sources, T + stateTtlMs)).toMatchObject({ suspended: false, source: "fail_open" });
  });

  it("(holds) with equal stamps (Workers' clock stands still between I/O, so a burst shares one now), the confirmation landing after the fail-open replaces it", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_e", entry("suspended"));
    state.object.set("org_e", entry("suspended"));
    state.holdObject = true;
    const confirming = gate.verdict("org_e", sources, T);
    await turns();
    state.kvDown = true;
    expect(await gate.verdict("org_e", sources, T)).toMatchObject({ suspended: false, source: "fail_open" });
    held[0]!.release();
    await confirming;
    expect(await gate.verdict("org_e", sources, T + 1)).toMatchObject({ suspended: true, source: "memory" });
  });

  it("(holds) when the object's answer lands first, a failed lookup that lands after it does not undo a confirmed suspension (KV fails: the object is asked again)", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_f", entry("suspended"));
    state.object.set("org_f", entry("suspended"));
    state.holdKv = true;
    const failing = gate.verdict("org_f", sources, T + 1); // its KV read hangs, then fails
    await turns();
    state.holdKv = false;
    expect(await gate.verdict("org_f", sources, T)).toMatchObject({ suspended: true, source: "object" });
    state.kvDown = true;
    held[0]!.release();
    // The KV read that began before it failed; it sees the stored suspension and puts it to the object, which confirms it.
    expect(await failing).toMatchObject({ suspended: true });
  });
});

// ---- the same through the Worker ----

describe("through the Worker: a KV blip while the object confirms a suspension", () => {
  const clock = fakeClock();
  beforeEach(() => {
    gate.reset();
    logThrottle.reset();
  });
  afterEach(deleteAllAlarms);

  const TRACES = { headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] };

  it("a suspended org this isolate refused (402 from its object) is refused again while KV is down, not let through for the outage", async () => {
    const org = uniqueOrg("xrb_kv");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const waiting: (() => void)[] = [];
    const control = { holdObject: false, kvDown: false };
    const objects = env.ORG_BILLING;
    const state = env.BILLING_STATE;
    const workerEnv = {
      ...env,
      ORG_BILLING: {
        getByName: (name: string) => {
          const stub = objects.getByName(name);
          return {
            verdict: async () => {
              if (control.holdObject) await new Promise<void>((resolve) => waiting.push(resolve));
              return stub.verdict();
            },
          };
        },
      },
      BILLING_STATE: {
        get: (...args: Parameters<KVNamespace["get"]>) => {
          if (control.kvDown) return Promise.reject(new Error("KV GET failed: 503"));
          return (state.get as (...a: unknown[]) => Promise<unknown>)(...args);
        },
      },
    };
    // A cold isolate: the key's entry carries the suspension; the object's confirmation is slow.
    control.holdObject = true;
    const first = ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES });
    await until(() => waiting.length === 1);
    // KV fails for the mirror read of the next request (the key itself is now in memory): nothing known, fail open (documented).
    control.kvDown = true;
    clock.set(clock.now + 1);
    expect((await ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES })).status).toBe(200);
    control.holdObject = false;
    waiting.splice(0).forEach((r) => r());
    expect((await first).status).toBe(402);
    // KV still down past the fail-open hold; the object is up and says suspended.
    clock.set(clock.now + failOpenTtlMs);
    expect((await ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES })).status).toBe(402);
  });
});

// ---- the batcher ----

const tracked = (done: Promise<void>) => {
  const state = { settled: false, rejected: false };
  done.then(
    () => (state.settled = true),
    () => (state.rejected = true),
  );
  return state;
};
const usageOf = (messages: readonly QueuedMessage[]) => messages.filter((m): m is UsageMessage => !("kind" in m));

describe("the batcher's early and own flushes (holds)", () => {
  it("a sendNow add with no window open: its own flush, at once, no timer left behind; done only once its send has", async () => {
    const time = manualTime();
    const queue = deferredQueue();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    const own = batcher.add("org_a", { traces: 2 }, time.now, undefined, true);
    expect(own.opened).toBe(true);
    const state = tracked(own.done);
    await settle();
    expect(time.timers).toHaveLength(0);
    expect(queue.calls).toHaveLength(1);
    expect(state.settled).toBe(false);
    queue.calls[0]!.resolve();
    await settle();
    expect(state).toEqual({ settled: true, rejected: false });
    // The next fetch-path add opens a window a full interval after that flush.
    const next = batcher.add("org_a", { traces: 1 }, time.now);
    expect(next.opened).toBe(true);
    expect(time.timers.map((t) => t.ms)).toEqual([1_000]);
  });

  it("a sendNow add, then a full window, then the timer: every rider's done waits for all three sends, per-org numbers run 1, 2, 3 across them, counts exact, nothing rejects", async () => {
    const time = manualTime();
    const queue = deferredQueue();
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now, retryDelaysMs: [100] });
    const opener = batcher.add("org_x", { traces: 1 }, time.now);
    expect(opener.opened).toBe(true);
    const consumer = batcher.add("org_y", { logs: 5 }, time.now, undefined, true); // the delivery consumer
    await settle();
    expect(queue.calls).toHaveLength(1);
    const riders = [batcher.add("org_x", { traces: 2 }, time.now)];
    for (let i = 0; i < 98; i++) riders.push(batcher.add(`org_${i}`, { traces: 1 }, time.now));
    const filler = batcher.add("org_y", { logs: 1 }, time.now); // org_x, org_0..97: 99; org_y makes 100
    expect(filler.opened).toBe(true);
    await settle();
    expect(queue.calls).toHaveLength(2);
    const late = batcher.add("org_x", { traces: 4 }, time.now);
    expect(late.opened).toBe(false);
    const all = [opener, consumer, filler, late, ...riders].map((a) => tracked(a.done));
    expect(time.fire()).toBe(0); // the window's timer: sends org_x's last count
    await settle();
    expect(queue.calls).toHaveLength(3);
    queue.calls[2]!.resolve();
    queue.calls[0]!.reject(new Error("blip")); // the consumer's own send fails once, then is retried
    await settle();
    expect(all.filter((s) => s.settled)).toHaveLength(0); // the opener's window also waits for the early flushes
    expect(time.fire()).toBe(100);
    await settle();
    expect(queue.calls).toHaveLength(4);
    queue.calls[3]!.resolve();
    await settle();
    expect(all[1]).toEqual({ settled: true, rejected: false }); // the consumer's
    expect(all.filter((s) => s.settled)).toHaveLength(1); // the rest also wait for the full window's send
    queue.calls[1]!.reject(new Error("down"));
    await settle();
    expect(time.fire()).toBe(100);
    await settle();
    queue.calls[4]!.reject(new Error("still down"));
    await settle();
    expect(all.every((s) => s.settled && !s.rejected)).toBe(true);
    // The full window's counts, lost after its retries, are logged org by org.
    const lost = error.mock.calls.map(([line]) => line as { event?: string; org_id?: string }).filter((line) => line.event === "usage_lost");
    expect(lost.map((l) => l.org_id).sort()).toEqual(["org_x", "org_y", ...Array.from({ length: 98 }, (_, i) => `org_${i}`)].sort());
    // Numbers per org: org_x 1 (consumer's flush), 2 (full window), 3 (timer).
    const sentX = queue.calls.flatMap((c) => usageOf(c.messages)).filter((m) => m.org_id === "org_x");
    expect([...new Map(sentX.map((m) => [m.seq, m.counts])).entries()]).toEqual([
      [1, { traces: 1 }],
      [2, { traces: 2 }],
      [3, { traces: 4 }],
    ]);
  });

  it("many consumer flushes while one window is open: the early list is emptied by the window's timer, and later early flushes do not hold an already-settled window", async () => {
    const time = manualTime();
    const queue = { sendBatch: async () => {} };
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    const window = batcher.add("org_w", { traces: 1 }, time.now);
    for (let i = 0; i < 50; i++) await batcher.add(`org_c${i}`, { logs: 1 }, time.now, undefined, true).done;
    expect((batcher as unknown as { early: unknown[] }).early).toHaveLength(50);
    time.fire();
    await window.done;
    expect((batcher as unknown as { early: unknown[] }).early).toHaveLength(0);
    await batcher.add("org_c", { logs: 1 }, time.now, undefined, true).done;
    expect((batcher as unknown as { early: unknown[] }).early).toHaveLength(0);
  });
});

// ---- metering end to end: the delivery consumer beside fetch-path adds on one batcher ----

describe("metering through the delivery consumer with concurrent fetch-path adds (holds)", () => {
  beforeEach(() => {
    gate.reset();
    logThrottle.reset();
  });
  afterEach(async () => {
    await sink.clearFaults();
    await deleteAllAlarms();
  });

  it("a paid org's parked batches delivered while another org's requests meter on the same batcher: every count once, the run's before its message is acked", async () => {
    const parked = uniqueOrg("xrb_parked");
    const busy = uniqueOrg("xrb_busy");
    const { key: parkedKey } = await mintKey(parked);
    const { key: busyKey } = await mintKey(busy);
    const usage = recordingQueue();
    const workerEnv = parkingEnv({ USAGE_FEATURES: ALL, USAGE: usage });
    await override(parked, "suspend");
    const json = { "content-type": "application/json" };
    const refused = [2, 3, 4].map(tracesJson);
    const { default: worker } = await import("../../src/ingest/worker.ts");
    const post = async (key: string, body: BodyInit, headers: Record<string, string>) => {
      const ctx = createExecutionContext();
      const response = await worker.fetch(new Request("http://ingest.test/v1/traces", { method: "POST", body, headers: { ...headers, authorization: `Bearer ${key}` } }) as never, workerEnv, ctx);
      await response.arrayBuffer();
      return { status: response.status, held: waitOnExecutionContext(ctx) };
    };
    for (const body of refused) expect((await post(parkedKey, body, json)).status).toBe(402);
    await override(parked, "clear");
    const before = usage.sent.length;
    // Fetch-path requests of another org interleaved with the delivery run.
    const busyBody = OTLP_JSON["/v1/traces"];
    const requests = Array.from({ length: 6 }, () => post(busyKey, busyBody, { "content-type": "application/json" }));
    const run = deliver(workerEnv, parked);
    const answers = await Promise.all(requests);
    expect(answers.map((a) => a.status)).toEqual(Array(6).fill(200));
    expect(await run).toMatchObject({ outcome: "done", delivered: 3 });
    // The run's usage is on the queue once it returns (it awaited its own send).
    const delivered = usage.sent.slice(before).filter((m) => m.org_id === parked);
    expect(total(delivered)).toEqual({ traces: 9, bytes: refused.reduce((sum, body) => sum + body.length, 0) });
    await Promise.all(answers.map((a) => a.held));
    const busyUsage = usage.sent.filter((m) => m.org_id === busy);
    expect(total(busyUsage)).toEqual({ traces: 6, bytes: 6 * busyBody.length });
    // Each (stream, seq) once per org.
    const ids = usage.sent.map((m) => `${m.org_id}/${m.stream}/${m.seq}`);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
