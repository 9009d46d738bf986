import { describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type DependencyFailure } from "../../src/ingest/request/gate.ts";
import type { IngestKeyRecord } from "../../src/shared/ingest-key.ts";
import { entry, heldSources, keyedSources, T, turns } from "../support/gate-fakes.ts";

/**
 * A fourth breaker on the gate's read ordering (8117fd5): `at` first, `version` only between firm answers with equal
 * `at`. Tests marked (fixed) fail on 8117fd5; (holds) pin what held. The findings share one root: the per-org
 * version is consulted only as a tie-break, so a KV read that lags what this isolate already heard (an older version)
 * is trusted whenever its lookup began later, and the key cache (no version at all) keeps whichever equal-`at`
 * answer lands last. Fixed: verdicts are ordered by version first (a read that lags what the isolate heard never
 * replaces it, and a lookup whose KV read lags uses the newer answer the isolate holds); equal-`at` key answers
 * order a revocation over a record.
 */

const { confirmTtlMs, stateTtlMs, failOpenTtlMs, keyTtlMs } = GATE_TIMINGS;
const ORG = "org_o";


describe("a KV read older (lower version) than what the isolate heard, begun later", () => {
  it("(fixed) overlapping: the object's suspension (v5) lands after a later-begun lagging mirror ok (v4) and is refused; the stale ok is then held and answered from memory for stateTtlMs", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("suspended", { version: 5 }));
    state.holdObject = true;
    const a = gate.verdict(ORG, sources, T);
    await turns(); // A read the mirror (suspended v5); its object call is under way
    state.holdObject = false;
    state.mirror.set(ORG, entry("ok", { version: 4 })); // a lagging edge copy: before the suspension
    expect((await gate.verdict(ORG, sources, T + 1)).suspended).toBe(false); // B's own read: KV lag, documented
    held[0]!.release();
    expect(await a).toMatchObject({ suspended: true, source: "object" }); // the isolate has now heard v5: suspended
    // The cache should not keep an answer older than the truth the isolate heard.
    expect((await gate.verdict(ORG, sources, T + 2)).suspended).toBe(true);
  });

  it("(fixed) carried: after the object confirmed a suspension (v5), a cold key's stale carried ok (v4) is cached; KV then goes down and the org is failed open for the whole outage while its object (up) says suspended", async () => {
    const events: DependencyFailure[] = [];
    const g = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("suspended", { version: 5 }));
    expect(await g.verdict(ORG, sources, T)).toMatchObject({ suspended: true, source: "object" });
    // A second key of the org, cold in this isolate; its KV entry sat in the edge cache from before the suspension.
    await g.verdict(ORG, sources, T + confirmTtlMs, entry("ok", { version: 4 }));
    state.kvDown = true;
    for (const at of [T + confirmTtlMs + stateTtlMs, T + 10 * 60_000]) {
      expect((await g.verdict(ORG, sources, at)).suspended).toBe(true);
    }
    // With KV down, the suspension this isolate saw was put to the object, which answered: nothing was decided without it.
    expect(events).toEqual([]);
  });

  it("(fixed) a paid org: the object said ok (v5) over a lagging mirror suspension (v4); the object goes down while the edge still lags, and the org is refused (unconfirmed) though the isolate heard the payment", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 4 })); // the edge has not yet seen the payment
    state.object.set(ORG, entry("ok", { version: 5 }));
    expect(await gate.verdict(ORG, sources, T)).toMatchObject({ suspended: false, source: "object" });
    state.objectDown = true;
    // Heard paid at T; promised refusal bound is confirmTtlMs + staleWhileRefreshMs + one lookup.
    for (const at of [T + stateTtlMs, T + stateTtlMs + failOpenTtlMs]) {
      expect((await gate.verdict(ORG, sources, at)).suspended).toBe(false);
    }
    // The lagging mirror's suspension went to the object, which was down; the payment the isolate heard (newer) decided.
    expect(events[0]).toMatchObject({ dependency: "object", last_verdict: "ok", decision: "accept" });
  });

  it("(holds) equal at: a never-mirrored org's null (v0) landing after the object's suspension (v1) does not replace it", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.holdKv = true;
    const a = gate.verdict(ORG, sources, T); // reads null (never mirrored), held
    await turns();
    state.holdKv = false;
    state.mirror.set(ORG, entry("suspended", { version: 1 }));
    state.object.set(ORG, entry("suspended", { version: 1 }));
    expect(await gate.verdict(ORG, sources, T)).toMatchObject({ suspended: true, source: "object" });
    held[0]!.release();
    // Its own answer too is the newer truth the isolate heard meanwhile, not its stale read.
    expect((await a).suspended).toBe(true);
    expect(await gate.verdict(ORG, sources, T + 1)).toMatchObject({ suspended: true, source: "memory" });
  });

  it("(holds) equal at: a cold key's stale carried ok (v4) that landed before the object's suspension (v5) of a lookup begun at the same moment is replaced by it", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.object.set(ORG, entry("suspended", { version: 5 }));
    state.holdObject = true;
    const a = gate.verdict(ORG, sources, T);
    await turns();
    state.holdObject = false;
    expect((await gate.verdict(ORG, sources, T, entry("ok", { version: 4 }))).suspended).toBe(false);
    held[0]!.release();
    expect((await a).suspended).toBe(true);
    expect(await gate.verdict(ORG, sources, T + 1)).toMatchObject({ suspended: true, source: "memory" });
  });
});

describe("the key cache: equal at (a burst shares one now)", () => {
  const record: IngestKeyRecord = { org_id: ORG, key_id: "ik_1", created_at: T };

  it("(fixed) a revocation this isolate saw (null) is undone by a stale record from the same burst landing after it; through a KV outage the revoked key is accepted", async () => {
    const gate = new IngestGate();
    const { keys, sources } = keyedSources();
    keys.records.set("h(k)", record);
    keys.hold = true;
    const stale = gate.checkKey("k", sources, T); // a lagging read: the record, slow to come back
    await turns();
    keys.hold = false;
    keys.records.delete("h(k)"); // revoked
    expect(await gate.checkKey("k", sources, T)).toEqual({ ok: false, code: "unknown_ingest_key" });
    keys.held[0]!();
    await stale;
    keys.down = true;
    expect(await gate.checkKey("k", sources, T + keyTtlMs + 10 * 60_000)).toMatchObject({ ok: false });
  });

  it("(holds) a key minted after an unknown answer was cached: a slow null begun earlier does not put 'unknown' back over the record", async () => {
    const gate = new IngestGate();
    const { keys, sources } = keyedSources();
    keys.hold = true;
    const slow = gate.checkKey("k", sources, T); // null: not minted yet
    await turns();
    keys.hold = false;
    keys.records.set("h(k)", record); // minted
    expect(await gate.checkKey("k", sources, T + 1)).toMatchObject({ ok: true });
    keys.held[0]!();
    expect(await slow).toEqual({ ok: false, code: "unknown_ingest_key" });
    expect(await gate.checkKey("k", sources, T + 2)).toMatchObject({ ok: true });
  });
});
