import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { countingEnv, ingestWithEnv, mintKey, override } from "../support/ingest.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";
import { fakeClock } from "../support/clock.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

fakeClock();

beforeEach(() => gate.reset());
afterEach(deleteAllAlarms);

const send = (workerEnv: object, key: string) =>
  ingestWithEnv(workerEnv, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });

describe("a cold key (issue 11: one KV round trip)", () => {
  it("a paying org's first request costs one KV read: the key entry carries the verdict", async () => {
    const org = uniqueOrg("cold_ok");
    const { key } = await mintKey(org);
    const counting = countingEnv();
    expect((await send(counting.env, key)).status).toBe(200);
    expect(counting.reads).toEqual({ INGEST_KEYS: 1, BILLING_STATE: 0, object: 0 });
  });

  it("a suspended verdict in the key entry is still confirmed by the object (the 1-second payment path)", async () => {
    const org = uniqueOrg("cold_susp");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const counting = countingEnv();
    expect((await send(counting.env, key)).status).toBe(402);
    expect(counting.reads).toEqual({ INGEST_KEYS: 1, BILLING_STATE: 0, object: 1 });

    // Paid (here: support lifts it): the object says so, the key entry may lag; the next confirmation lifts it.
    await override(org, "unsuspend");
    gate.reset();
    const stale = await env.INGEST_KEYS.get(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key)), "json");
    await env.INGEST_KEYS.put(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key)), JSON.stringify({ ...(stale as object), verdict: { state: "suspended", since: 1, version: 1, suspend_at: null, suspended_at: 1, pay_url: null } }));
    expect((await send(countingEnv().env, key)).status).toBe(200);
  });

  it("an entry written before verdicts existed falls back to the org's mirror entry (two reads)", async () => {
    const org = uniqueOrg("cold_old");
    const { key } = await mintKey(org);
    const hashKey = ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key));
    const { verdict: _, ...old } = (await env.INGEST_KEYS.get(hashKey, "json")) as Record<string, unknown>;
    await env.INGEST_KEYS.put(hashKey, JSON.stringify(old));
    const counting = countingEnv();
    expect((await send(counting.env, key)).status).toBe(200);
    expect(counting.reads).toEqual({ INGEST_KEYS: 1, BILLING_STATE: 1, object: 0 });
  });
});
