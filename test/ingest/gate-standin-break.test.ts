import { describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate } from "../../src/ingest/request/gate.ts";
import { entry, heldSources, T, turns } from "../support/gate-fakes.ts";

/**
 * A review of the gate (2026-12-03): a failed lookup's decision (a stand-in) was stored over a real answer that another
 * lookup, running at the same time, had brought in while the failed one waited on the object. A stand-in is now ordered
 * by what its decision knew (the version, when its lookup began); a newer answer that landed meanwhile wins.
 */

const { failOpenTtlMs } = GATE_TIMINGS;
const ORG = "org_standin";

/** Two lookups of one org at `first` and `second`, each asking the object (held); the first call answers, the second fails, in that order. */
async function racedLookups(gate: IngestGate, world: ReturnType<typeof heldSources>, first: number, second: number) {
  const { state, sources, held } = world;
  state.holdObject = true;
  const one = gate.verdict(ORG, sources, first);
  await turns();
  state.objectDown = true;
  const two = gate.verdict(ORG, sources, second);
  await turns();
  expect(held.map((h) => h.what)).toEqual(["object", "object"]);
  held.shift()!.release();
  const answered = await one;
  held.shift()!.release();
  const failed = await two;
  state.holdObject = false;
  return { answered, failed };
}

describe("a stand-in never replaces a real answer that landed while its lookup waited", () => {
  for (const [name, gap] of [["begun at the same moment", 0], ["the failing one begun later", 1]] as const) {
    it(`a payment the object confirmed is not taken back by a concurrent lookup whose object call failed (${name})`, async () => {
      const gate = new IngestGate();
      const world = heldSources();
      // Paid at v6; KV still says suspended (v5), as it does until the publication lands.
      world.state.mirror.set(ORG, entry("suspended", { version: 5 }));
      world.state.object.set(ORG, entry("ok", { version: 6 }));
      const { answered, failed } = await racedLookups(gate, world, T, T + gap);
      expect(answered).toMatchObject({ suspended: false, source: "object" });
      // The failing request hears the payment that landed while it waited, and the isolate keeps it.
      expect({ suspended: failed.suspended, source: failed.source }).toEqual({ suspended: false, source: "memory" });
      const next = await gate.verdict(ORG, world.sources, T + gap + 1);
      expect({ suspended: next.suspended, source: next.source }).toEqual({ suspended: false, source: "memory" });
      expect(gate.counters).toMatchObject({ objectCalls: 2, unconfirmedRefusals: 0, failOpens: 0 });
    });
  }

  it("a re-suspension the object confirmed is not replaced by a concurrent lookup's fail-open", async () => {
    const gate = new IngestGate();
    const world = heldSources();
    const { state, sources } = world;
    // The isolate heard ok (v8) from the object over a lagging suspended mirror (v7)…
    state.mirror.set(ORG, entry("suspended", { version: 7 }));
    state.object.set(ORG, entry("ok", { version: 8 }));
    expect((await gate.verdict(ORG, sources, T)).suspended).toBe(false);
    // …then the org was suspended again (v9), its publication failing too: the mirror still says v7.
    state.object.set(ORG, entry("suspended", { version: 9 }));
    const later = T + 60_000;
    const { answered, failed } = await racedLookups(gate, world, later, later);
    expect(answered).toMatchObject({ suspended: true, source: "object" });
    // Without the object, the held ok (v8) would let the failing request through; the suspension that landed meanwhile is newer.
    expect({ suspended: failed.suspended, source: failed.source }).toEqual({ suspended: true, source: "memory" });
    // The next requests within failOpenTtlMs must hear the object's suspension, not the fail-open.
    const next = await gate.verdict(ORG, sources, later + failOpenTtlMs - 1);
    expect(next.suspended).toBe(true);
  });

  it("(holds) with nothing landing meanwhile, a failed lookup's decision is still held for failOpenTtlMs", async () => {
    const gate = new IngestGate();
    const { state, sources } = heldSources();
    state.mirror.set(ORG, entry("suspended", { version: 5 }));
    state.objectDown = true;
    expect(await gate.verdict(ORG, sources, T)).toMatchObject({ suspended: true, source: "unconfirmed" });
    expect((await gate.verdict(ORG, sources, T + failOpenTtlMs - 1)).suspended).toBe(true);
    expect(gate.counters.objectCalls).toBe(1);
  });
});
