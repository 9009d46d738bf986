import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type DependencyFailure } from "../../src/ingest/request/gate.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { UsageBatcher } from "../../src/ingest/usage/batcher.ts";
import type { ActivityMessage, UsageMessage } from "../../src/shared/usage.ts";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import type { OrgStatus } from "../../src/ingest/status/answer.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { ingestWithEnv, mintKey, override } from "../support/ingest.ts";
import { status } from "../support/status.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";
import { entry, heldSources, T, turns, until } from "../support/gate-fakes.ts";
import { deferredQueue, manualTime, settle } from "../support/batcher-fakes.ts";

/**
 * A second engineer's attempt to break 8d4f1a9 (the gate's stale-while-refresh and the batcher's early flush of a full
 * window) where it meets suspension and payment, fail-open, status and metering. The four defects it found are fixed;
 * their tests say so.
 */

const { confirmTtlMs, stateTtlMs, failOpenTtlMs, staleWhileRefreshMs } = GATE_TIMINGS;

describe("stale-while-refresh meets suspension and payment", () => {
  it("a payment during a hanging re-ask: a request meeting it never gets the expired suspension; it waits for the re-ask on its own timers, then asks for itself and is let through", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_p", entry("suspended"));
    state.object.set("org_p", entry("suspended"));
    expect(await gate.verdict("org_p", sources, T)).toMatchObject({ suspended: true, source: "object" });
    state.object.set("org_p", entry("ok")); // paid; the mirror (KV) still says suspended
    state.holdObject = true;
    const expiry = T + confirmTtlMs;
    void gate.verdict("org_p", sources, expiry); // the re-ask hangs (its request cancelled, say)
    await turns();
    expect(held).toHaveLength(1);
    state.holdObject = false;
    // A refusal is final for exporters: past refreshWaitMs of waiting, the request asks the object itself.
    expect(await gate.verdict("org_p", sources, expiry)).toMatchObject({ suspended: false, source: "object" });
    expect(await gate.verdict("org_p", sources, expiry + 1)).toMatchObject({ suspended: false, source: "memory" });
    expect(held).toHaveLength(1);
    held.splice(0).forEach((h) => h.release());
  });

  it("an object that throws on the re-ask: the refresher gets the mirror's suspension unconfirmed; once the object answers again, payment lifts it within failOpenTtlMs + staleWhileRefreshMs", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources } = heldSources();
    state.mirror.set("org_t", entry("suspended"));
    state.object.set("org_t", entry("suspended"));
    await gate.verdict("org_t", sources, T);
    state.object.set("org_t", entry("ok"));
    state.objectDown = true;
    const at = T + confirmTtlMs;
    expect(await gate.verdict("org_t", sources, at)).toMatchObject({ suspended: true, source: "unconfirmed" });
    expect(events).toEqual([expect.objectContaining({ dependency: "object", decision: "refuse" })]);
    state.objectDown = false;
    // The unconfirmed refusal is held failOpenTtlMs (no refresh under way: no stale window beyond it).
    expect(await gate.verdict("org_t", sources, at + failOpenTtlMs - 1)).toMatchObject({ suspended: true });
    expect(await gate.verdict("org_t", sources, at + failOpenTtlMs)).toMatchObject({ suspended: false, source: "object" });
  });

  /**
   * Found by a breaker (fixed): lookups for one org may now run side by side (nothing known, a stale entry too old, a re-read past
   * refreshMs), and the last one to finish wins, not the last one to start. A slow re-ask that began before the payment
   * lands after a later lookup has already confirmed it, and puts the old suspension back: the isolate, which had let
   * the org through, refuses it again (402) while the next lookup runs. Under the single flight no two lookups of an
   * org overlapped.
   */
  it("a slow re-ask that began before the payment never puts back a suspension a later lookup has already lifted", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_r", entry("suspended"));
    state.object.set("org_r", entry("suspended"));
    await gate.verdict("org_r", sources, T);
    const expiry = T + confirmTtlMs;
    state.holdObject = true;
    const slow = gate.verdict("org_r", sources, expiry); // the object says "suspended"; its answer is slow to come back
    await turns();
    state.object.set("org_r", entry("ok")); // the org pays
    // Past the stale window, the next request asks for itself and hears the payment.
    const later = expiry + staleWhileRefreshMs;
    const fresh = gate.verdict("org_r", sources, later);
    await turns();
    expect(held).toHaveLength(2);
    held[1]!.release();
    expect(await fresh).toMatchObject({ suspended: false, source: "object" });
    expect(await gate.verdict("org_r", sources, later + 1)).toMatchObject({ suspended: false, source: "memory" }); // let through
    held[0]!.release();
    expect(await slow).toMatchObject({ suspended: true, source: "object" }); // that request's own answer: fine
    // The isolate knew of the payment; two requests a moment later (the first starts a lookup, the second meets it).
    const next = later + 2;
    void gate.verdict("org_r", sources, next);
    expect(await gate.verdict("org_r", sources, next)).toMatchObject({ suspended: false });
  });

  it("the same late answer, then KV and the object both down: the org the isolate last confirmed paying is accepted (fail open), not refused for the whole outage", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_o", entry("suspended"));
    state.object.set("org_o", entry("suspended"));
    await gate.verdict("org_o", sources, T);
    const expiry = T + confirmTtlMs;
    state.holdObject = true;
    const slow = gate.verdict("org_o", sources, expiry);
    await turns();
    state.object.set("org_o", entry("ok"));
    const later = expiry + staleWhileRefreshMs;
    const fresh = gate.verdict("org_o", sources, later);
    await turns();
    held[1]!.release();
    expect(await fresh).toMatchObject({ suspended: false, source: "object" });
    held[0]!.release();
    await slow;
    state.holdObject = false;
    state.kvDown = true;
    state.objectDown = true;
    expect(await gate.verdict("org_o", sources, later + stateTtlMs)).toMatchObject({ suspended: false, source: "fail_open" });
  });

  it("with nothing known, concurrent misses that each read for themselves are all bounded by their own lookups (no stale answer to serve)", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_n", entry("suspended"));
    state.object.set("org_n", entry("ok"));
    state.holdObject = true;
    const verdicts = Array.from({ length: 3 }, (_, i) => gate.verdict("org_n", sources, T + i));
    await turns();
    expect(held).toHaveLength(3);
    held.splice(0).forEach((h) => h.release());
    expect(await Promise.all(verdicts)).toEqual(Array(3).fill(expect.objectContaining({ suspended: false, source: "object" })));
  });
});

describe("stale-while-refresh meets fail-open", () => {
  it("a fail-open acceptance (KV down) is served stale at most staleWhileRefreshMs past its failOpenTtlMs, and keeps its last_known", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources, held } = heldSources();
    state.mirror.set("org_f", entry("overdue", { suspend_at: T + 60_000 }));
    await gate.verdict("org_f", sources, T);
    state.kvDown = true;
    const down = T + stateTtlMs;
    expect(await gate.verdict("org_f", sources, down)).toMatchObject({ suspended: false, source: "fail_open", last_known: expect.objectContaining({ state: "overdue" }) });
    // KV comes back and says suspended; the re-read is slow.
    state.kvDown = false;
    state.mirror.set("org_f", entry("suspended"));
    state.object.set("org_f", entry("suspended"));
    state.holdKv = true;
    const expiry = down + failOpenTtlMs;
    void gate.verdict("org_f", sources, expiry);
    await turns();
    expect(await gate.verdict("org_f", sources, expiry + staleWhileRefreshMs - 1)).toMatchObject({ suspended: false, source: "fail_open", last_known: expect.objectContaining({ state: "overdue" }) });
    state.holdKv = false;
    expect(await gate.verdict("org_f", sources, expiry + staleWhileRefreshMs)).toMatchObject({ suspended: true, source: "object" });
    held.splice(0).forEach((h) => h.release());
    expect(events).toHaveLength(1);
  });

  it("an unconfirmed refusal is not extended by a refresh that hangs: a request meeting it waits, then asks the object itself", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_u", entry("suspended"));
    state.objectDown = true;
    expect(await gate.verdict("org_u", sources, T)).toMatchObject({ suspended: true, source: "unconfirmed" });
    state.objectDown = false;
    state.object.set("org_u", entry("ok"));
    state.holdObject = true;
    const expiry = T + failOpenTtlMs;
    void gate.verdict("org_u", sources, expiry);
    await turns();
    state.holdObject = false;
    expect(await gate.verdict("org_u", sources, expiry + staleWhileRefreshMs - 1)).toMatchObject({ suspended: false, source: "object" });
    held.splice(0).forEach((h) => h.release());
  });
});

describe("stale-while-refresh at its boundaries", () => {
  it("expiry is exclusive for memory; the stale window (for a verdict that accepts) is [expiry, expiry + staleWhileRefreshMs), and only while a re-read is under way", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_b", entry("overdue"));
    await gate.verdict("org_b", sources, T);
    expect(gate.counters.mirrorReads).toBe(1);
    const expiry = T + stateTtlMs;
    expect(await gate.verdict("org_b", sources, expiry - 1)).toMatchObject({ source: "memory" });
    expect(gate.counters.mirrorReads).toBe(1);
    // At expiry with no refresh under way: this request refreshes (it does not answer stale).
    state.holdKv = true;
    void gate.verdict("org_b", sources, expiry);
    await turns();
    expect(held).toHaveLength(1);
    expect(await gate.verdict("org_b", sources, expiry)).toMatchObject({ suspended: false, state: "overdue", source: "memory" });
    expect(await gate.verdict("org_b", sources, expiry + staleWhileRefreshMs - 1)).toMatchObject({ suspended: false, state: "overdue", source: "memory" });
    expect(held).toHaveLength(1);
    // One past the window: its own lookup.
    void gate.verdict("org_b", sources, expiry + staleWhileRefreshMs);
    await turns();
    expect(held).toHaveLength(2);
    held.splice(0).forEach((h) => h.release());
  });
});

describe("the refreshing map", () => {
  /**
   * Found by a breaker (fixed): a re-read whose request is cancelled never settles, so its `refreshing` entry is never deleted
   * (the doc comment says "bounded by the requests in flight"); only a later completed lookup of the same org clears
   * it. Orgs that are not seen again leave theirs for the isolate's life, beyond the gate's capacity.
   */
  it("stays within the gate's capacity when re-reads for many orgs never finish", async () => {
    const gate = new IngestGate({ capacity: 100 });
    const { state, sources } = heldSources();
    state.holdKv = true;
    for (let i = 0; i < 1_000; i++) void gate.verdict(`org_${i}`, sources, T);
    await turns();
    state.holdKv = false;
    for (let i = 0; i < 100; i++) await gate.verdict(`later_${i}`, sources, T + 60_000);
    expect((gate as unknown as { refreshing: Map<string, unknown> }).refreshing.size).toBeLessThanOrEqual(100);
  });
});

// ---- the batcher ----

describe("the batcher's early flush of a full window", () => {
  /**
   * Found by a breaker (fixed): `add` promises `done` "resolves once they are on the queue (or logged lost)". An add that rode the
   * window's timer has its counts carried by the early flush of the add that filled the window, yet its `done` is the
   * timer's flush, which finds nothing and resolves at once, while the early flush's send is still under way (or
   * retrying). The delivery consumer (parking/deliveries.ts) awaits exactly this `done` before it acks its message.
   */
  it("an add whose counts went in the early flush: its done waits for that send", async () => {
    const time = manualTime();
    const queue = deferredQueue();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now });
    const adds = Array.from({ length: 100 }, (_, i) => batcher.add(`org_${i}`, { traces: 1 }, time.now));
    expect(adds.map((a) => a.opened)).toEqual([true, ...Array(98).fill(false), true]);
    await settle();
    expect(queue.calls).toHaveLength(1); // the early flush carries all 100 orgs, org_0 included
    let firstDone = false;
    void adds[0]!.done.then(() => (firstDone = true));
    time.fire(); // the window's own timer: nothing left to send
    await settle();
    expect(queue.calls).toHaveLength(1);
    expect(firstDone).toBe(false); // org_0's counts are not on the queue yet
    queue.calls[0]!.resolve();
    await Promise.all(adds.map((a) => a.done));
  });

  it("metering and activity together across an early flush (first send failing, then retried), more adds before the timer, and the timer's flush: every count and every request once", async () => {
    const time = manualTime();
    const queue = deferredQueue();
    const batcher = new UsageBatcher(queue, { wait: time.wait, now: () => time.now, retryDelaysMs: [100] });
    const dones: Promise<void>[] = [];
    const expected = new Map<string, { traces: number; bytes: number; accepted: number; items: number }>();
    const request = (org: string, items: number) => {
      // As countForwarded does: the activity first, then metering with the forwarded items.
      const activity = batcher.addActivity(org, "accepted", time.now);
      const usage = batcher.add(org, { traces: items, bytes: 10 * items }, time.now, { kind: "accepted", items });
      dones.push(activity.done, usage.done);
      const e = expected.get(org) ?? { traces: 0, bytes: 0, accepted: 0, items: 0 };
      expected.set(org, { traces: e.traces + items, bytes: e.bytes + 10 * items, accepted: e.accepted + 1, items: e.items + items });
      return [activity, usage];
    };
    // 99 orgs, some twice: no flush before the 100th distinct org.
    for (let i = 0; i < 99; i++) request(`org_${i}`, i + 1);
    for (let i = 0; i < 10; i++) request(`org_${i}`, 1);
    await settle();
    expect(queue.calls).toHaveLength(0);
    // The 100th org's activity fills the window (early flush); its usage add starts the next one on the same timer.
    const [activity99, usage99] = request("org_99", 7);
    expect([activity99!.opened, usage99!.opened]).toEqual([true, false]);
    await settle();
    expect(queue.calls).toHaveLength(1);
    queue.calls[0]!.reject(new Error("blip"));
    // More adds before the timer fires.
    request("org_0", 3);
    request("org_new", 5);
    await settle();
    // The timers in order: the window's (0), then the early flush's retry (100).
    expect(time.fire()).toBe(0);
    await settle();
    expect(time.fire()).toBe(100);
    await settle();
    expect(queue.calls).toHaveLength(3);
    for (const call of queue.calls.slice(1)) call.resolve();
    await Promise.all(dones);

    // Each batch id once (a retry repeats its ids), then fold.
    const usage = new Map<string, UsageMessage>();
    const activity = new Map<string, ActivityMessage["parts"][number]>();
    for (const call of queue.calls)
      for (const body of call.messages) {
        if ("kind" in body) for (const part of body.parts) activity.set(`${part.shard}/${part.seq}`, part);
        else usage.set(`${body.org_id}/${body.seq}`, body);
      }
    const got = new Map<string, { traces: number; bytes: number; accepted: number; items: number }>();
    const at = (org: string) => got.get(org) ?? (got.set(org, { traces: 0, bytes: 0, accepted: 0, items: 0 }), got.get(org)!);
    for (const message of usage.values()) {
      at(message.org_id).traces += message.counts.traces ?? 0;
      at(message.org_id).bytes += message.counts.bytes ?? 0;
    }
    for (const part of activity.values())
      for (const org of part.orgs)
        for (const hour of org.hours) {
          at(org.org_id).accepted += hour.accepted ?? 0;
          at(org.org_id).items += hour.items?.accepted ?? 0;
        }
    expect(got).toEqual(expected);
    // org_0 and org_99 rode both flushes: consecutive numbers of the same stream.
    expect([...usage.keys()].filter((k) => k.startsWith("org_0/"))).toEqual(["org_0/1", "org_0/2"]);
    expect([...usage.keys()].filter((k) => k.startsWith("org_99/"))).toEqual(["org_99/1"]);
  });
});

// ---- through the Worker ----

describe("through the Worker: payment while the object's re-ask hangs", () => {
  const clock = fakeClock();
  beforeEach(() => {
    gate.reset();
    logThrottle.reset();
  });
  afterEach(deleteAllAlarms);

  /** The real env, its object's verdict calls held while `hold` is set (released by `release`). */
  function slowObjectEnv() {
    const waiting: (() => void)[] = [];
    const control = { hold: false, waiting, release: () => waiting.splice(0).forEach((r) => r()) };
    const objects = env.ORG_BILLING;
    const workerEnv = {
      ...env,
      ORG_BILLING: {
        getByName: (name: string) => {
          const stub = objects.getByName(name);
          return {
            verdict: async () => {
              if (control.hold) await new Promise<void>((resolve) => waiting.push(resolve));
              return stub.verdict();
            },
          };
        },
      },
    };
    return { control, workerEnv };
  }
  const TRACES = { headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] };

  it("exports meeting a re-ask that hears the payment: none gets a 402 from the expired suspension, all get 200 once it answers", async () => {
    const org = uniqueOrg("gbrk_pay");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const { control, workerEnv } = slowObjectEnv();
    const t0 = clock.now;
    expect((await ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES })).status).toBe(402);
    // Payment: the object knows at once; the KV mirror still says suspended (its propagation lags).
    const mirror = await env.BILLING_STATE.get(billingStateKey(org), "text");
    await override(org, "clear");
    await env.BILLING_STATE.put(billingStateKey(org), mirror!);
    clock.set(t0 + confirmTtlMs);
    control.hold = true;
    const refresh = ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES });
    await until(() => control.waiting.length === 1);
    const meeting = Array.from({ length: 8 }, () => ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    control.hold = false;
    control.release();
    expect((await refresh).status).toBe(200);
    expect((await Promise.all(meeting)).map((r) => r.status)).toEqual(Array(8).fill(200));
    const after = (await (await status(workerEnv, key)).json()) as OrgStatus;
    expect(after).toMatchObject({ state: "ok" });
  });

  /**
   * Found by a breaker (fixed; older than the stale window, which widened it): docs/ingest-api.md says status `source` is `unconfirmed` when "a
   * mirrored suspension the object could not confirm" stands. The gate caches that refusal as a plain verdict, so the
   * next status read (for failOpenTtlMs, and staleWhileRefreshMs more during a re-ask) says `memory`, as if confirmed.
   */
  it("status of a suspension the object could not confirm stays `unconfirmed` while that refusal is held", async () => {
    const org = uniqueOrg("gbrk_unconf");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const workerEnv = { ...env, ORG_BILLING: { getByName: () => ({ verdict: () => Promise.reject(new Error("object down")) }) } };
    const first = (await (await status(workerEnv, key)).json()) as OrgStatus;
    expect(first).toMatchObject({ state: "suspended", source: "unconfirmed" });
    clock.set(clock.now + 1);
    const second = (await (await status(workerEnv, key)).json()) as OrgStatus;
    expect(second).toMatchObject({ state: "suspended", source: "unconfirmed" });
  });
});
