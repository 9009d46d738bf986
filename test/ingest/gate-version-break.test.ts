import { describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type GateSources } from "../../src/ingest/request/gate.ts";
import type { IngestKeyRecord } from "../../src/shared/ingest-key.ts";
import { entry, heldSources, T, turns } from "../support/gate-fakes.ts";

/**
 * A fifth breaker on version-first ordering (1e123c9). The object answers `verdict()` with its record's version, which
 * it raises on every change (a webhook received, a retry scheduled), projection or not, so an object answer routinely
 * outranks the mirror entry; and a failed publication leaves the mirror at an old version while the object moves on.
 * (fixed) tests fail on 1e123c9; (holds) pin what held.
 */

const { stateTtlMs, failOpenTtlMs, unknownKeyTtlMs, keyTtlMs } = GATE_TIMINGS;
const ORG = "org_v";

describe("a held answer that outranks the mirror", () => {
  it("(fixed) an ok heard from the object (v8) outranks a stuck suspended mirror (v7, publications failing): a re-suspension (object v9) is accepted without asking the object", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    // Suspended at v7 and published; paid at v8, but KV writes fail (the object retries with backoff).
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("ok", { version: 8 }));
    expect((await gate.verdict(ORG, sources, T)).suspended).toBe(false); // mirror suspended → object ok v8: right
    // Suspended again at v9 (its publication fails too): the mirror still says suspended (v7), the object says suspended.
    state.object.set(ORG, entry("suspended", { version: 9 }));
    const later = await gate.verdict(ORG, sources, T + stateTtlMs + 1);
    // Both sources the gate can read say suspended; before 1e123c9 the mirror's suspension went to the object.
    expect(gate.counters.objectCalls).toBe(2);
    expect(later.suspended).toBe(true);
  });

  it("(fixed) ... and it lasts: an hour on, every re-read re-stamps the object's old ok (v8) and the suspended org is still accepted", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("ok", { version: 8 }));
    await gate.verdict(ORG, sources, T);
    state.object.set(ORG, entry("suspended", { version: 9 }));
    let last = await gate.verdict(ORG, sources, T + stateTtlMs + 1);
    for (let t = T + 2 * (stateTtlMs + 1); t < T + 3_600_000; t += 600_000) last = await gate.verdict(ORG, sources, t);
    expect({ suspended: last.suspended, source: last.source }).toEqual({ suspended: true, source: "object" });
  });

  it("(fixed) a paid org (object ok v8 over a lagging suspended mirror v7) refused after a KV blip: the fail-open stand-in hides the held ok from `firm`, so the lagging suspension goes unconfirmed while the object is down", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("ok", { version: 8 }));
    expect((await gate.verdict(ORG, sources, T)).suspended).toBe(false);
    // KV blips: fail open, last_known ok (the stand-in keeps the v8 read).
    state.kvDown = true;
    const blip = await gate.verdict(ORG, sources, T + stateTtlMs + 1);
    expect(blip.source).toBe("fail_open");
    // KV back (still lagging, v7 suspended), object down: the isolate heard v8 ok, as in the fourth breaker's fixed case.
    state.kvDown = false;
    state.objectDown = true;
    const after = await gate.verdict(ORG, sources, T + stateTtlMs + 1 + failOpenTtlMs + 1);
    expect(after.suspended).toBe(false);
  });

  it("(holds) the same without the blip: the held ok (v8) stands over the lagging suspended mirror (v7) while the object is down", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("ok", { version: 8 }));
    await gate.verdict(ORG, sources, T);
    state.objectDown = true;
    const after = await gate.verdict(ORG, sources, T + stateTtlMs + 1);
    // The mirror's suspension went to the object (down); the newer ok the isolate heard decided: accepted, failing open.
    expect({ suspended: after.suspended, source: after.source }).toEqual({ suspended: false, source: "fail_open" });
  });

  it("(holds) a held version above every later read (mirror deleted, or KV null) still caches: one mirror read per stateTtlMs, not one per request", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("ok", { version: 12 }));
    await gate.verdict(ORG, sources, T);
    state.mirror.delete(ORG); // KV answers null (v0) from now on
    const reads = gate.counters.mirrorReads;
    for (let t = T + stateTtlMs + 1; t < T + stateTtlMs + 1 + 4 * stateTtlMs; t += 100) await gate.verdict(ORG, sources, t);
    expect(gate.counters.mirrorReads - reads).toBeLessThanOrEqual(4);
  });

  it("(holds) a held suspension (object v10, webhook-bumped) over a mirror that never reaches v10 is still put to the object, and its payment (v11) lifts it", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("suspended", { version: 10 }));
    expect((await gate.verdict(ORG, sources, T)).suspended).toBe(true);
    state.object.set(ORG, entry("ok", { version: 11 }));
    const paid = await gate.verdict(ORG, sources, T + 1_001);
    expect({ suspended: paid.suspended, source: paid.source }).toEqual({ suspended: false, source: "object" });
  });
});

describe("keys", () => {
  function keyedSources() {
    const base = heldSources();
    const records = new Map<string, IngestKeyRecord>();
    const sources: GateSources = { ...base.sources, lookupKey: async (hash) => records.get(hash) ?? null };
    return { records, sources };
  }

  it("(holds) a key unknown at T (null, rank 1) and minted just after works on the first lookup after unknownKeyTtlMs", async () => {
    const gate = new IngestGate();
    const { records, sources } = keyedSources();
    expect(await gate.checkKey("k", sources, T)).toEqual({ ok: false, code: "unknown_ingest_key" });
    records.set("h(k)", { org_id: ORG, key_id: "key_1", created_at: T + 1 });
    expect((await gate.checkKey("k", sources, T + unknownKeyTtlMs)).ok).toBe(true);
    await turns();
  });

  it("(holds) a revoked key read later (null) replaces the record; a record read at the same moment does not undo it", async () => {
    const gate = new IngestGate();
    const { records, sources } = keyedSources();
    records.set("h(k)", { org_id: ORG, key_id: "key_1", created_at: T });
    expect((await gate.checkKey("k", sources, T)).ok).toBe(true);
    records.delete("h(k)");
    expect((await gate.checkKey("k", sources, T + keyTtlMs)).ok).toBe(false);
  });
});
