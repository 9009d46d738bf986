import type { ActivityDelivery, RecordActivityAnswer } from "../../shared/contract.ts";
import type { ActivityRow } from "../usage/activity.ts";
import type { ListedState } from "./cursor.ts";
import type { IndexEntry, WouldRefuseHours, WouldRefuseOrg } from "./entry.ts";

/** An entry with the key it is listed by, so the fan-out can merge shards' rows in the same order. */
export type KeyedEntry = IndexEntry & { sort_key: number };

/** What the sweep compares with Autumn: an org's state, and the features it holds a plan limit on. */
export type HeldEntry = Pick<IndexEntry, "org_id" | "state" | "reason" | "since" | "limits">;

/** The console overview, its lists of `E`: each shard's share (`OverviewPart`) and, merged, the index's (`Overview`). */
export type OverviewOf<E> = {
  counts: Record<string, number>;
  due_soon: E[];
  recently_suspended: E[];
  recently_restored: E[];
  would_refuse: WouldRefuseOrg[];
};
/** One shard's (or the old single object's) share of the console overview, its rows with their sort keys for the merge. */
export type OverviewPart = OverviewOf<KeyedEntry>;

/** One org's rows as the single "index" object hands them to its shard (`absorb`), or a bench seeds them. */
export type HandedOrg = {
  org_id: string;
  org: Omit<IndexEntry, "org_id" | "limits" | "pay_url"> | null;
  limits: { features: string[]; version: number; at: number } | null;
  would_refuse: { hour: number; requests: number }[];
};

/**
 * What one `OrgIndex` object answers over RPC: `OrgIndex` (object.ts) implements it, the client (sharded.ts)
 * calls it, so neither module imports the other's.
 */
export interface IndexShard {
  upsert(entry: IndexEntry): Promise<void>;
  recordWouldRefuse(orgId: string, hours: WouldRefuseHours): Promise<{ ok: boolean }>;
  recordActivity(deliveries: ActivityDelivery[]): Promise<RecordActivityAnswer>;
  activityOf(orgId: string, now: number): Promise<ActivityRow[]>;
  heldAmong(ids: string[]): Promise<HeldEntry[]>;
  restrictedCount(): Promise<number>;
  page(query: { state: ListedState; after: { key: number; orgId: string } | null; limit: number }): Promise<KeyedEntry[]>;
  notOkAmong(ids: string[]): Promise<Pick<IndexEntry, "org_id" | "state" | "reason">[]>;
  notOk(): Promise<Pick<IndexEntry, "org_id" | "state" | "reason" | "since">[]>;
  overview(now: number, horizonMs: number): Promise<OverviewPart>;
  holding(ids: string[]): Promise<string[]>;
  storageStats(): Promise<{ database_bytes: number; orgs: number }>;
  absorb(orgs: HandedOrg[]): Promise<{ absorbed: number }>;
  legacyDrained(): Promise<void>;
  drainStatus(): Promise<{ drained: boolean }>;
}
