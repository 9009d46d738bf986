import { z } from "zod";
import { OrgState } from "../../shared/billing-state.ts";
import { FeatureLimit } from "../../shared/usage.ts";
import { Evidence } from "../autumn/answers.ts";

/** Why an org is in its state: stable codes for machines, explained by `reasonMessage`. */
export const Reason = z.enum([
  "never_synced",
  "not_past_due",
  "in_grace_period",
  "grace_elapsed_awaiting_autumn",
  "grace_elapsed_never_paid",
  "lapsed_customer",
  "exempt",
  "manual_suspend",
]);
export type Reason = z.infer<typeof Reason>;

/** One support override at a time: an exemption (also what `unsuspend` records) or a manual suspension. */
export const Override = z.object({
  action: z.enum(["exempt", "suspend"]),
  /** Epoch ms; null = until cleared. */
  until: z.number().nullable(),
  note: z.string(),
  at: z.number(),
});
export type Override = z.infer<typeof Override>;

/** What caused a read: a webhook, the object's own alarm, an operator, the reconciliation sweep, or a usage report whose answer showed a balance used up. */
export const Source = z.enum(["webhook", "alarm", "admin", "reconcile", "metering"]);
export type Source = z.infer<typeof Source>;
/** Every history source, as docs/storage.md lists them (a test holds the doc to this list). */
export const HISTORY_SOURCES = Source.options;

/**
 * A metered feature the org has used up, as its last Autumn read showed (README, "Plan limits"):
 * what the mirror carries, plus when it started and the balance that showed it.
 */
export const LimitRecord = FeatureLimit.extend({
  since: z.number(),
  usage: z.number(),
  granted: z.number(),
});
export type LimitRecord = z.infer<typeof LimitRecord>;

/** The org's whole billing state, one document in the object's SQLite storage. */
export const OrgRecord = z.object({
  org_id: z.string(),
  state: OrgState,
  /** When the org entered `state`. */
  since: z.number(),
  reason: Reason,
  /** Start of the overdue clock; non-null exactly while the last good read saw past due. */
  anchor: z.number().nullable(),
  /**
   * When Tollgate first saw this overdue period (its first read showing past due): the start of
   * the minimum notice. Null exactly when `anchor` is.
   */
  noticed_at: z.number().nullable().default(null),
  /**
   * When the deadline in force was first published: the start of its minimum notice (policy.ts,
   * `noticeStart`). Null while no deadline applies; in records from before it, `noticed_at` stands in.
   */
  notice_from: z.number().nullable().default(null),
  /**
   * The deadline: max(anchor + grace period, notice_from + minimum notice, the end of an exemption).
   * Null when none applies: not past due, a lapsed customer, suspended by hand, or exempt without end.
   */
  suspend_at: z.number().nullable(),
  suspended_at: z.number().nullable(),
  /** Past due but has paid money before: normal dunning, never suspended by this policy. */
  lapsed: z.boolean(),
  evidence: Evidence.nullable(),
  /** `customer_unknown`: the last read found no such customer in Autumn (kept state, flagged; README "Reconciliation"). */
  last_sync: z.object({ at: z.number(), ok: z.boolean(), error: z.string().nullable(), customer_unknown: z.boolean().optional() }).nullable(),
  /** Consecutive failed Autumn reads, for backoff. */
  failures: z.number().int().nonnegative(),
  /** A fresh Autumn read is owed no later than this (webhook received, or retry after a failure). */
  retry_at: z.number().nullable(),
  /**
   * Short follow-up reads after a webhook that left the org not ok: Autumn and Stripe settle in
   * steps, so a payment may show a little after its webhook. `step` indexes FOLLOW_UP_STEPS_MS from `from`.
   */
  follow_up: z.object({ from: z.number(), step: z.number().int().nonnegative() }).nullable().default(null),
  override: Override.nullable(),
  /** The notice (by `notice_from`; by `noticed_at`, or the anchor, in older records) whose suspension warning was queued. */
  warned_anchor: z.number().nullable().default(null),
  /** The metered features used up at the last good read; empty when none (or metering is off). */
  limits: z.array(LimitRecord).default([]),
  /** Increases on every change. */
  version: z.number().int().nonnegative(),
  /** The version at which the mirrored fields (state, since, deadlines) last changed. */
  projection_version: z.number().int().nonnegative(),
  mirror: z.object({ version: z.number().int().nonnegative(), retry_at: z.number().nullable(), failures: z.number().int().nonnegative() }),
});
export type OrgRecord = z.infer<typeof OrgRecord>;

export function newOrgRecord(orgId: string, now: number): OrgRecord {
  return {
    org_id: orgId,
    state: "ok",
    since: now,
    reason: "never_synced",
    anchor: null,
    noticed_at: null,
    notice_from: null,
    suspend_at: null,
    suspended_at: null,
    lapsed: false,
    evidence: null,
    last_sync: null,
    failures: 0,
    retry_at: null,
    follow_up: null,
    override: null,
    warned_anchor: null,
    limits: [],
    version: 0,
    projection_version: 0,
    mirror: { version: 0, retry_at: null, failures: 0 },
  };
}

/**
 * The deadline the world is told (the mirror entry, the index, the events, the warning): only one
 * that can still fire, that is in grace, elapsed and awaiting Autumn, or exempt with an end (the
 * deadline that applies once the exemption ends). Lapsed customers, exemptions without end and
 * suspended orgs have none. The one home of this rule: every projection calls it.
 */
export function publishedDeadline(record: Pick<OrgRecord, "state" | "reason" | "suspend_at" | "override">): number | null {
  if (record.state !== "overdue") return null;
  if (record.reason === "in_grace_period" || record.reason === "grace_elapsed_awaiting_autumn") return record.suspend_at;
  if (record.reason === "exempt" && record.override?.action === "exempt" && record.override.until !== null) return record.suspend_at;
  return null;
}

/** Where the customer pays (the oldest open invoice's hosted page, https only), shown only while the org is not ok. */
export function payLink(record: Pick<OrgRecord, "state" | "evidence">): string | null {
  return record.state === "ok" ? null : (record.evidence?.pay_url ?? null);
}

/** What a history entry records: a state change, an override, or a plan limit reached or cleared. */
export const HistoryKind = z.enum(["transition", "override", "limit_reached", "limit_cleared"]);
/** Every history kind, as docs/storage.md lists them (a test holds the doc to this list). */
export const HISTORY_KINDS = HistoryKind.options;

export const HistoryEntry = z.object({
  at: z.number(),
  kind: HistoryKind,
  from: OrgState,
  to: OrgState,
  reason: Reason,
  source: Source,
  /** The Svix message id that triggered it, for webhook-driven changes. */
  message_id: z.string().nullable(),
  /** The admin's note, for overrides and admin-driven changes. */
  note: z.string().nullable(),
  override: z.object({ action: z.enum(["exempt", "suspend", "unsuspend", "clear"]), until: z.number().nullable() }).nullable(),
  evidence: Evidence.nullable(),
  /** Plan limit entries only: the feature, when it resets, and the balance that showed it. */
  limit: z.object({ feature_id: z.string(), reset_at: z.number().nullable(), usage: z.number(), granted: z.number() }).nullable().default(null),
});
export type HistoryEntry = z.infer<typeof HistoryEntry>;
/** A history entry as written: fields added later (with defaults) may be left out. */
export type NewHistoryEntry = z.input<typeof HistoryEntry>;

/** One outbound event (events.ts), as sent and as kept in the outbox and dead_letters tables. */
export const NotifyEvent = z.object({
  id: z.string(),
  type: z.enum(["org.overdue", "org.suspension_warning", "org.suspended", "org.restored", "org.limit_reached", "org.limit_cleared"]),
  org_id: z.string(),
  state: OrgState,
  previous_state: OrgState.nullable(),
  reason: Reason,
  deadline: z.string().nullable(),
  suspended_at: z.string().nullable(),
  /** Where the customer pays (https only), while the org is not ok. */
  pay_url: z.string().nullable().default(null),
  /**
   * `org.restored` only: the batches parked while it was suspended (or the backend was down) and
   * what became of them so far; the `waiting` ones are being delivered now. Absent elsewhere.
   */
  parking: z
    .object({
      parked_batches: z.number(),
      parked_bytes: z.number(),
      delivered_batches: z.number(),
      delivered_bytes: z.number(),
      expired_batches: z.number(),
      expired_bytes: z.number(),
      waiting_batches: z.number(),
      waiting_bytes: z.number(),
    })
    .nullable()
    .optional(),
  /**
   * `org.limit_reached` and `org.limit_cleared` only: the metered feature, the signals reported
   * under it, when its balance resets (ISO; null if never) and the balance that showed it.
   */
  limit: z
    .object({ feature_id: z.string(), signals: z.array(z.string()), reset_at: z.string().nullable(), usage: z.number(), granted: z.number() })
    .optional(),
  at: z.string(),
});
export type NotifyEvent = z.infer<typeof NotifyEvent>;

/** An event given up after GIVE_UP_AFTER_MS of refusals (events.ts), kept for the admin view. */
export type DeadLetter = { event: NotifyEvent; attempts: number; error: string; at: number };
