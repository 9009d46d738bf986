import { z } from "zod";
import { OrgState } from "../../shared/billing-state.ts";
import { Reason } from "../org/record.ts";

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
