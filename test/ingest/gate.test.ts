import { describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type FailOpen, type GateSources } from "../../src/ingest/gate.ts";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";

const T = 1_800_000_000_000;
const entry = (state: MirrorEntry["state"]): MirrorEntry => ({ state, since: T, version: 1, suspend_at: null, suspended_at: state === "suspended" ? T : null });

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
    expect(gate.cached("k1", T + 1)).toEqual({ org_id: "org_a", key_id: "ik_1", verdict: { suspended: false, suspended_at: null, source: "memory" } });
    expect(gate.cached("k1", T + GATE_TIMINGS.stateTtlMs)).toBeUndefined();
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

  it.each([
    ["KV", { kvDown: true }, "kv"],
    ["the object", { objectDown: true }, "object"],
  ] as const)("fails open when %s is unreachable, reporting the last verdict", async (_name, outage, dependency) => {
    const events: FailOpen[] = [];
    const gate = new IngestGate({ onFailOpen: (event) => events.push(event) });
    const { state, sources } = memorySources();
    state.mirror.set("org_b", entry("suspended"));
    state.object.set("org_b", entry("suspended"));
    expect((await gate.verdict("org_b", sources, T)).suspended).toBe(true);

    Object.assign(state, outage);
    const later = T + GATE_TIMINGS.confirmTtlMs;
    expect(await gate.verdict("org_b", sources, later)).toMatchObject({ suspended: false, source: "fail_open" });
    expect(events).toEqual([{ org_id: "org_b", dependency, error: expect.stringContaining("down"), last_verdict: "suspended" }]);

    // The fail-open answer is held briefly instead of hammering a dependency that is down.
    const calls = { ...state.calls };
    await gate.verdict("org_b", sources, later + GATE_TIMINGS.failOpenTtlMs - 1);
    expect(state.calls).toEqual(calls);
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
