import { MirrorEntry } from "../../shared/billing-state.ts";
import { orgBillingRpc } from "../../shared/contract.ts";
import { hashIngestKey, IngestKeyRecord } from "../../shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../../shared/storage-keys.ts";
import type { IngestSettings } from "../config.ts";
import type { GateSources } from "./gate.ts";

/** KV edge-cache time for mirror and key reads (Cloudflare's minimum). */
export const KV_CACHE_TTL_SECONDS = 30;

const sourcesByEnv = new WeakMap<object, GateSources>();

/** The gate's real sources: INGEST_KEYS and BILLING_STATE in KV (edge-cached), and the org's object. */
export function gateSources(env: IngestEnv, settings: Pick<IngestSettings, "pepper">): GateSources {
  let sources = sourcesByEnv.get(env);
  if (!sources) {
    sources = {
      hashKey: (key) => hashIngestKey(settings.pepper, key),
      lookupKey: async (hash) => {
        const raw = await env.INGEST_KEYS.get(ingestKeyHashKey(hash), { type: "json", cacheTtl: KV_CACHE_TTL_SECONDS });
        return raw === null ? null : IngestKeyRecord.parse(raw);
      },
      readMirror: async (orgId) => {
        const raw = await env.BILLING_STATE.get(billingStateKey(orgId), { type: "json", cacheTtl: KV_CACHE_TTL_SECONDS });
        return raw === null ? null : MirrorEntry.parse(raw);
      },
      askObject: (orgId) => orgBillingRpc(env.ORG_BILLING, orgId).verdict(),
    };
    sourcesByEnv.set(env, sources);
  }
  return sources;
}
