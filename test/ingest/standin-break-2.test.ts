import { describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type DependencyFailure } from "../../src/ingest/request/gate.ts";
import { entry, heldSources, T, turns } from "../support/gate-fakes.ts";

/**
 * A second breaker on TtlCache.standIn (76b9cb2): a failed lookup's decision is stored only when the real answer it was
 * taken from (`basis`) is still the one held and no held read began after it; otherwise the failing request answers
 * from what is held. Where that meets version-first ordering, stand-in vs stand-in, the KV-down path and the hammering
 * bound. (holds): the promise held; (fixed): the test asserts the promise and failed on 76b9cb2. The fix orders a
 * stand-in by what its decision was made from (the version it knew, when its lookup began), as real answers are.
 * Left: an object call that takes longer than failOpenTtlMs to fail stores a decision already expired (the gate's clock
 * is the request's `now`), so the next request asks the object again.
 */

const { stateTtlMs, confirmTtlMs, failOpenTtlMs, staleWhileRefreshMs } = GATE_TIMINGS;
const ORG = "org_sb2";

const brief = (v: { suspended: boolean; source: string }) => ({ suspended: v.suspended, source: v.source });

describe("a refused stand-in answers from what is held", () => {
  for (const [name, gap] of [["begun at the same moment", 0], ["the failing one begun later", 1]] as const) {
    /**
     * Cold isolate. A's KV read (mirror v6 ok) is slow. The org is suspended at v7 (published) and its object goes
     * down. B reads the mirror: v7 suspended, nothing newer heard → the object (fails). A's older v6 ok lands while B
     * waits; B's unconfirmed refusal is refused (basis undefined ≠ A's answer) and B answers A's v6 ok: the v7 suspension
     * B read is dropped, and the org is accepted from memory for stateTtlMs. Before 76b9cb2 B's refusal was stored.
     */
    it(`(fixed) an OLDER real answer (v6 ok, begun first) landing while a v7-suspended lookup waits on a failing object lets the suspended org through for stateTtlMs (${name})`, async () => {
      const gate = new IngestGate();
      const { state, sources, held } = heldSources();
      state.mirror.set(ORG, entry("ok", { version: 6 }));
      state.holdKv = true;
      const a = gate.verdict(ORG, sources, T);
      await turns();
      state.holdKv = false;
      state.mirror.set(ORG, entry("suspended", { version: 7 }));
      state.object.set(ORG, entry("suspended", { version: 7 }));
      state.objectDown = true;
      state.holdObject = true;
      const b = gate.verdict(ORG, sources, T + gap);
      await turns();
      expect(held.map((h) => h.what)).toEqual(["kv", "object"]);
      held.shift()!.release();
      expect(brief(await a)).toEqual({ suspended: false, source: "mirror" });
      held.shift()!.release();
      const failed = await b;
      state.holdObject = false;
      const next = await gate.verdict(ORG, sources, T + gap + 1);
      // The mirror said suspended at v7 and nothing newer was heard: the suspension stands while the object is down.
      expect({ failed: failed.suspended, next: next.suspended, later: (await gate.verdict(ORG, sources, T + stateTtlMs - 1)).suspended }).toEqual({ failed: true, next: true, later: true });
    });
  }

  /** Three lookups over a held ok (v6, object) and a lagging mirror (v5 suspended): B fails, A lands the object's re-suspension (v7), C fails. */
  it("(holds) three lookups: fail, real (v7 suspended), fail: the late failure answers the real answer, is neither counted nor logged, and the object is asked once more only after it expires", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("ok", { version: 6 }));
    expect((await gate.verdict(ORG, sources, T)).suspended).toBe(false);
    state.object.set(ORG, entry("suspended", { version: 7 })); // re-suspended; its publication fails
    const t1 = T + stateTtlMs + staleWhileRefreshMs + 1;
    state.holdObject = true;
    state.objectDown = true;
    const b = gate.verdict(ORG, sources, t1);
    await turns();
    state.objectDown = false;
    const a = gate.verdict(ORG, sources, t1);
    await turns();
    state.objectDown = true;
    const c = gate.verdict(ORG, sources, t1 + 1);
    await turns();
    expect(held.map((h) => h.what)).toEqual(["object", "object", "object"]);
    held.shift()!.release();
    expect(brief(await b)).toEqual({ suspended: false, source: "fail_open" });
    held.shift()!.release();
    expect(brief(await a)).toEqual({ suspended: true, source: "object" });
    held.shift()!.release();
    expect(brief(await c)).toEqual({ suspended: true, source: "memory" });
    state.holdObject = false;
    expect(gate.counters).toMatchObject({ objectCalls: 4, failOpens: 1, unconfirmedRefusals: 0 });
    expect(events.map((e) => e.decision)).toEqual(["accept"]);
    expect((await gate.verdict(ORG, sources, t1 + confirmTtlMs - 1)).suspended).toBe(true);
    expect(gate.counters.objectCalls).toBe(4);
    // A's suspension expired: the object (down) is asked once, the suspension stands unconfirmed, held for failOpenTtlMs.
    const after = t1 + confirmTtlMs;
    expect(brief(await gate.verdict(ORG, sources, after))).toEqual({ suspended: true, source: "unconfirmed" });
    expect((await gate.verdict(ORG, sources, after + failOpenTtlMs - 1)).suspended).toBe(true);
    expect(gate.counters).toMatchObject({ objectCalls: 5, unconfirmedRefusals: 1 });
  });

  it("(holds) a paying org (object ok v6 over a lagging suspended mirror v5): a slow object answer begun before the payment (v5 suspended) landing during a failing lookup does not refuse it", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("suspended", { version: 5 }));
    state.holdObject = true;
    const slow = gate.verdict(ORG, sources, T); // the object says suspended v5; slow to come back
    await turns();
    state.holdObject = false;
    state.object.set(ORG, entry("ok", { version: 6 })); // paid; publication fails
    expect(brief(await gate.verdict(ORG, sources, T + 1))).toEqual({ suspended: false, source: "object" });
    state.objectDown = true;
    state.holdObject = true;
    const t1 = T + 1 + stateTtlMs + staleWhileRefreshMs + 1;
    const b = gate.verdict(ORG, sources, t1); // lagging v5 suspended, newer ok v6 → object (fails)
    await turns();
    held.shift()!.release(); // the slow v5 suspension lands: older than v6, not stored
    await slow;
    held.shift()!.release();
    expect(brief(await b)).toEqual({ suspended: false, source: "fail_open" });
    expect((await gate.verdict(ORG, sources, t1 + failOpenTtlMs - 1)).suspended).toBe(false);
  });
});

describe("stand-in vs stand-in", () => {
  /**
   * Held: ok v6 (the object, over a lagging suspended mirror v5). Object down. B (t1) reads the lagging mirror v5:
   * newer ok → object (fails) → fail open. The org is re-suspended at v7 and published. C (t1 + 1) reads v7 suspended,
   * nothing newer → object (fails) → unconfirmed refusal. C's failure lands first, B's last: both have basis v6, B's
   * at is not before v6's read, so B's fail-open replaces C's refusal. Stand-ins are ordered by when they land, not by
   * version or by when their lookups began.
   */
  async function race() {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const world = heldSources();
    const { state, sources, held } = world;
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("ok", { version: 6 }));
    expect((await gate.verdict(ORG, sources, T)).suspended).toBe(false);
    const t1 = T + stateTtlMs + staleWhileRefreshMs + 1;
    state.objectDown = true;
    state.holdObject = true;
    const b = gate.verdict(ORG, sources, t1);
    await turns();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("suspended", { version: 7 }));
    const c = gate.verdict(ORG, sources, t1 + 1);
    await turns();
    expect(held.map((h) => h.what)).toEqual(["object", "object"]);
    held[1]!.release();
    expect(brief(await c)).toEqual({ suspended: true, source: "unconfirmed" });
    held[0]!.release();
    const bv = await b;
    held.splice(0);
    state.holdObject = false;
    return { gate, world, events, t1, bv };
  }

  it("(fixed) an earlier-begun lookup that read a lagging mirror (v5) lands its fail-open over a later one's unconfirmed v7 suspension: the suspended org is accepted for failOpenTtlMs", async () => {
    const { gate, world, t1 } = await race();
    const next = await gate.verdict(ORG, world.sources, t1 + 2);
    const later = await gate.verdict(ORG, world.sources, t1 + failOpenTtlMs - 1);
    expect({ next: next.suspended, later: later.suspended }).toEqual({ next: true, later: true });
  });

  it("(fixed) ... then KV goes down too: the isolate saw the v7 suspension, yet the org is failed open (last_verdict 'suspended', decision 'accept') for the whole outage", async () => {
    const { gate, world, events, t1 } = await race();
    world.state.kvDown = true;
    const outcomes: boolean[] = [];
    for (let t = t1 + failOpenTtlMs + staleWhileRefreshMs; t < t1 + 60_000; t += failOpenTtlMs + staleWhileRefreshMs) outcomes.push((await gate.verdict(ORG, world.sources, t)).suspended);
    const kvEvents = events.filter((e) => e.dependency === "kv");
    // The promise: with KV and the object both down, a suspension the isolate saw stands.
    expect({ allRefused: outcomes.every((s) => s), kvAccepts: kvEvents.filter((e) => e.decision === "accept").length }).toEqual({ allRefused: true, kvAccepts: 0 });
  });
});

describe("the KV-down path and the hammering bound", () => {
  /**
   * Cold burst at T: C's KV read says suspended (v5); B1..B3's KV reads fail. C's object call fails first: its
   * unconfirmed refusal is held until T + failOpenTtlMs. Then B1..B3's KV failures land: each peeks a suspension and
   * puts it to the object, although a failed object call's decision is held.
   */
  it("(fixed) KV failures landing after a held unconfirmed refusal each call the (down) object again instead of answering the held decision", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("suspended", { version: 5 }));
    state.objectDown = true;
    state.holdKv = true;
    const c = gate.verdict(ORG, sources, T);
    await turns();
    state.kvDown = true;
    const bs = [0, 1, 2].map(() => gate.verdict(ORG, sources, T));
    await turns();
    expect(held.map((h) => h.what)).toEqual(["kv", "kv", "kv", "kv"]);
    held.shift()!.release();
    expect(brief(await c)).toEqual({ suspended: true, source: "unconfirmed" });
    expect(gate.counters.objectCalls).toBe(1);
    held.splice(0).forEach((h) => h.release());
    const answers = await Promise.all(bs);
    expect(answers.every((v) => v.suspended)).toBe(true);
    // One object call for the failure; the held decision answers the rest.
    expect({ objectCalls: gate.counters.objectCalls, unconfirmedRefusals: gate.counters.unconfirmedRefusals }).toEqual({ objectCalls: 1, unconfirmedRefusals: 1 });
  });

  it("(holds) a refused stand-in stores nothing: once the real answer that refused it expires, one request asks the object and its decision is held for failOpenTtlMs", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    // Cold burst: A's object call answers suspended v5, B's fails; A lands first.
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("suspended", { version: 5 }));
    state.holdObject = true;
    const a = gate.verdict(ORG, sources, T);
    await turns();
    state.objectDown = true;
    const b = gate.verdict(ORG, sources, T);
    await turns();
    held.shift()!.release();
    expect(brief(await a)).toEqual({ suspended: true, source: "object" });
    held.shift()!.release();
    expect(brief(await b)).toEqual({ suspended: true, source: "memory" });
    state.holdObject = false;
    expect(gate.counters).toMatchObject({ objectCalls: 2, unconfirmedRefusals: 0 });
    const expiry = T + confirmTtlMs;
    for (let t = expiry; t < expiry + failOpenTtlMs; t += 100) expect((await gate.verdict(ORG, sources, t)).suspended).toBe(true);
    expect(gate.counters).toMatchObject({ objectCalls: 3, unconfirmedRefusals: 1 });
  });
});
