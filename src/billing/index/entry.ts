import { z } from "zod";
import { OrgState } from "../../shared/billing-state.ts";
import { Reason } from "../org/record.ts";
import { decodeCursor } from "./cursor.ts";

/** One org as the index knows it: its published state, why, and its deadlines (epoch ms). */
export const IndexEntry = z.object({
  org_id: z.string(),
  state: OrgState,
  reason: Reason,
  since: z.number(),
  version: z.number().int(),
  suspend_at: z.number().nullable(),
  suspended_at: z.number().nullable(),
  pay_url: z.string().nullable().default(null),
  /** The metered features the org holds a plan limit on (feature ids), so the sweep can compare them with Autumn's balances. */
  limits: z.array(z.string()).default([]),
});
export type IndexEntry = z.infer<typeof IndexEntry>;

/** An org's would-be refusals per hour (epoch ms of the hour's start), as its object hands them to the index: at most 24. */
export const WouldRefuseHours = z
  .array(z.object({ hour: z.number().int().nonnegative(), requests: z.number().int().positive().max(Number.MAX_SAFE_INTEGER) }))
  .max(24);
export type WouldRefuseHours = z.infer<typeof WouldRefuseHours>;

/** The overview's list of would-be-refused orgs: the most refused first, at most this many. */
export const WOULD_REFUSE_SHOWN = 50;
/** The overview's lists (due soon, recently suspended, recently restored): at most this many each, from each shard and merged. */
export const OVERVIEW_LISTED = 20;

/** One org on the overview's would-be-refused list: its requests in the last 24 h, and the latest hour among them. */
export type WouldRefuseOrg = { org_id: string; requests: number; last_hour: number };

/**
 * Where a page of `OrgIndex.list` starts: the `next_cursor` of the page before, opaque to callers. The admin
 * API and the console check a cursor with this schema (a 400 `invalid_request` otherwise) and hand it over as
 * it came; only the index reads what is inside (cursor.ts: the state and the last row's sort key, base64url).
 */
export const IndexCursor = z.string().refine((cursor) => decodeCursor(cursor) !== null, "cursor must be a next_cursor from a previous page");
export type IndexCursor = z.infer<typeof IndexCursor>;
