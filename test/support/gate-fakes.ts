import { expect } from "vitest";
import type { GateSources } from "../../src/ingest/request/gate.ts";
import type { IngestKeyRecord } from "../../src/shared/ingest-key.ts";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";

/** What the gate's break tests share (test/ingest/gate-*-break.test.ts, cross-request-break.test.ts, standin-break-*.test.ts): a mirror entry, sources that can be held, and a few promise turns. */

export const T = 1_800_000_000_000;

export const entry = (state: MirrorEntry["state"], extra: Partial<MirrorEntry> = {}): MirrorEntry => ({ state, since: T, version: 1, suspend_at: null, suspended_at: state === "suspended" ? T : null, pay_url: null, limits: [], enforcement: null, ...extra });

/**
 * In-memory sources. Each source can be held: a held call takes its answer when it is made (what the object or KV said
 * then) and hands it back only when released, as a slow RPC or read would.
 */
export function heldSources() {
  const state = { mirror: new Map<string, MirrorEntry>(), object: new Map<string, MirrorEntry>(), kvDown: false, objectDown: false, holdKv: false, holdObject: false };
  const held: { what: "kv" | "object"; release: () => void }[] = [];
  const hold = <V>(what: "kv" | "object", holding: boolean, answer: () => V): Promise<V> => {
    let result: { ok: true; value: V } | { ok: false; error: unknown };
    try {
      result = { ok: true, value: answer() };
    } catch (error) {
      result = { ok: false, error };
    }
    const settle = () => (result.ok ? result.value : Promise.reject(result.error));
    if (!holding) return Promise.resolve().then(settle);
    return new Promise<void>((resolve) => held.push({ what, release: resolve })).then(settle) as Promise<V>;
  };
  const sources: GateSources = {
    hashKey: async (key) => `h(${key})`,
    lookupKey: async () => null,
    readMirror: (orgId) =>
      hold("kv", state.holdKv, () => {
        if (state.kvDown) throw new Error("kv down");
        return state.mirror.get(orgId) ?? null;
      }),
    askObject: (orgId) =>
      hold("object", state.holdObject, () => {
        if (state.objectDown) throw new Error("object down");
        return state.object.get(orgId) ?? entry("ok");
      }),
  };
  return { state, sources, held };
}

/** Lets chains of already-settled promises run (no timer). */
export const turns = async () => {
  for (let turn = 0; turn < 30; turn++) await Promise.resolve();
};

/** heldSources with a key store that can be held and taken down too (heldSources' lookupKey always answers null). */
export function keyedSources() {
  const base = heldSources();
  const keys = { records: new Map<string, IngestKeyRecord>(), down: false, hold: false, held: [] as (() => void)[] };
  const sources: GateSources = {
    ...base.sources,
    lookupKey: (hash) => {
      // The answer is taken when the read is made (what KV said then), handed back when released.
      const answer = keys.down ? Promise.reject(new Error("kv down")) : Promise.resolve(keys.records.get(hash) ?? null);
      if (!keys.hold) return answer;
      return new Promise<void>((resolve) => keys.held.push(resolve)).then(() => answer);
    },
  };
  return { ...base, keys, sources };
}

/** Waits (5 ms at a time, about a second at most) until `check` holds, and fails the test if it never does. */
export async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
}
