import type { OrgBilling } from "../../src/billing/org-billing.ts";
import { gateSources } from "../../src/ingest/request/sources.ts";
import { IngestGate } from "../../src/ingest/request/gate.ts";
import { billingStateKey } from "../../src/shared/storage-keys.ts";

type Env = { ORG_BILLING: DurableObjectNamespace<OrgBilling>; BILLING_STATE: KVNamespace; INGEST_KEYS: KVNamespace };

const ORGS = 200;
const orgId = (path: string, i: number) => `bench_${path}_${i}`;

/**
 * GET /setup: mirror entries for the KV path (ok) and the object path (suspended, confirmed
 * by each org's object). GET /run?path=kv|object: one cold gate decision per org, timed.
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
