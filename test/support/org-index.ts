import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { IndexEntry } from "../../src/billing/index/entry.ts";
import { LEGACY_INDEX_NAME, SHARD_NAMES } from "../../src/shared/index-shard.ts";

/** An index entry as an org's object publishes it: version 1 unless told. */
export function indexEntry(org_id: string, state: IndexEntry["state"], fields: Partial<IndexEntry> = {}): IndexEntry {
  const reason = state === "overdue" ? "in_grace_period" : state === "suspended" ? "grace_elapsed_never_paid" : "not_past_due";
  return { org_id, state, reason, since: 0, version: 1, suspend_at: null, suspended_at: null, pay_url: null, limits: [], ...fields };
}

/** The index's rows of every shard gone (the old single object too), so a test's lists hold only its own orgs. */
export async function emptyIndex(): Promise<void> {
  for (const name of [...SHARD_NAMES, LEGACY_INDEX_NAME]) {
    await runInDurableObject(env.ORG_INDEX.getByName(name), (_instance, state) => {
      for (const table of ["orgs", "org_limits", "would_refuse", "recent_writes"]) state.storage.sql.exec(`DELETE FROM ${table}`);
    });
  }
}

/** The org ids one object of the index holds (by its name: a shard's or the old single object's). */
export async function orgIdsIn(name: string): Promise<string[]> {
  return runInDurableObject(env.ORG_INDEX.getByName(name), (_instance, state) =>
    state.storage.sql.exec<{ org_id: string }>("SELECT org_id FROM orgs ORDER BY org_id").toArray().map((row) => row.org_id),
  );
}

/** The old single "index" object drained into the shards: its drain started and its alarm run until it says drained. */
export async function drainLegacyIndex(): Promise<void> {
  const legacy = env.ORG_INDEX.getByName(LEGACY_INDEX_NAME);
  for (let run = 0; run < 1_000; run++) {
    if ((await legacy.drainStatus()).drained) return;
    await runDurableObjectAlarm(legacy);
  }
  throw new Error("the old index object never said it was drained");
}
