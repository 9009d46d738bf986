import { z } from "zod";
import { FeatureLimit } from "./usage.ts";

/** The three states of an org's billing state machine. */
export const OrgState = z.enum(["ok", "overdue", "suspended"]);
export type OrgState = z.infer<typeof OrgState>;

/**
 * Whether refusals are carried out (`enforce`) or only counted and logged while the data goes through
 * (`observe`): each Worker's ENFORCEMENT, and an org's own override of it (a canary; issue 21).
 */
export const EnforcementMode = z.enum(["enforce", "observe"]);
export type EnforcementMode = z.infer<typeof EnforcementMode>;

/**
 * What the OrgBilling object mirrors to KV (`BILLING_STATE`) after every committed change,
 * and what the ingest Worker reads on its hot path. Times are epoch milliseconds.
 */
export const MirrorEntry = z.object({
  state: OrgState,
  since: z.number(),
  version: z.number().int().nonnegative(),
  suspend_at: z.number().nullable(),
  suspended_at: z.number().nullable(),
  /** Where the customer pays: the hosted page of the oldest open invoice of the past-due base plan (https only), while not ok. */
  pay_url: z.string().nullable().default(null),
  /**
   * The metered features the org has used up (docs/metering.md, "Plan limits"), whatever ENFORCE_LIMITS says:
   * the ingest Worker decides whether to refuse. Empty when none (and in entries written before limits existed).
   */
  limits: z.array(FeatureLimit).default([]),
  /** The org's own enforcement mode, overriding the Workers' ENFORCEMENT; null (and in older entries): theirs. */
  enforcement: EnforcementMode.nullable().default(null),
  /**
   * Why the org is in its state: the object's reason code (e.g. `in_grace_period`, `manual_suspend`), for the
   * customer's status sentence. Absent in entries written before it. Among `ok` orgs it may lag (never_synced or
   * not_past_due: no publication is owed for that alone).
   * Optional (not defaulted) so an entry built without it, like those written before it, still types.
   */
  reason: z.string().optional(),
  /**
   * What the org has parked and not yet delivered (README, "Parking"), as the object last heard it, with when
   * it last changed (epoch ms). Published with every entry, but a change to it alone rewrites the entry at most
   * once a minute (org/object.ts, recordParking). Absent in entries written before it, or with nothing ever parked.
   */
  parked: z.object({ batches: z.number().int().nonnegative(), bytes: z.number().int().nonnegative(), updated_at: z.number().nullable() }).optional(),
});
export type MirrorEntry = z.infer<typeof MirrorEntry>;
