import { describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type DependencyFailure } from "../../src/ingest/request/gate.ts";
import { entry, heldSources, T, turns } from "../support/gate-fakes.ts";

/**
 * A third breaker on the stand-in ordering (b63d15b): stand-ins ordered by the version their decision knew, then when
 * their lookup began; a real answer replaces a stand-in when its rank >= the stand-in's decided rank, whatever its at.
 * (holds): the promise held. (fixed): the test asserts the promise and failed on b63d15b, where a real answer of the
 * stand-in's version replaced it whenever its lookup began; now a stand-in and a real answer are ordered alike.
 */

const { stateTtlMs, confirmTtlMs, failOpenTtlMs, staleWhileRefreshMs, refreshMs } = GATE_TIMINGS;
const ORG = "org_sb3";
const brief = (v: { suspended: boolean; source: string }) => ({ suspended: v.suspended, source: v.source });

describe("steady traffic over a long outage", () => {
  /** Suspended org (v7, confirmed), object down for 10 s; three concurrent requests every 100 ms. */
  it("(holds) a suspended org whose object is down for 10 s: always refused, at most one object call per failOpenTtlMs", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("suspended", { version: 7 }));
    expect(brief(await gate.verdict(ORG, sources, T))).toEqual({ suspended: true, source: "object" });
    state.objectDown = true;
    const start = T + confirmTtlMs;
    const outcomes: boolean[] = [];
    for (let t = start; t < start + 10_000; t += 100) {
      const answers = await Promise.all([0, 1, 2].map(() => gate.verdict(ORG, sources, t)));
      outcomes.push(...answers.map((a) => a.suspended));
    }
    // one call at T, then one per failOpenTtlMs over 10 s: 5
    expect({ allRefused: outcomes.every((s) => s), objectCalls: gate.counters.objectCalls, refusals: gate.counters.unconfirmedRefusals, events: events.length }).toEqual({ allRefused: true, objectCalls: 1 + 5, refusals: 5, events: 5 });
  });

  /** Paid org: object ok v6, mirror lagging at v5 suspended (publication failed); object down for 10 s. */
  it("(holds) a paid org over a lagging mirror whose object is down for 10 s: never refused, at most one object call per failOpenTtlMs", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("ok", { version: 6 }));
    expect(brief(await gate.verdict(ORG, sources, T))).toEqual({ suspended: false, source: "object" });
    state.objectDown = true;
    const start = T + stateTtlMs;
    const outcomes: boolean[] = [];
    for (let t = start; t < start + 10_000; t += 100) {
      const answers = await Promise.all([0, 1, 2].map(() => gate.verdict(ORG, sources, t)));
      outcomes.push(...answers.map((a) => a.suspended));
    }
    expect({ anyRefused: outcomes.some((s) => s), objectCalls: gate.counters.objectCalls, failOpens: gate.counters.failOpens }).toEqual({ anyRefused: false, objectCalls: 1 + 5, failOpens: 5 });
  });

  /** KV and the object take turns being down (2 s each), for a suspended org and for a paid one over a lagging mirror. */
  for (const paid of [false, true]) {
    it(`(holds) alternating KV / object outages over 20 s: a ${paid ? "paid org is never refused" : "suspended org is never accepted"}, and the object is not called per request`, async () => {
      const gate = new IngestGate();
      const { state, sources } = heldSources();
      state.mirror.set(ORG, entry("suspended", { version: 5 }));
      state.object.set(ORG, paid ? entry("ok", { version: 6 }) : entry("suspended", { version: 5 }));
      expect((await gate.verdict(ORG, sources, T)).suspended).toBe(!paid);
      const start = T + stateTtlMs;
      const outcomes: boolean[] = [];
      for (let t = start; t < start + 20_000; t += 100) {
        const phase = Math.floor((t - start) / 2_000) % 2;
        state.kvDown = phase === 0;
        state.objectDown = phase === 1;
        const answers = await Promise.all([0, 1, 2].map(() => gate.verdict(ORG, sources, t)));
        outcomes.push(...answers.map((a) => a.suspended));
      }
      expect(outcomes.every((s) => s === !paid)).toBe(true);
      // 600 requests; at most one object call per (confirm/fail-open) window.
      expect(gate.counters.objectCalls).toBeLessThanOrEqual(1 + 20_000 / confirmTtlMs);
    });
  }
});

describe("a slow real answer that lands already expired", () => {
  /**
   * Suspended org v7. A (at T) asks the object; the object is overloaded and A's call takes ~2.5 s, answering
   * suspended v7. B (T + 2500; A's re-read is past refreshMs, so B reads for itself) asks the object: fails fast →
   * unconfirmed refusal v7, held until T + 4500. A's answer then lands: rank 7 >= 7, so it replaces B's fresh stand-in,
   * "whatever its at", but it expires at T + confirmTtlMs, already past. C (T + 2600) finds nothing held and asks the
   * failing object again, inside B's failOpenTtlMs. Between real answers A's (begun earlier) would not have replaced B's.
   */
  it("(fixed) a slow answer of the stand-in's version no longer replaces a fresh stand-in with an expired entry", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("suspended", { version: 7 }));
    state.holdObject = true;
    const a = gate.verdict(ORG, sources, T);
    await turns();
    state.holdObject = false;
    state.objectDown = true;
    const tb = T + refreshMs + 500;
    expect(brief(await gate.verdict(ORG, sources, tb))).toEqual({ suspended: true, source: "unconfirmed" });
    held.shift()!.release();
    expect(brief(await a)).toEqual({ suspended: true, source: "object" });
    expect(gate.counters.objectCalls).toBe(2);
    const answers = [];
    for (let t = tb + 100; t < tb + failOpenTtlMs; t += 100) answers.push((await gate.verdict(ORG, sources, t)).suspended);
    expect(answers.every((s) => s)).toBe(true);
    // B's decision is held for failOpenTtlMs: no further object call, no second event.
    expect({ objectCalls: gate.counters.objectCalls, events: events.length }).toEqual({ objectCalls: 2, events: 1 });
  });

  /** Same with a paid org over a lagging mirror: B fails open (rank 6); A's slow ok v6 (stateTtlMs) lands: still fresh, fine. */
  it("(holds) a slow ok answer of the same version landing over a fail-open keeps the org accepted and holds", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("ok", { version: 6 }));
    expect((await gate.verdict(ORG, sources, T)).suspended).toBe(false);
    const t0 = T + stateTtlMs;
    state.holdObject = true;
    const a = gate.verdict(ORG, sources, t0);
    await turns();
    state.holdObject = false;
    state.objectDown = true;
    const tb = t0 + refreshMs + 500;
    expect(brief(await gate.verdict(ORG, sources, tb))).toEqual({ suspended: false, source: "fail_open" });
    held.shift()!.release();
    expect((await a).suspended).toBe(false);
    for (let t = tb + 100; t < tb + failOpenTtlMs; t += 100) expect((await gate.verdict(ORG, sources, t)).suspended).toBe(false);
    expect(gate.counters.objectCalls).toBe(3);
  });
});

describe("three concurrent lookups, every landing order", () => {
  const perms = (xs: number[]): number[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x, i) => perms([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p])));
  /**
   * Held: ok v6 from the object over a lagging suspended mirror v5. Object down. Three KV reads, held, each taking what
   * the mirror said when made: B v5 suspended (newer ok v6 → object fails → fail open, rank 6), C v7 suspended
   * (re-suspended → object fails → unconfirmed, rank 7), D v8 ok (paid again → real answer). Whatever the landing order,
   * the org ends accepted (v8) and is not refused after D landed.
   */
  for (const order of perms([0, 1, 2])) {
    it(`(holds) landing order ${order.map((i) => "BCD"[i]).join("")}: the paid v8 answer ends held, no 402 after it landed`, async () => {
      const events: DependencyFailure[] = [];
      const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
      const { state, sources, held } = heldSources();
      state.mirror.set(ORG, entry("suspended", { version: 5 }));
      state.object.set(ORG, entry("ok", { version: 6 }));
      expect((await gate.verdict(ORG, sources, T)).suspended).toBe(false);
      const t1 = T + stateTtlMs + staleWhileRefreshMs + 1;
      state.objectDown = true;
      state.holdKv = true;
      const b = gate.verdict(ORG, sources, t1);
      await turns();
      state.mirror.set(ORG, entry("suspended", { version: 7 }));
      state.object.set(ORG, entry("suspended", { version: 7 }));
      const c = gate.verdict(ORG, sources, t1 + 1);
      await turns();
      state.mirror.set(ORG, entry("ok", { version: 8 }));
      state.object.set(ORG, entry("ok", { version: 8 }));
      const d = gate.verdict(ORG, sources, t1 + 2);
      await turns();
      expect(held.map((h) => h.what)).toEqual(["kv", "kv", "kv"]);
      const lookups = [b, c, d];
      let dLanded = false;
      for (const i of order) {
        held[i]!.release();
        const v = await lookups[i]!;
        if (i === 2) dLanded = true;
        else if (dLanded) expect(v.suspended).toBe(false);
      }
      state.holdKv = false;
      const next = await gate.verdict(ORG, sources, t1 + 3);
      const later = await gate.verdict(ORG, sources, t1 + failOpenTtlMs + 10);
      expect({ next: next.suspended, later: later.suspended }).toEqual({ next: false, later: false });
      // Counted and logged only what was stored.
      expect(gate.counters.failOpens + gate.counters.unconfirmedRefusals).toBe(events.length);
    });
  }
});

describe("legacy entries (version 0)", () => {
  /**
   * Cold isolate; the org's entries carry version 0 (the mirror entry of an org never re-published since versions).
   * A (T) reads the mirror ok v0, slow. The org is suspended (still v0 in this legacy state: the version-first order
   * degenerates to `at`). B (T + 1) reads suspended v0, object down → unconfirmed {T+1, 0}. A's ok {T, 0} lands after:
   * over a stand-in it needs only rank >= 0 "whatever its at", so the older ok replaces the newer suspension; between
   * real answers it would not have (T < T + 1).
   */
  it("(fixed, legacy entries only) an older ok read (v0) landing after a later unconfirmed v0 suspension no longer replaces it", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("ok", { version: 0 }));
    state.holdKv = true;
    const a = gate.verdict(ORG, sources, T);
    await turns();
    state.holdKv = false;
    state.mirror.set(ORG, entry("suspended", { version: 0 }));
    state.object.set(ORG, entry("suspended", { version: 0 }));
    state.objectDown = true;
    expect(brief(await gate.verdict(ORG, sources, T + 1))).toEqual({ suspended: true, source: "unconfirmed" });
    held.shift()!.release();
    await a;
    const next = await gate.verdict(ORG, sources, T + 2);
    expect(next.suspended).toBe(true);
  });
});
