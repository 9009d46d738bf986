import type { OrgBilling } from "../../src/billing/org/object.ts";
import { gateSources } from "../../src/ingest/request/sources.ts";
import { IngestGate } from "../../src/ingest/request/gate.ts";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import { ingestKeyPepper } from "../../src/billing/config.ts";
import { Publisher, type OrgStore } from "../../src/billing/org/store.ts";
import { NO_PARKING } from "../../src/billing/org/parking.ts";
import { generateIngestKey, hashIngestKey } from "../../src/shared/ingest-key.ts";

type Env = { ORG_BILLING: DurableObjectNamespace<OrgBilling>; BILLING_STATE: KVNamespace; INGEST_KEYS: KVNamespace; INGEST_KEY_PEPPER?: string };

const ORGS = 200;
const orgId = (path: string, i: number) => `bench_${path}_${i}`;

/**
 * GET /setup: mirror entries for the KV path (ok) and the object path (suspended, confirmed
 * by each org's object). GET /run?path=kv|object: one cold gate decision per org, timed.
 * POST /mint {orgs, concurrency}: one ingest key per org, for the cold-keys scenario. The key
 * is generated, hashed and its INGEST_KEYS entry written by the same code as
 * OrgBilling.createIngestKey (generateIngestKey, hashIngestKey, Publisher.writeKey with a
 * fresh org's verdict), many at a time inside workerd. Only the object's own copy of the key
 * (a row in its SQLite) is not made: creating 10,000 objects on disk took ~2 minutes of the
 * bench, and an ok org's request never asks its object (the verdict rides in the key entry).
 */
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/health") return Response.json({ status: "ok" });
    if (url.pathname === "/setup") {
      const now = Date.now();
      for (let i = 0; i < ORGS; i++) {
        await env.BILLING_STATE.put(billingStateKey(orgId("kv", i)), JSON.stringify({ state: "ok", since: now, version: 1, suspend_at: null, suspended_at: null }));
        const suspended = orgId("object", i);
        await env.ORG_BILLING.getByName(suspended).override({ action: "suspend", until: null, note: "gate benchmark" });
        await env.BILLING_STATE.put(billingStateKey(suspended), JSON.stringify({ state: "suspended", since: now, version: 1, suspend_at: null, suspended_at: now }));
      }
      return Response.json({ orgs: ORGS });
    }
    if (url.pathname === "/mint" && request.method === "POST") {
      const { orgs, concurrency = 16 } = (await request.json()) as { orgs: string[]; concurrency?: number };
      const pepper = ingestKeyPepper(env);
      // What a fresh org's object holds when its first key is minted: no record yet, so the
      // publisher writes the verdict of a new record (ok) and nothing parked, as OrgBilling.createIngestKey does.
      const freshOrg = { load: () => null, parking: () => NO_PARKING } as unknown as OrgStore;
      const keys: string[] = new Array(orgs.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < orgs.length) {
            const i = next++;
            const { key, keyId } = generateIngestKey();
            const stored = { key_id: keyId, key_hash: await hashIngestKey(pepper, key), created_at: Date.now() };
            await new Publisher(env as unknown as BillingEnv, freshOrg, (change) => change()).writeKey(orgs[i]!, stored);
            keys[i] = key;
          }
        }),
      );
      return Response.json({ keys });
    }
    if (url.pathname === "/run") {
      const path = url.searchParams.get("path") === "object" ? "object" : "kv";
      const sources = gateSources(env as unknown as IngestEnv, { pepper: "bench" });
      const gate = new IngestGate();
      const rounds = Number(url.searchParams.get("rounds") ?? 3);
      const samples: number[] = [];
      for (let round = 0; round < rounds; round++) {
        gate.reset();
        for (let i = 0; i < ORGS; i++) {
          const started = performance.now();
          const verdict = await gate.verdict(orgId(path, i), sources, Date.now());
          samples.push(performance.now() - started);
          if (verdict.source !== (path === "kv" ? "mirror" : "object") || verdict.suspended !== (path === "object")) {
            return Response.json({ error: `unexpected verdict ${JSON.stringify(verdict)}` }, { status: 500 });
          }
        }
      }
      return Response.json({ path, samples_ms: samples });
    }
    return new Response("not found", { status: 404 });
  },
};
