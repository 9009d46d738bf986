import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GATE_TIMINGS, IngestGate, type DependencyFailure } from "../../src/ingest/request/gate.ts";
import { gate as isolateGate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import type { IngestKeyRecord } from "../../src/shared/ingest-key.ts";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { ingestWithEnv, mintKey, override } from "../support/ingest.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";
import { entry, heldSources, keyedSources, T, turns, until } from "../support/gate-fakes.ts";

/**
 * A third breaker on the gate's final verdict-cache rules (82c9862, ede26ae): the stamp rule (`{ at, firm }`, a failed
 * lookup's decision stored with stamp 0), the fail-open and unconfirmed decisions made from `peek`, equal `now`s, late
 * answers, capacity, and the key cache against revocation. Tests marked (fixed) fail on the code they were written
 * against (b5fcb27); (holds) tests pin what held.
 *
 * The root of the first three defects was a failed lookup's entry stored with stamp 0: it forgot the read of the real
 * answer it replaced, so any older real answer landing after it was stored. Fixed: a stand-in keeps the read it
 * replaces (TtlCache.standIn); real answers that began at the same moment are ordered by the entries' per-org `version`;
 * the key cache is stamped too.
 */

const { confirmTtlMs, stateTtlMs, failOpenTtlMs, staleWhileRefreshMs, keyTtlMs } = GATE_TIMINGS;


// ---- the stamp rule: a failed lookup's stamp 0 forgets what a newer real answer said ----

describe("the stamp rule across a failed lookup (stamp 0)", () => {
  /**
   * Lookup A begins at T: the object says "suspended" (the org has not paid yet); its answer is slow to come back.
   * The org pays. Lookup B (T + 1, nothing stored yet, so its own) reads the mirror: ok, firm, stamped T + 1. KV and
   * the object go down. When B's ok expires, C fails open (last known ok, stamp 0): documented. Then A lands: its
   * stamp T is older than B's T + 1, but the held entry is C's with stamp 0, so A's suspension is stored. From then
   * on every lookup peeks "suspended", puts the org to its object (down) and refuses it, unconfirmed, for the whole
   * outage: an org this isolate last heard paying (from a real answer newer than A's) is refused. Rule 2 ("an older
   * real answer never replaces a newer real answer") and the documented fail-open ("KV down and last seen ok:
   * accept") both break; the failure event says last_verdict "suspended".
   */
  it("(fixed) a paid org: a slow suspension that began before the payment lands after a fail-open and is refused through the rest of a KV + object outage", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources, held } = heldSources();
    state.mirror.set("org_p", entry("suspended"));
    state.object.set("org_p", entry("suspended"));
    state.holdObject = true;
    const slow = gate.verdict("org_p", sources, T); // the object says suspended; slow to come back
    await turns();
    expect(held.map((h) => h.what)).toEqual(["object"]);
    state.holdObject = false;
    state.object.set("org_p", entry("ok", { version: 2 })); // paid
    state.mirror.set("org_p", entry("ok", { version: 2 }));
    expect(await gate.verdict("org_p", sources, T + 1)).toMatchObject({ suspended: false, source: "mirror" }); // told: paid
    state.kvDown = true;
    state.objectDown = true;
    const c = T + 1 + stateTtlMs;
    expect(await gate.verdict("org_p", sources, c)).toMatchObject({ suspended: false, source: "fail_open", last_known: expect.objectContaining({ state: "ok" }) });
    held[0]!.release();
    expect(await slow).toMatchObject({ suspended: true, source: "object" }); // that request's own answer: fine
    // Still inside the outage: the isolate last heard (from its newest real answer) that the org paid.
    const d = c + failOpenTtlMs;
    expect(await gate.verdict("org_p", sources, d)).toMatchObject({ suspended: false, source: "fail_open" });
    expect(await gate.verdict("org_p", sources, d + failOpenTtlMs)).toMatchObject({ suspended: false });
    expect(events.map((e) => e.last_verdict)).toEqual(["ok", "ok", "ok"]);
  });

  /**
   * The mirror image, for a suspended org. Lookup A begins at T and reads the mirror: ok (not yet suspended); the read
   * is slow. The org is suspended; lookup B (T + 1) hears it from the mirror and the object confirms it: firm, T + 1.
   * KV and the object go down; when B's confirmation expires, C peeks "suspended", cannot reach the object and refuses
   * (unconfirmed, stamp 0): documented. Then A's older ok lands over C's entry. The isolate accepts the org from memory
   * (source "memory"), then, KV still down, peeks "ok" and fails open with last_known ok for the whole outage: a
   * suspension this isolate saw confirmed is let through, outside the documented fail-open.
   */
  it("(fixed) a suspended org: a slow mirror ok that began before the suspension lands after an unconfirmed refusal, and the org is let through the rest of a KV + object outage", async () => {
    const events: DependencyFailure[] = [];
    const gate = new IngestGate({ onDependencyFailure: (e) => events.push(e) });
    const { state, sources, held } = heldSources();
    state.holdKv = true;
    const slow = gate.verdict("org_s", sources, T); // the mirror says ok; slow to come back
    await turns();
    expect(held.map((h) => h.what)).toEqual(["kv"]);
    state.holdKv = false;
    state.mirror.set("org_s", entry("suspended", { version: 2 })); // suspended
    state.object.set("org_s", entry("suspended", { version: 2 }));
    expect(await gate.verdict("org_s", sources, T + 1)).toMatchObject({ suspended: true, source: "object" }); // 402, confirmed
    state.kvDown = true;
    state.objectDown = true;
    const c = T + 1 + confirmTtlMs;
    expect(await gate.verdict("org_s", sources, c)).toMatchObject({ suspended: true, source: "unconfirmed" }); // 402, documented
    held[0]!.release();
    // That request's own answer: its read (ok) lags the suspension the isolate heard since, which stands (the object is down).
    expect(await slow).toMatchObject({ suspended: true, source: "unconfirmed" });
    // The outage goes on; nothing has said the org paid since the object confirmed the suspension.
    for (const at of [c + 1, c + failOpenTtlMs, T + stateTtlMs, T + stateTtlMs + failOpenTtlMs]) expect(await gate.verdict("org_s", sources, at)).toMatchObject({ suspended: true });
    expect(events.every((e) => e.decision === "refuse" && e.last_verdict === "suspended")).toBe(true);
  });

  /**
   * The same loss with the object up: lookup A (object: suspended) began before the payment; B read the mirror's ok;
   * C's KV read failed (stamp 0); A lands last and is stored. The isolate, which had just let the org through, refuses
   * it again from memory, but only until A's own confirmation expires (T + confirmTtlMs), plus the stale window while a
   * re-read hangs: within the payment bound (about a second plus one lookup and the stale window).
   */
  it("(holds) with the object up, the older suspension landed over a fail-open refuses a paid org no longer than confirmTtlMs + staleWhileRefreshMs after A began", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_w", entry("suspended"));
    state.object.set("org_w", entry("suspended"));
    state.holdObject = true;
    const a = gate.verdict("org_w", sources, T);
    await turns();
    state.holdObject = false;
    state.object.set("org_w", entry("ok", { version: 2 }));
    state.mirror.set("org_w", entry("ok", { version: 2 }));
    state.holdKv = true;
    const b = gate.verdict("org_w", sources, T + 1); // the mirror: ok
    await turns();
    state.kvDown = true;
    const c = gate.verdict("org_w", sources, T + 2); // its KV read fails
    await turns();
    expect(held.map((h) => h.what)).toEqual(["object", "kv", "kv"]);
    held[1]!.release();
    expect(await b).toMatchObject({ suspended: false, source: "mirror" });
    held[2]!.release();
    // B's answer landed while C's read failed: C answers from it (no fail-open decision is needed).
    expect(await c).toMatchObject({ suspended: false, source: "memory", state: "ok" });
    held[0]!.release();
    expect(await a).toMatchObject({ suspended: true, source: "object" });
    state.kvDown = false;
    void gate.verdict("org_w", sources, T + confirmTtlMs); // a re-read that hangs
    await turns();
    state.holdKv = false;
    expect(await gate.verdict("org_w", sources, T + confirmTtlMs + staleWhileRefreshMs)).toMatchObject({ suspended: false });
    held.splice(0).forEach((h) => h.release());
  });
});

// ---- equal stamps ----

describe("equal now values (a burst shares one now)", () => {
  /**
   * Two requests of one burst (same now T) each look up the org: nothing is held yet. The first's object call is made
   * before the payment (suspended), the second's after (ok, a higher version). The ok lands first; the suspension
   * lands after it with the same stamp, and `set` lets an equal stamp replace. In memory: refused for confirmTtlMs
   * (within the payment bound), but then through a KV + object outage the isolate peeks "suspended" and refuses the
   * org it was last told had paid, for the whole outage. With equal stamps the last to land wins; the entries'
   * `version` (monotonic per org) would tell which is newer, and the gate never looks at it.
   */
  it("(fixed) the object's ok and an older suspension with the same now: the older one, landing last, is kept and refuses a paid org through a KV + object outage", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_e", entry("suspended")); // the mirror lags the payment throughout
    state.object.set("org_e", entry("suspended"));
    state.holdObject = true;
    const before = gate.verdict("org_e", sources, T);
    await turns();
    state.object.set("org_e", entry("ok", { version: 2 })); // paid
    const after = gate.verdict("org_e", sources, T);
    await turns();
    expect(held).toHaveLength(2);
    held[1]!.release();
    expect(await after).toMatchObject({ suspended: false, source: "object" });
    held[0]!.release();
    expect(await before).toMatchObject({ suspended: true, source: "object" });
    state.holdObject = false;
    state.kvDown = true;
    state.objectDown = true;
    expect(await gate.verdict("org_e", sources, T + stateTtlMs)).toMatchObject({ suspended: false, source: "fail_open" });
  });

  it("(holds) a failed lookup landing after a real answer of the same moment answers from it and does not replace it", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_q", entry("overdue", { suspend_at: T + 60_000 }));
    state.holdKv = true;
    const real = gate.verdict("org_q", sources, T);
    await turns();
    state.kvDown = true;
    const failing = gate.verdict("org_q", sources, T); // its read was made with KV down: it fails when released
    await turns();
    held[0]!.release();
    expect(await real).toMatchObject({ state: "overdue", source: "mirror" });
    held[1]!.release();
    expect(await failing).toMatchObject({ suspended: false, source: "memory", state: "overdue" });
    expect(await gate.verdict("org_q", sources, T + 1)).toMatchObject({ source: "memory", state: "overdue" });
    expect(gate.counters.failOpens).toBe(0);
  });
});

// ---- late answers ----

describe("a real answer landing after it already expired", () => {
  it("(holds) is not served from memory: the next request looks up for itself", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_l", entry("suspended"));
    state.object.set("org_l", entry("suspended"));
    state.holdObject = true;
    const slow = gate.verdict("org_l", sources, T);
    await turns();
    state.holdObject = false;
    state.object.set("org_l", entry("ok"));
    held[0]!.release();
    await slow; // stored, expired since T + confirmTtlMs
    const calls = gate.counters.objectCalls;
    expect(await gate.verdict("org_l", sources, T + 10 * confirmTtlMs)).toMatchObject({ suspended: false, source: "object" });
    expect(gate.counters.objectCalls).toBe(calls + 1);
  });

  it("(holds) a very old answer landing after a newer firm one is refused, however long it took", async () => {
    const gate = new IngestGate();
    const { state, sources, held } = heldSources();
    state.mirror.set("org_v", entry("suspended"));
    state.object.set("org_v", entry("suspended"));
    state.holdObject = true;
    const old = gate.verdict("org_v", sources, T);
    await turns();
    state.holdObject = false;
    state.object.set("org_v", entry("ok"));
    const later = T + 60_000;
    expect(await gate.verdict("org_v", sources, later)).toMatchObject({ suspended: false, source: "object" });
    held[0]!.release();
    expect(await old).toMatchObject({ suspended: true });
    expect(await gate.verdict("org_v", sources, later + 1)).toMatchObject({ suspended: false, source: "memory" });
    state.kvDown = true;
    state.objectDown = true;
    expect(await gate.verdict("org_v", sources, later + stateTtlMs)).toMatchObject({ suspended: false, source: "fail_open" });
  });
});

// ---- the key cache against revocation ----

describe("the key cache (stamp 0 always) against revocation", () => {
  const record: IngestKeyRecord = { org_id: "org_k", key_id: "ik_1", created_at: T };

  it("(holds) a key lookup that began before the revocation and lands after a later one saw it revoked: the key stops by that lookup's start + keyTtlMs", async () => {
    const gate = new IngestGate();
    const { keys, sources } = keyedSources();
    keys.records.set("h(k)", record);
    keys.hold = true;
    const slow = gate.checkKey("k", sources, T);
    await turns();
    keys.hold = false;
    keys.records.delete("h(k)"); // revoked
    expect(await gate.checkKey("k", sources, T + 1)).toEqual({ ok: false, code: "unknown_ingest_key" });
    keys.held[0]!();
    expect(await slow).toMatchObject({ ok: true }); // its own request: fine
    // Documented: within a minute (isolate ≤ 30 s plus KV's edge cache). The old record is kept to T + keyTtlMs.
    expect(await gate.checkKey("k", sources, T + keyTtlMs)).toEqual({ ok: false, code: "unknown_ingest_key" });
  });

  /**
   * The isolate saw the key revoked (a null from KV); it must not come back during a KV outage ("auth_unavailable:
   * the key store is unreachable for a key this isolate never saw"; a key it saw revoked is not one it may trust).
   * The late record (stamp 0 always replaces) overwrites the null, and a KV outage then serves it from `peek` for as
   * long as the outage lasts, far past the minute the revocation is promised in.
   */
  it("(fixed) a revoked key this isolate saw revoked comes back for a whole KV outage after an older lookup lands", async () => {
    const gate = new IngestGate();
    const { keys, sources } = keyedSources();
    keys.records.set("h(k)", record);
    keys.hold = true;
    const slow = gate.checkKey("k", sources, T);
    await turns();
    keys.hold = false;
    keys.records.delete("h(k)");
    expect(await gate.checkKey("k", sources, T + 1)).toEqual({ ok: false, code: "unknown_ingest_key" });
    keys.held[0]!();
    await slow;
    keys.down = true;
    for (const at of [T + keyTtlMs, T + 10 * 60_000]) expect(await gate.checkKey("k", sources, at)).toMatchObject({ ok: false });
  });

  it("(holds) without the race, a key seen revoked stays refused through a KV outage (503 auth_unavailable, not let through)", async () => {
    const gate = new IngestGate();
    const { keys, sources } = keyedSources();
    keys.records.set("h(k)", record);
    expect(await gate.checkKey("k", sources, T)).toMatchObject({ ok: true });
    keys.records.delete("h(k)");
    expect(await gate.checkKey("k", sources, T + keyTtlMs)).toEqual({ ok: false, code: "unknown_ingest_key" });
    keys.down = true;
    expect(await gate.checkKey("k", sources, T + 10 * 60_000)).toEqual({ ok: false, code: "auth_unavailable" });
  });
});

// ---- capacity ----

describe("capacity eviction against stamps and refreshing", () => {
  it("(holds) an old answer refused by the stamp rule evicts nothing", async () => {
    const gate = new IngestGate({ capacity: 2 });
    const { state, sources, held } = heldSources();
    state.holdKv = true;
    const old = gate.verdict("a", sources, T);
    await turns();
    state.holdKv = false;
    for (const org of ["a", "b"]) await gate.verdict(org, sources, T + 10);
    held[0]!.release();
    await old;
    expect(await gate.verdict("b", sources, T + 11)).toMatchObject({ source: "memory" });
    expect(await gate.verdict("a", sources, T + 11)).toMatchObject({ source: "memory" });
  });

  it("(holds) pruning dead re-reads past capacity leaves a live re-read standing: its org is still answered stale, not looked up again", async () => {
    const gate = new IngestGate({ capacity: 2 });
    const { state, sources, held } = heldSources();
    state.mirror.set("a", entry("ok"));
    await gate.verdict("a", sources, T);
    state.holdKv = true;
    void gate.verdict("a", sources, T + stateTtlMs); // the live re-read
    for (let i = 0; i < 5; i++) void gate.verdict(`dead_${i}`, sources, T - 3_000); // re-reads that never end
    await turns();
    state.holdKv = false;
    await gate.verdict("c", sources, T + stateTtlMs + 1); // prunes
    expect((gate as unknown as { refreshing: Map<string, unknown> }).refreshing.size).toBeLessThanOrEqual(2);
    const reads = gate.counters.mirrorReads;
    expect(await gate.verdict("a", sources, T + stateTtlMs + 2)).toMatchObject({ suspended: false, source: "memory" });
    expect(gate.counters.mirrorReads).toBe(reads);
    held.splice(0).forEach((h) => h.release());
  });
});

// ---- through the Worker ----

describe("through the Worker: a paid org through a KV + object outage", () => {
  const clock = fakeClock();
  beforeEach(() => {
    isolateGate.reset();
    logThrottle.reset();
  });
  afterEach(deleteAllAlarms);

  const TRACES = { headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] };

  it("(fixed) a 402 whose object answer was slow, landing after a fail-open, refuses (402) an org this isolate had let through as paid, for the rest of the outage", async () => {
    const org = uniqueOrg("grb_paid");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const control = { holdObject: false, kvDown: false, objectDown: false, waiting: [] as (() => void)[] };
    const objects = env.ORG_BILLING;
    const kv = env.BILLING_STATE;
    const workerEnv = {
      ...env,
      ORG_BILLING: {
        getByName: (name: string) => {
          const stub = objects.getByName(name);
          return {
            verdict: async () => {
              if (control.objectDown) throw new Error("object down");
              // The object answers now (what it says at the call); the answer comes back when released.
              const answer = stub.verdict();
              if (control.holdObject) await new Promise<void>((resolve) => control.waiting.push(resolve));
              return answer;
            },
          };
        },
      },
      BILLING_STATE: {
        get: (...args: Parameters<KVNamespace["get"]>) => {
          if (control.kvDown) return Promise.reject(new Error("KV GET failed: 503"));
          return (kv.get as (...a: unknown[]) => Promise<unknown>)(...args);
        },
      },
    };
    const t0 = clock.now;
    control.holdObject = true;
    const first = ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES }); // cold key: carried suspended, object asked
    await until(() => control.waiting.length === 1);
    control.holdObject = false;
    await override(org, "clear"); // paid
    expect(((await kv.get(billingStateKey(org), "json")) as { state: string }).state).toBe("ok");
    clock.set(t0 + 1);
    expect((await ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES })).status).toBe(200); // the mirror: ok
    control.kvDown = true;
    control.objectDown = true;
    clock.set(t0 + 1 + stateTtlMs);
    expect((await ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES })).status).toBe(200); // fail open, last seen ok
    control.waiting.splice(0).forEach((r) => r());
    expect((await first).status).toBe(402); // its own answer, from before the payment
    clock.set(t0 + 1 + stateTtlMs + failOpenTtlMs);
    expect((await ingestWithEnv(workerEnv, "/v1/traces", { key, ...TRACES })).status).toBe(200);
  });
});
