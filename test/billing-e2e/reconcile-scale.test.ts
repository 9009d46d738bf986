import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { partitionByShard, SHARD_NAMES, shardName } from "../../src/shared/index-shard.ts";
import { deleteAllAlarms } from "../support/billing.ts";
import { deleteSweeperAlarm, reconcileNow, sweeper } from "../support/sweep.ts";

// The sweep at the scale of tens of thousands of orgs Tollgate holds and Autumn no longer lists (issue 18: the
// pending hand-overs passed SQLite's 2 MB row limit in one document). About 7 s of CPU: run by `npm run test:e2e`
// beside the other slow checks; the sweep's behaviour is in test/billing/reconcile.test.ts.

afterEach(async () => {
  await deleteAllAlarms();
  await deleteSweeperAlarm();
});

describe("the reconciliation sweep at scale", () => {
  it("keeps tens of thousands of pending hand-overs in rows, not in the sweep's one document", { timeout: 120_000 }, async () => {
    const count = 45_000;
    // Each org's row in its shard of the index (src/shared/index-shard.ts).
    const bulk = Array.from({ length: count }, (_, i) => `bulk_missing_org_${String(i).padStart(6, "0")}`);
    for (const [shard, ids] of partitionByShard(bulk)) {
      await runInDurableObject(env.ORG_INDEX.getByName(shardName(shard)), (_instance, state) => {
        state.storage.transactionSync(() => {
          for (const id of ids) {
            state.storage.sql.exec(
              "INSERT INTO orgs (org_id, state, reason, since, version, suspend_at, suspended_at) VALUES (?, 'suspended', 'grace_elapsed_never_paid', 0, 1, NULL, 0)",
              id,
            );
          }
        });
      });
    }
    try {
      const held = await reconcileNow();
      expect(held.status).toBe("held");
      expect(held.pending_hand_overs).toBeGreaterThanOrEqual(count);
      expect(held.would_restore.missing_from_autumn).toBeGreaterThanOrEqual(count);
      expect(held.would_restore_sample.length).toBe(20);
      // The sweep's document stays small (SQLite refuses a row over 2 MB): the hand-overs are rows.
      const docSize = await runInDurableObject(sweeper(), (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT MAX(LENGTH(doc)) AS n FROM sweeps").one().n);
      expect(docSize).toBeLessThan(20_000);
    } finally {
      for (const name of SHARD_NAMES) {
        await runInDurableObject(env.ORG_INDEX.getByName(name), (_instance, state) => void state.storage.sql.exec("DELETE FROM orgs WHERE org_id LIKE 'bulk_missing_org_%'").toArray());
      }
      await reconcileNow(); // discards the held sweep; nothing is missing any more
    }
  });
});
