import { z } from "zod";
import type { MirrorEntry } from "./billing-state.ts";
import { shardName } from "./index-shard.ts";
import { OrgActivity, ACTIVITY_ORGS_PER_MESSAGE, UsageActivity, UsageCounts, UsageSeq, UsageStream } from "./usage.ts";

/**
 * What the two Workers say to each other over RPC: the ingest Worker calls four methods of the
 * org's `OrgBilling` object and one of the index shard `OrgIndex` (both in the billing Worker's script), and nothing else. Both sides import
 * these declarations, so a change to one side's shape fails the other side's type check; the
 * object checks every argument again with the schemas below (it trusts no caller).
 */

/** `verdict()`'s answer: the org's mirror entry, read from the object's storage (the truth behind the KV mirror). */
export type VerdictAnswer = MirrorEntry;

/**
 * One usage batch as the consumer hands it to `recordUsage`: `id` is the queue's message id;
 * `stream` and `seq`, when the message has them, are the batch's own id, which the object dedupes by.
 */
export const UsageDelivery = z
  .object({ id: z.string().min(1), stream: UsageStream.optional(), seq: UsageSeq.optional(), counts: UsageCounts, first_at: z.number(), last_at: z.number(), activity: UsageActivity.optional() })
  .refine((message) => (message.stream === undefined) === (message.seq === undefined), { message: "stream and seq go together" });
export type UsageDelivery = z.infer<typeof UsageDelivery>;
/** One call carries at most this many (a queue batch is at most 100 messages; the bound keeps a bad caller cheap). */
export const UsageDeliveries = z.array(UsageDelivery).max(1_000);

/** `recordUsage`'s answer: refused (the consumer retries the messages) or folded, with how many were new. */
export type RecordUsageAnswer = { ok: true; recorded: number; duplicates: number } | { ok: false; error: string };

/** One parking report: non-negative increments, each optional. Bad input is refused by the RPC, never stored. */
export const ParkingDelta = z
  .object({
    parked_batches: z.number().int().nonnegative(),
    parked_bytes: z.number().int().nonnegative(),
    delivered_batches: z.number().int().nonnegative(),
    delivered_bytes: z.number().int().nonnegative(),
    expired_batches: z.number().int().nonnegative(),
    expired_bytes: z.number().int().nonnegative(),
    /** Batches the upstream refused as invalid (400, 413) during delivery, or discarded (a revoked key's): final, deleted. */
    refused_batches: z.number().int().nonnegative(),
    refused_bytes: z.number().int().nonnegative(),
    /** Absolute, from a listing: the bytes the org has parked now. */
    listed_bytes: z.number().int().nonnegative(),
    /** Absolute, from the same listing: the batches the org has parked now. Absent from older reports (then 0 bytes means none). */
    listed_batches: z.number().int().nonnegative(),
    /** When that listing began (epoch ms); absent: when the report arrives. Parked reports for batches parked before it add nothing. */
    listed_at: z.number().int().nonnegative(),
    /** When the newest batch in this report's `parked_*` counts was parked (epoch ms); absent: when the report arrives. */
    parked_until: z.number().int().nonnegative(),
  })
  .partial();
export type ParkingDelta = z.infer<typeof ParkingDelta>;

/** `recordParking`'s answer: refused (malformed), or the bytes the org has parked now (the ingest Worker's per-org cap). */
export type RecordParkingAnswer = { ok: false } | { ok: true; waiting_bytes: number };

/** `listIngestKeys()`'s answer: the org's active keys (the delivery run discards batches refused with a key revoked since). */
export type IngestKeyListing = { key_id: string; created_at: string }[];

/**
 * The part of `OrgBilling` the ingest Worker may call; the class declares that it implements it,
 * so the billing side cannot drift from it. Plain TypeScript (no Workers types), so the Node tools
 * that read this module type-check too.
 */
export interface OrgBillingRpc {
  verdict(): Promise<VerdictAnswer>;
  recordUsage(messages: UsageDelivery[]): Promise<RecordUsageAnswer>;
  recordParking(delta: ParkingDelta): Promise<RecordParkingAnswer>;
  listIngestKeys(): Promise<IngestKeyListing>;
}

/**
 * The org's object as the ingest Worker reaches it. Its `ORG_BILLING` binding names a class of
 * another script, so the generated type is an untyped namespace: this is the one place it gets
 * the contract's type. Callers must have validated `orgId` (see storage-keys.ts) first.
 */
export function orgBillingRpc(namespace: { getByName(name: string): unknown }, orgId: string): OrgBillingRpc {
  return namespace.getByName(orgId) as OrgBillingRpc;
}

/**
 * One shard's part of one activity message as the consumer hands it to `recordActivity` (shared/usage.ts
 * `ActivityMessage`): `stream` and `seq` are its id, numbered per stream and shard, which the shard dedupes by.
 */
export const ActivityDelivery = z.object({ stream: UsageStream, seq: UsageSeq, orgs: z.array(OrgActivity).min(1).max(ACTIVITY_ORGS_PER_MESSAGE) });
export type ActivityDelivery = z.infer<typeof ActivityDelivery>;
/** One call carries at most this many (a queue batch is at most 100 messages, each with at most one part per shard). */
export const ActivityDeliveries = z.array(ActivityDelivery).max(1_000);

/** `recordActivity`'s answer: refused (the consumer retries the messages) or folded, with how many parts were new. */
export type RecordActivityAnswer = { ok: true; recorded: number; duplicates: number } | { ok: false; error: string };

/** The part of `OrgIndex` (one shard of the index) the ingest Worker may call. */
export interface ActivityShardRpc {
  recordActivity(deliveries: ActivityDelivery[]): Promise<RecordActivityAnswer>;
}

/** An index shard as the ingest Worker's usage consumer reaches it (its `ORG_INDEX` binding names a class of another script). */
export function activityShardRpc(namespace: { getByName(name: string): unknown }, shard: number): ActivityShardRpc {
  return namespace.getByName(shardName(shard)) as ActivityShardRpc;
}
