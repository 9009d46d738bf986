/**
 * Which `OrgIndex` object holds an org. The index was one object, written by every org's object on each
 * publication of a non-ok org: at a hundred thousand non-ok orgs that one object meets a Durable Object's
 * throughput (about 1,000 requests/s) and holds every row. It is now INDEX_SHARDS objects, the org's shard
 * chosen by a stable hash of its id, and readers fan out to all of them.
 *
 * Why 16: each shard then takes a sixteenth of the writes (a burst of 16,000 publications a second before
 * one shard meets the 1,000 requests/s), and a read that fans out (the console's overview, a page of a
 * list, the sweep's last step) costs 16 parallel calls, which stay within a Worker's 1,000 subrequests and
 * keep the merge small (16 × a page). A hundred thousand non-ok orgs are about 6,000 rows a shard.
 *
 * Changing the number moves almost every org to another shard. The count is part of each shard's name
 * (`index/16/03`), so a new count starts on new, empty objects: the rows must be handed over first, as the
 * single "index" object hands its rows to these shards (LEGACY_INDEX_NAME, object.ts `drain`), and readers
 * must fall back to the old layout until that is done. Never change the hash for the same reason.
 */
export const INDEX_SHARDS = 16;

/** The one object the index was before it was sharded: drained into the shards after the deploy (object.ts). */
export const LEGACY_INDEX_NAME = "index";

/** FNV-1a (32-bit) over the id's UTF-8 bytes: stable across isolates, runtimes and deploys, unlike any seeded hash. */
export function hashOrgId(orgId: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(orgId)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export function shardOf(orgId: string): number {
  return hashOrgId(orgId) % INDEX_SHARDS;
}

export function shardName(shard: number): string {
  return `index/${INDEX_SHARDS}/${String(shard).padStart(2, "0")}`;
}

/** Every shard's name, in shard order. */
export const SHARD_NAMES: readonly string[] = Array.from({ length: INDEX_SHARDS }, (_, shard) => shardName(shard));

export function shardNameOf(orgId: string): string {
  return shardName(shardOf(orgId));
}

/** `ids` split by shard (shard number to its ids), so each shard is asked only about its own orgs. */
export function partitionByShard(ids: readonly string[]): Map<number, string[]> {
  const parts = new Map<number, string[]>();
  for (const id of ids) {
    const shard = shardOf(id);
    const part = parts.get(shard);
    if (part) part.push(id);
    else parts.set(shard, [id]);
  }
  return parts;
}
