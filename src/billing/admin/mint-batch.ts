import { log, logWarn } from "../../shared/log.ts";
import { MAX_ACTIVE_KEYS } from "../org/store.ts";
import { orgBilling } from "../org/object.ts";
import { mapBounded } from "../../shared/fan-out.ts";
import type { MintBatchResult, MintedKey, MintFailure } from "./mint-answer.ts";

/**
 * The batch mint (`POST /admin/ingest-keys:batch`, docs/admin-api.md): one new key per org, each minted by
 * its org's object exactly as a single mint is. Objects are separate: there is no transaction across them,
 * so each org succeeds or fails on its own and the answer says which.
 */

/** Object calls in flight at once: enough to overlap the objects' KV writes, few enough to spare the Worker's connections. */
export const MINT_CONCURRENCY = 16;

/** Failures named in the batch's log line: enough to find the pattern, bounded however large the batch. */
const LOGGED_FAILURES = 10;

export async function mintKeys(env: BillingEnv, orgs: readonly string[], pepper: string): Promise<MintBatchResult> {
  const started = Date.now();
  const outcomes = await mapBounded(orgs, MINT_CONCURRENCY, async (orgId): Promise<MintedKey | MintFailure> => {
    try {
      const minted = await orgBilling(env, orgId).createIngestKey(pepper);
      if (!minted.ok) return { org_id: orgId, error: "too_many_keys", message: `org ${orgId} already has ${MAX_ACTIVE_KEYS} active ingest keys: revoke one first` };
      return { org_id: orgId, key_id: minted.key_id, key: minted.key, created_at: minted.created_at };
    } catch (error) {
      return { org_id: orgId, error: "unavailable", message: `the org's object failed: ${error instanceof Error ? error.message : String(error)}; send this org again` };
    }
  });
  const keys = outcomes.filter((outcome): outcome is MintedKey => "key" in outcome);
  const failed = outcomes.filter((outcome): outcome is MintFailure => "error" in outcome);
  // One line per batch (each key's own line is the object's `ingest_key_created`); never a key.
  const fields = { event: "admin_keys_batch", orgs: orgs.length, minted: keys.length, failed: failed.length, ms: Date.now() - started };
  if (failed.length === 0) log(fields);
  else logWarn({ ...fields, too_many_keys: failed.filter((f) => f.error === "too_many_keys").length, unavailable: failed.filter((f) => f.error === "unavailable").length, first_failed: failed.slice(0, LOGGED_FAILURES).map(({ org_id, error, message }) => ({ org_id, error, message })) });
  return { keys, failed };
}
