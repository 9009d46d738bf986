import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { GATE_TIMINGS } from "../../src/ingest/request/gate.ts";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { billingAdmin, ingest, mintKey } from "../support/ingest.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";
import { fakeClock } from "../support/clock.ts";

const clock = fakeClock();

beforeEach(() => {
  gate.reset();
});
afterEach(deleteAllAlarms);

const send = (init: { key?: string | null; headers?: Record<string, string> }) =>
  ingest("/v1/logs", { ...init, headers: { "content-type": "application/json", ...init.headers }, body: OTLP_JSON["/v1/logs"] });

describe("minting, listing and revoking keys (billing admin API)", () => {
  it("returns the key once, stores only its HMAC, and lists ids with creation times", async () => {
    const org = uniqueOrg("keys");
    const minted = await mintKey(org);
    expect(minted.key).toMatch(/^tg_ik_[A-Za-z0-9_-]{43}$/);
    expect(minted.key_id).toMatch(/^ik_[0-9a-f]{16}$/);

    const stored = await env.INGEST_KEYS.get(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, minted.key)), "json");
    // The key's entry carries the org's current verdict (a never-seen org: ok), so a cold key costs one KV read.
    expect(stored).toEqual({ org_id: org, key_id: minted.key_id, created_at: clock.now, verdict: expect.objectContaining({ state: "ok", suspended_at: null }) });
    const { keys } = await env.INGEST_KEYS.list();
    expect(JSON.stringify(keys)).not.toContain(minted.key.slice(6));

    const listed = await (await billingAdmin(`/orgs/${org}/ingest-keys`)).json();
    expect(listed).toEqual({ keys: [{ key_id: minted.key_id, created_at: new Date(clock.now).toISOString() }] });
  });

  it("revokes: 404 for an unknown key id", async () => {
    const org = uniqueOrg("keys");
    const response = await billingAdmin(`/orgs/${org}/ingest-keys/ik_0000000000000000`, { method: "DELETE" });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: "key_not_found" });
  });
});

describe("authentication on the ingest path", () => {
  it("accepts Authorization: Bearer (any case) and x-ingest-key", async () => {
    const org = uniqueOrg("auth");
    const { key } = await mintKey(org);
    expect((await send({ headers: { authorization: `bearer ${key}` } })).status).toBe(200);
    expect((await send({ headers: { "x-ingest-key": key } })).status).toBe(200);
  });

  it.each([
    ["no key", {}, "missing_ingest_key"],
    ["a malformed key", { authorization: "Bearer hunter2" }, "malformed_ingest_key"],
    ["an unknown key", { authorization: `Bearer tg_ik_${"B".repeat(43)}` }, "unknown_ingest_key"],
  ])("401 for %s", async (_name, headers, code) => {
    const response = await send({ headers });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: code });
  });

  it("never reads a key from the query string", async () => {
    const org = uniqueOrg("auth");
    const { key } = await mintKey(org);
    const response = await ingest(`/v1/logs?key=${key}&api_key=${key}`, { headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/logs"] });
    expect(response.status).toBe(401);
  });

  it("a revoked key stops working once the isolate cache expires", async () => {
    const org = uniqueOrg("revoke");
    const { key, key_id } = await mintKey(org);
    expect((await send({ key })).status).toBe(200);
    expect((await billingAdmin(`/orgs/${org}/ingest-keys/${key_id}`, { method: "DELETE" })).status).toBe(200);
    expect((await send({ key })).status).toBe(200);
    clock.set(clock.now + GATE_TIMINGS.keyTtlMs);
    expect((await send({ key })).status).toBe(401);
    expect(await (await billingAdmin(`/orgs/${org}/ingest-keys`)).json()).toEqual({ keys: [] });
  });
});

describe("the pepper's HMAC key", () => {
  it("is cached as the key, never as a promise another request would await: an isolate's first concurrent requests each import it", async () => {
    const imports = vi.spyOn(crypto.subtle, "importKey");
    try {
      const pepper = `pepper-${crypto.randomUUID()}`;
      const [a, b] = await Promise.all([hashIngestKey(pepper, "tg_ik_one"), hashIngestKey(pepper, "tg_ik_one")]);
      expect(a).toBe(b);
      expect(imports).toHaveBeenCalledTimes(2);
      await hashIngestKey(pepper, "tg_ik_two");
      expect(imports).toHaveBeenCalledTimes(2);
    } finally {
      imports.mockRestore();
    }
  });
});
