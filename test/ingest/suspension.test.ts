import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { GATE_TIMINGS } from "../../src/ingest/request/gate.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { ingest, ingestWithEnv, mintKey, outageEnv, override, sink } from "../support/ingest.ts";
import { decodeRpcStatus } from "../support/rpc-status-decode.ts";
import { OTLP_JSON, OTLP_PROTOBUF } from "./fixtures/otlp.ts";
import { fakeClock } from "../support/clock.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";

const clock = fakeClock();

beforeEach(() => {
  gate.reset();
});

afterEach(deleteAllAlarms);

const sendJson = (key: string) => ingest("/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });
const sendProto = (key: string) => ingest("/v1/traces", { key, headers: { "content-type": "application/x-protobuf" }, body: OTLP_PROTOBUF["/v1/traces"] });

async function orgWithKey(prefix: string) {
  const org = uniqueOrg(prefix);
  return { org, key: (await mintKey(org)).key };
}

/**
 * Writes the KV mirror directly, as if it still held an older decision; with `key`, that key's
 * entry carries the same stale verdict (the object writes both in one publication).
 */
async function staleMirror(org: string, state: "ok" | "suspended", key?: string) {
  const entry = { state, since: clock.now, version: 999, suspend_at: null, suspended_at: state === "suspended" ? clock.now : null, pay_url: null };
  await env.BILLING_STATE.put(billingStateKey(org), JSON.stringify(entry));
  if (key !== undefined) await setCarriedVerdict(key, entry);
}

/** Rewrites the verdict a key's KV entry carries; `undefined` makes it an entry from before verdicts existed. */
async function setCarriedVerdict(key: string, verdict: object | undefined) {
  const hashKey = ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key));
  const { verdict: _, ...record } = (await env.INGEST_KEYS.get(hashKey, "json")) as Record<string, unknown>;
  await env.INGEST_KEYS.put(hashKey, JSON.stringify(verdict === undefined ? record : { ...record, verdict }));
}

describe("a suspended org", () => {
  it("gets a final 402 with a machine-readable code in JSON", async () => {
    const { org, key } = await orgWithKey("susp_json");
    await override(org, "suspend");
    const response = await sendJson(key);
    expect(response.status).toBe(402);
    expect(response.headers.get("retry-after")).toBeNull();
    expect(await response.json()).toEqual({
      error: "billing_suspended",
      message: expect.stringMatching(/pay the overdue invoice/i),
      org_id: org,
      suspended_at: new Date(clock.now).toISOString(),
      pay_url: null,
    });
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("gets a google.rpc.Status in protobuf", async () => {
    const { org, key } = await orgWithKey("susp_proto");
    await override(org, "suspend");
    const response = await sendProto(key);
    expect(response.status).toBe(402);
    expect(response.headers.get("content-type")).toBe("application/x-protobuf");
    const status = decodeRpcStatus(new Uint8Array(await response.arrayBuffer()));
    expect(status).toEqual({
      code: 7,
      message: expect.stringMatching(/pay the overdue invoice/i),
      details: [{ typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", reason: "billing_suspended", domain: "tollgate", metadata: { org_id: org, suspended_at: new Date(clock.now).toISOString() } }],
    });
  });

  it("is refused before the body is even looked at", async () => {
    const { org, key } = await orgWithKey("susp_first");
    await override(org, "suspend");
    const response = await ingest("/v1/traces", { key, headers: { "content-type": "text/plain", "content-encoding": "gzip" }, body: "garbage" });
    expect(response.status).toBe(402);
  });

  it("is accepted the moment the object says it paid, even while the mirror still says suspended", async () => {
    const { org, key } = await orgWithKey("just_paid");
    await staleMirror(org, "suspended", key);
    expect((await sendJson(key)).status).toBe(200);
    expect(gate.counters.objectCalls).toBe(1);
  });

  it("is lifted within the confirmation window once the object restores it", async () => {
    const { org, key } = await orgWithKey("lifted");
    await override(org, "suspend");
    expect((await sendJson(key)).status).toBe(402);
    await override(org, "clear");
    await staleMirror(org, "suspended", key);
    clock.set(clock.now + GATE_TIMINGS.confirmTtlMs);
    expect((await sendJson(key)).status).toBe(200);
  });
});

describe("a new suspension reaches the edge", () => {
  it("after the isolate's short TTL: a stale ok is accepted until then", async () => {
    const { org, key } = await orgWithKey("stale_ok");
    expect((await sendJson(key)).status).toBe(200);
    await override(org, "suspend");
    expect((await sendJson(key)).status).toBe(200);
    clock.set(clock.now + GATE_TIMINGS.stateTtlMs - 1);
    expect((await sendJson(key)).status).toBe(200);
    clock.set(clock.now + 1);
    expect((await sendJson(key)).status).toBe(402);
  });
});

describe("the gate's cost for paying orgs", () => {
  // Generous timeout: 1,000 sequential requests on a shared 2-core machine; nothing here is timed.
  it("250 requests of one paying org: one KV read per TTL window, no object call", { timeout: 60_000 }, async () => {
    const { key } = await orgWithKey("steady");
    for (let i = 0; i < 250; i++) expect((await sendJson(key)).status).toBe(200);
    // One KV read in all: the key's entry carried the verdict, so no mirror read.
    expect(gate.counters).toMatchObject({ keyLookups: 1, mirrorReads: 0, carriedVerdicts: 1, objectCalls: 0 });

    clock.set(clock.now + GATE_TIMINGS.stateTtlMs);
    for (let i = 0; i < 10; i++) await sendJson(key);
    expect(gate.counters).toMatchObject({ keyLookups: 1, mirrorReads: 1, objectCalls: 0 });
  });
});

describe("a flood from one suspended org (issue 10, item 4)", () => {
  it("64 concurrent requests, each its own request, once the suspension is known: all 402, and one object call per confirmation", async () => {
    const { org, key } = await orgWithKey("flood");
    await override(org, "suspend");
    expect((await sendJson(key)).status).toBe(402);
    expect(gate.counters).toMatchObject({ carriedVerdicts: 1, objectCalls: 1 });
    clock.set(clock.now + GATE_TIMINGS.confirmTtlMs);
    const responses = await Promise.all(Array.from({ length: 64 }, () => sendJson(key)));
    expect(responses.map((r) => r.status)).toEqual(Array(64).fill(402));
    expect(gate.counters).toMatchObject({ mirrorReads: 1, objectCalls: 2 });
  });
});

describe("when a dependency is down", () => {
  type Outage = { kv: boolean; object: boolean };
  const sendWith = (parts: Outage, key: string) => ingestWithEnv(outageEnv(parts), "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });

  async function warnings<T>(run: () => Promise<T>): Promise<{ result: T; lines: unknown[] }> {
    const lines: unknown[] = [];
    const spy = vi.spyOn(console, "warn").mockImplementation((entry) => void lines.push(entry));
    try {
      return { result: await run(), lines };
    } finally {
      spy.mockRestore();
    }
  }

  it("a suspended org stays refused while its object throws, with the mirror's verdict", async () => {
    const { org, key } = await orgWithKey("object_down");
    await override(org, "suspend");
    const { result: response, lines } = await warnings(() => sendWith({ kv: false, object: true }, key));
    expect(response.status).toBe(402);
    expect(await response.json()).toMatchObject({ error: "billing_suspended", org_id: org, suspended_at: new Date(clock.now).toISOString() });
    expect(lines).toContainEqual(expect.objectContaining({ event: "ingest_refusal_unconfirmed", org_id: org, dependency: "object", decision: "refuse" }));
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("a suspended org stays refused when KV and then the object go down", async () => {
    const { org, key } = await orgWithKey("both_down");
    await override(org, "suspend");
    expect((await sendJson(key)).status).toBe(402);
    clock.set(clock.now + GATE_TIMINGS.confirmTtlMs);
    expect((await sendWith({ kv: true, object: false }, key)).status).toBe(402);
    clock.set(clock.now + GATE_TIMINGS.confirmTtlMs);
    const { result: response, lines } = await warnings(() => sendWith({ kv: true, object: true }, key));
    expect(response.status).toBe(402);
    expect(lines).toContainEqual(expect.objectContaining({ event: "ingest_refusal_unconfirmed", org_id: org, dependency: "kv_and_object", last_verdict: "suspended" }));
  });

  it.each<[string, Outage]>([
    ["KV is down", { kv: true, object: false }],
    ["both are down", { kv: true, object: true }],
  ])("fails open when %s and nothing is known about the org, and logs it", async (_name, parts) => {
    const { org, key } = await orgWithKey("fail_open");
    await override(org, "suspend");
    await setCarriedVerdict(key, undefined); // so the mirror read (the part that is down) is needed
    const { result: response, lines } = await warnings(() => sendWith(parts, key));
    expect(response.status).toBe(200);
    expect(lines).toContainEqual(expect.objectContaining({ event: "ingest_fail_open", org_id: org, dependency: "kv", last_verdict: "none", decision: "accept" }));
  });

  it("keeps accepting an org last seen paying when KV goes down", async () => {
    const { org, key } = await orgWithKey("paying_kv_down");
    expect((await sendJson(key)).status).toBe(200);
    clock.set(clock.now + GATE_TIMINGS.stateTtlMs);
    const { result: response, lines } = await warnings(() => sendWith({ kv: true, object: true }, key));
    expect(response.status).toBe(200);
    expect(lines).toContainEqual(expect.objectContaining({ event: "ingest_fail_open", org_id: org, last_verdict: "ok" }));
  });
});
