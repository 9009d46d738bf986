import { describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type DependencyFailure, type GateSources } from "../../src/ingest/request/gate.ts";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";

const T = 1_800_000_000_000;
const entry = (state: MirrorEntry["state"]): MirrorEntry => ({ state, since: T, version: 1, suspend_at: null, suspended_at: state === "suspended" ? T : null, pay_url: null, limits: [], enforcement: null });

/** In-memory sources with switchable outages, counting every call. */
function memorySources() {
  const state = { mirror: new Map<string, MirrorEntry>(), object: new Map<string, MirrorEntry>(), kvDown: false, objectDown: false, calls: { kv: 0, object: 0 } };
  const sources: GateSources = {
    hashKey: async (key) => `h(${key})`,
    lookupKey: async (hash) => {
      if (state.kvDown) throw new Error("kv down");
      return hash === "h(k1)" ? { org_id: "org_a", key_id: "ik_1", created_at: T } : null;
    },
    readMirror: async (orgId) => {
      state.calls.kv++;
      if (state.kvDown) throw new Error("kv down");
      return state.mirror.get(orgId) ?? null;
    },
    askObject: async (orgId) => {
      state.calls.object++;
      if (state.objectDown) throw new Error("object down");
      return state.object.get(orgId) ?? entry("ok");
    },
  };
  return { state, sources };
}

describe("the ingest gate", () => {
  it("answers warm requests from memory, synchronously", async () => {
    const gate = new IngestGate();
    const { sources } = memorySources();
    expect(gate.cached("k1", T)).toBeUndefined();
    await gate.checkKey("k1", sources, T);
    await gate.verdict("org_a", sources, T);
    expect(gate.cached("k1", T + 1)).toEqual({ org_id: "org_a", key_id: "ik_1", verdict: { suspended: false, suspended_at: null, state: "ok", suspend_at: null, pay_url: null, limits: [], enforcement: null, source: "memory" } });
    expect(gate.cached("k1", T + GATE_TIMINGS.stateTtlMs)).toBeUndefined();
  });

  it("takes a cold key's carried verdict as the mirror read: no KV read for ok, the object still confirms a suspension", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    expect(await gate.verdict("org_a", sources, T, entry("overdue"))).toMatchObject({ suspended: false, source: "mirror" });
    expect(gate.cached("k1", T)).toBeUndefined(); // the key itself was not looked up here
    expect(state.calls).toEqual({ kv: 0, object: 0 });

    state.object.set("org_b", entry("ok")); // paid: the object knows before KV does
    expect(await gate.verdict("org_b", sources, T, entry("suspended"))).toMatchObject({ suspended: false, source: "object" });
    expect(state.calls).toEqual({ kv: 0, object: 1 });
    expect(gate.counters).toMatchObject({ mirrorReads: 0, carriedVerdicts: 2, objectCalls: 1 });
  });

  it("asks the object only when the mirror says suspended", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    state.mirror.set("org_a", entry("overdue"));
    expect(await gate.verdict("org_a", sources, T)).toMatchObject({ suspended: false, source: "mirror" });
    expect(state.calls.object).toBe(0);

    state.mirror.set("org_b", entry("suspended"));
    state.object.set("org_b", entry("suspended"));
    expect(await gate.verdict("org_b", sources, T)).toMatchObject({ suspended: true, suspended_at: T, source: "object" });
    expect(state.calls.object).toBe(1);
  });

  it("re-asks the object about a confirmed suspension after the confirmation window", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.object.set("org_b", entry("suspended"));
    await gate.verdict("org_b", sources, T);
    expect(await gate.verdict("org_b", sources, T + GATE_TIMINGS.confirmTtlMs - 1)).toMatchObject({ suspended: true, source: "memory" });
    state.object.set("org_b", entry("ok"));
    expect(await gate.verdict("org_b", sources, T + GATE_TIMINGS.confirmTtlMs)).toMatchObject({ suspended: false, source: "object" });
  });

  it("fails open when KV is unreachable and nothing is known about the org", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (event) => events.push(event) });
    const { state, sources } = memorySources();
    state.kvDown = true;
    expect(await gate.verdict("org_b", sources, T)).toMatchObject({ suspended: false, source: "fail_open" });
    expect(events).toEqual([{ org_id: "org_b", dependency: "kv", error: expect.stringContaining("down"), last_verdict: "none", decision: "accept" }]);
    expect(state.calls.object).toBe(0);
  });

  it("keeps accepting an org last seen paying while KV is unreachable, without asking its object", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (event) => events.push(event) });
    const { state, sources } = memorySources();
    await gate.verdict("org_a", sources, T);
    state.kvDown = true;
    expect(await gate.verdict("org_a", sources, T + GATE_TIMINGS.stateTtlMs)).toMatchObject({ suspended: false, source: "fail_open" });
    expect(events).toEqual([expect.objectContaining({ dependency: "kv", last_verdict: "ok", decision: "accept" })]);
    expect(state.calls.object).toBe(0);
  });

  it("keeps refusing with the mirror's verdict when the object cannot be reached (issue 10, item 4)", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (event) => events.push(event) });
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.objectDown = true;
    expect(await gate.verdict("org_b", sources, T)).toEqual({ suspended: true, suspended_at: T, state: "suspended", suspend_at: null, pay_url: null, limits: [], since: T, enforcement: null, source: "unconfirmed" });
    expect(events).toEqual([{ org_id: "org_b", dependency: "object", error: expect.stringContaining("down"), last_verdict: "none", decision: "refuse" }]);

    // Held briefly instead of hammering an object that is down or overloaded, and still said to be unconfirmed.
    const calls = { ...state.calls };
    expect(await gate.verdict("org_b", sources, T + GATE_TIMINGS.failOpenTtlMs - 1)).toEqual({ suspended: true, suspended_at: T, state: "suspended", suspend_at: null, pay_url: null, limits: [], since: T, enforcement: null, source: "unconfirmed" });
    expect(state.calls).toEqual(calls);

    // Once the object answers again, it decides.
    state.objectDown = false;
    state.object.set("org_b", entry("ok"));
    expect(await gate.verdict("org_b", sources, T + GATE_TIMINGS.failOpenTtlMs)).toMatchObject({ suspended: false, source: "object" });
  });

  it("with KV down, puts a suspension it saw to the object, and keeps it when the object is down too", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (event) => events.push(event) });
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.object.set("org_b", entry("suspended"));
    await gate.verdict("org_b", sources, T);

    state.kvDown = true;
    const later = T + GATE_TIMINGS.confirmTtlMs;
    expect(await gate.verdict("org_b", sources, later)).toMatchObject({ suspended: true, source: "object" });
    expect(events).toEqual([]);

    state.objectDown = true;
    expect(await gate.verdict("org_b", sources, later + GATE_TIMINGS.confirmTtlMs)).toEqual({ suspended: true, suspended_at: T, state: "suspended", suspend_at: null, pay_url: null, limits: [], since: T, enforcement: null, source: "unconfirmed" });
    expect(events).toEqual([expect.objectContaining({ dependency: "kv_and_object", last_verdict: "suspended", decision: "refuse" })]);
  });

  /**
   * Workers does not let a request use what another request's I/O made: a request that awaited another's lookup
   * ran on in that request's context, and the bench saw workerd answer it 500 ("Cannot perform I/O on behalf of a
   * different request", 9–49 requests a run, in bursts one confirmation apart). So no request awaits another's.
   */
  function slowObject(sources: GateSources) {
    const releases: (() => void)[] = [];
    const ask = sources.askObject;
    sources.askObject = async (orgId) => {
      await new Promise<void>((resolve) => releases.push(resolve));
      return ask(orgId);
    };
    return { release: () => releases.splice(0).forEach((release) => release()), waiting: () => releases.length };
  }
  /** Whether every promise settled while nothing was released (a request waiting on another's lookup would not). */
  const settledAlone = async (promises: Promise<unknown>[]) => {
    let all = false;
    void Promise.all(promises).then(() => (all = true));
    for (let turn = 0; turn < 20; turn++) await Promise.resolve();
    return all;
  };

  it("while one request re-reads a paying org's expired verdict, the others answer from it at once: one KV read, and no request awaits another's (issue 10, item 4)", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    state.mirror.set("org_a", entry("ok"));
    expect(await gate.verdict("org_a", sources, T)).toMatchObject({ suspended: false, source: "mirror" });
    let release!: () => void;
    const read = sources.readMirror;
    sources.readMirror = async (orgId) => {
      await new Promise<void>((resolve) => (release = resolve));
      return read(orgId);
    };
    const at = T + GATE_TIMINGS.stateTtlMs;
    const refresh = gate.verdict("org_a", sources, at);
    const others = Array.from({ length: 63 }, () => gate.verdict("org_a", sources, at));
    expect(await settledAlone(others)).toBe(true);
    expect(await Promise.all(others)).toEqual(Array(63).fill(expect.objectContaining({ suspended: false, source: "memory" })));
    release();
    expect(await refresh).toMatchObject({ suspended: false, source: "mirror" });
    expect(state.calls).toEqual({ kv: 2, object: 0 });
  });

  it("while one request re-asks the object about an expired suspension, the others wait for its answer on timers of their own (a 402 is final for exporters): one object call, and a payment it hears reaches them all", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.object.set("org_b", entry("suspended"));
    expect(await gate.verdict("org_b", sources, T)).toMatchObject({ suspended: true, source: "object" });
    const object = slowObject(sources);
    state.object.set("org_b", entry("ok")); // paid: the object knows before KV does

    const at = T + GATE_TIMINGS.confirmTtlMs;
    const refresh = gate.verdict("org_b", sources, at);
    const others = Array.from({ length: 63 }, () => gate.verdict("org_b", sources, at));
    expect(await settledAlone(others)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(object.waiting()).toBe(1);
    object.release();
    expect(await refresh).toMatchObject({ suspended: false, source: "object" });
    expect(await Promise.all(others)).toEqual(Array(63).fill(expect.objectContaining({ suspended: false, source: "memory" })));
    expect(state.calls).toEqual({ kv: 2, object: 2 });
  });

  it("with nothing known of the org, concurrent misses each look up for themselves", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.object.set("org_b", entry("suspended"));
    const object = slowObject(sources);
    const verdicts = Array.from({ length: 4 }, () => gate.verdict("org_b", sources, T));
    for (let turn = 0; turn < 20; turn++) await Promise.resolve();
    expect(object.waiting()).toBe(4);
    object.release();
    expect(await Promise.all(verdicts)).toEqual(Array(4).fill(expect.objectContaining({ suspended: true, source: "object" })));
    expect(gate.counters).toMatchObject({ mirrorReads: 4, objectCalls: 4 });
  });

  it("an old verdict is not served while another request refreshes it, and a refresh that never ends holds nobody", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.object.set("org_b", entry("suspended"));
    await gate.verdict("org_b", sources, T);
    const object = slowObject(sources);
    // Expired longer ago than staleWhileRefreshMs: a request meeting a refresh asks for itself.
    const late = T + GATE_TIMINGS.confirmTtlMs + GATE_TIMINGS.staleWhileRefreshMs;
    void gate.verdict("org_b", sources, late);
    void gate.verdict("org_b", sources, late);
    for (let turn = 0; turn < 20; turn++) await Promise.resolve();
    expect(object.waiting()).toBe(2);
    // Refreshes under way (their requests cancelled, say) for refreshMs and more: the next request asks for itself too.
    void gate.verdict("org_b", sources, late + GATE_TIMINGS.refreshMs);
    for (let turn = 0; turn < 20; turn++) await Promise.resolve();
    expect(object.waiting()).toBe(3);
    object.release();
  });

  it("a failed lookup does not stick: the next miss tries again", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.objectDown = true;
    await gate.verdict("org_b", sources, T);
    expect(state.calls.object).toBe(1);
    state.objectDown = false;
    state.object.set("org_b", entry("suspended"));
    expect(await gate.verdict("org_b", sources, T + GATE_TIMINGS.failOpenTtlMs)).toMatchObject({ suspended: true, source: "object" });
    expect(state.calls.object).toBe(2);
  });

  it("keeps a known key working through a key-store outage, but refuses unknown ones as unavailable", async () => {
    const gate = new IngestGate();
    const { state, sources } = memorySources();
    await gate.checkKey("k1", sources, T);
    state.kvDown = true;
    expect(await gate.checkKey("k1", sources, T + GATE_TIMINGS.keyTtlMs)).toEqual({ ok: true, org_id: "org_a", key_id: "ik_1" });
    expect(await gate.checkKey("k2", sources, T)).toEqual({ ok: false, code: "auth_unavailable" });
  });

  it("stays bounded in memory", async () => {
    const gate = new IngestGate({ capacity: 100 });
    const { sources } = memorySources();
    for (let i = 0; i < 1_000; i++) await gate.verdict(`org_${i}`, sources, T);
    expect(gate.cached("k1", T)).toBeUndefined();
    expect((gate as unknown as { verdicts: { size: number } }).verdicts.size).toBe(100);
  });
});
