import { z } from "zod";
import { EnforcementMode, OrgState } from "../../shared/billing-state.ts";
import { FeatureLimit, type UsageFeatures } from "../../shared/usage.ts";
import { Evidence, exhausted, isAutumnTime, meteredFeatures, type AutumnBalance, type BillingFacts } from "../autumn/answers.ts";

// The org's record and every pure rule over it: the stored documents' schemas (the record, its history,
// the outbound events), then the rules that read or change a record. Pure and free of Workers types, so
// the Node tools (the CLI, the storage doc's test) read it too; the object and its store do the I/O.

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
   * When the deadline in force was first published: the start of its minimum notice (`noticeStart`,
   * below). Null while no deadline applies; in records from before it, `noticed_at` stands in.
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
  /** The org's enforcement override (a canary against the Workers' ENFORCEMENT), set by an operator with a note; null: none. */
  enforcement: z.object({ mode: EnforcementMode, note: z.string(), at: z.number() }).nullable().default(null),
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
    enforcement: null,
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
  /** Enforcement override entries only (kind `override`, `override` null): the mode set; `default` cleared it (issue 21). */
  enforcement: z.enum(["enforce", "observe", "default"]).nullable().default(null),
});
export type HistoryEntry = z.infer<typeof HistoryEntry>;
/** A history entry as written: fields added later (with defaults) may be left out. */
export type NewHistoryEntry = z.input<typeof HistoryEntry>;

/** One outbound event (events.ts), as sent and as kept in the outbox and dead_letters tables. */
export const NotifyEvent = z.object({
  id: z.string(),
  type: z.enum(["org.overdue", "org.suspension_warning", "org.suspended", "org.restored", "org.limit_reached", "org.limit_cleared", "org.enforcement_changed"]),
  org_id: z.string(),
  /** The org's enforcement mode when the event was made: its own override, else the billing Worker's ENFORCEMENT (issue 21); events queued before it read as `enforce`. */
  enforcement: EnforcementMode.default("enforce"),
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

// The rules, all pure: what state follows from what Autumn said (decide), which plan limits are in force,
// and when the object acts next (retries, follow-ups, resyncs, the alarm). The object does the I/O.

export type PolicyConfig = { gracePeriodMs: number; minNoticeMs: number };

export type PolicyInput = Pick<OrgRecord, "state" | "since" | "reason" | "anchor" | "noticed_at" | "lapsed" | "suspended_at" | "override"> &
  Partial<Pick<OrgRecord, "notice_from" | "suspend_at">>;

export type Decision = {
  state: OrgState;
  reason: Reason;
  since: number;
  anchor: number | null;
  noticed_at: number | null;
  notice_from: number | null;
  suspend_at: number | null;
  suspended_at: number | null;
  lapsed: boolean;
};

/** The override in force at `now`, if any. */
export function activeOverride(override: Override | null, now: number): Override | null {
  if (override === null) return null;
  return override.until === null || now < override.until ? override : null;
}

/**
 * The whole suspension policy, pure: from what is stored, what Autumn just said (or `null`
 * when Autumn could not be read), the time and the configuration, the next state and why.
 *
 * - past due: a base (non add-on) subscription is past due;
 * - the overdue clock starts at the earlier of the first sighting and the oldest open
 *   invoice of a past-due base plan, and never moves later while the org stays past due;
 * - the deadline is max(anchor + grace, notice start + minimum notice, the end of an exemption):
 *   an invoice's creation is not its due date (Autumn gives none), and support may move the
 *   deadline, so no org is suspended by the policy before the deadline in force has been
 *   published for the minimum notice, exemptions included (see `noticeStart`);
 * - suspended once `now >= deadline`, still past due and never paid money, which only
 *   a fresh read (`facts !== null`) can establish; without one an org can stay suspended
 *   but never become suspended;
 * - an org that has paid money before stays `overdue` (normal dunning);
 * - a manual suspension wins over everything; an exemption prevents policy suspension.
 */
export function decide(prev: PolicyInput, facts: BillingFacts | null, now: number, config: PolicyConfig): Decision {
  let anchor: number | null;
  let noticedAt: number | null;
  let lapsed: boolean;
  if (facts === null) {
    anchor = prev.anchor;
    noticedAt = prev.noticed_at;
    lapsed = prev.lapsed;
  } else if (facts.pastDue) {
    anchor = Math.min(prev.anchor ?? now, facts.oldestOpenInvoiceAt ?? now, now);
    // Records from before the minimum notice existed: an overdue org was first seen when it entered
    // overdue (its old anchor may come from another plan's invoice); a suspended one keeps its anchor.
    noticedAt = prev.noticed_at ?? (prev.state === "overdue" ? prev.since : prev.anchor) ?? now;
    lapsed = facts.hasPaid;
  } else {
    anchor = null;
    noticedAt = null;
    lapsed = false;
  }
  const pastDue = anchor !== null;
  const override = activeOverride(prev.override, now);
  // A deadline applies unless there is nothing to suspend for, the org is a lapsed customer, support
  // suspended it by hand, or it is exempt with no end (nothing to publish until the exemption is cleared).
  const deadlineApplies = anchor !== null && !lapsed && override?.action !== "suspend" && !(override?.action === "exempt" && override.until === null);
  // An exemption's end stays a term after it passes: the deadline published while exempt is the one that applies.
  const exemptionEnd = prev.override?.action === "exempt" ? prev.override.until : null;
  let noticeFrom = deadlineApplies ? noticeStart(prev, override, noticedAt ?? now, now) : null;
  let suspendAt = deadlineApplies ? deadlineOf({ anchor: anchor!, notice_from: noticeFrom!, exemption_end: exemptionEnd }, config) : null;
  // A read that moves a deadline still ahead earlier (an older open invoice found later) publishes a new deadline:
  // its notice starts now, so it is never enforced before it has been published for the minimum notice.
  const published = prev.suspend_at ?? null;
  if (suspendAt !== null && published !== null && published > now && suspendAt < published && noticeFrom !== now) {
    noticeFrom = now;
    suspendAt = deadlineOf({ anchor: anchor!, notice_from: now, exemption_end: exemptionEnd }, config);
  }

  const [state, reason] = ((): [OrgState, Reason] => {
    if (override?.action === "suspend") return ["suspended", "manual_suspend"];
    if (!pastDue) return ["ok", "not_past_due"];
    if (lapsed) return ["overdue", "lapsed_customer"];
    if (override?.action === "exempt") return ["overdue", "exempt"];
    if (suspendAt !== null && now >= suspendAt) {
      const confirmed = facts !== null || (prev.state === "suspended" && prev.reason === "grace_elapsed_never_paid");
      return confirmed ? ["suspended", "grace_elapsed_never_paid"] : ["overdue", "grace_elapsed_awaiting_autumn"];
    }
    return ["overdue", "in_grace_period"];
  })();

  return {
    state,
    reason,
    since: state === prev.state ? prev.since : now,
    anchor,
    noticed_at: noticedAt,
    notice_from: noticeFrom,
    suspend_at: suspendAt,
    suspended_at: state !== "suspended" ? null : prev.state === "suspended" ? prev.suspended_at ?? now : now,
    lapsed,
  };
}

/**
 * When the notice of the deadline now in force started: when that deadline was first published.
 * - It carries on while the deadline stays published (an anchor found earlier, an exemption that
 *   reaches its end), and through a suspension (the deadline has passed; it is not re-noticed).
 * - It starts now when a deadline appears (first sighting, an exemption without end cleared, a
 *   manual suspension lifted, a lapsed customer who no longer counts as paid), when an exemption
 *   with an end is granted (its deadline is published now), and when an exemption is cleared
 *   or replaced before its end (the deadline moves, so it is published again).
 * `kept` is the notice running so far (the first sighting in records from before this rule).
 */
function noticeStart(prev: PolicyInput, override: Override | null, noticedAt: number, now: number): number {
  const kept = prev.notice_from ?? noticedAt;
  const wasExempt = prev.reason === "exempt";
  if (override?.action === "exempt") return !wasExempt || override.at > kept ? now : kept;
  const endedByItself = prev.override?.action === "exempt" && prev.override.until !== null && prev.override.until <= now;
  if (wasExempt) return endedByItself && (prev.suspend_at ?? null) !== null ? kept : now;
  const carriesOn = prev.reason === "in_grace_period" || prev.reason === "grace_elapsed_awaiting_autumn" || (prev.state === "suspended" && prev.reason === "grace_elapsed_never_paid");
  return carriesOn ? kept : now;
}

/** The terms of the deadline: the grace period from the anchor, the minimum notice from its start, and an exemption's end. */
export function deadlineTerms(
  terms: { anchor: number; notice_from: number; exemption_end: number | null },
  config: PolicyConfig,
): { grace_ends_at: number; notice_ends_at: number; exemption_ends_at: number | null } {
  return { grace_ends_at: terms.anchor + config.gracePeriodMs, notice_ends_at: terms.notice_from + config.minNoticeMs, exemption_ends_at: terms.exemption_end };
}

function deadlineOf(input: { anchor: number; notice_from: number; exemption_end: number | null }, config: PolicyConfig): number {
  const terms = deadlineTerms(input, config);
  return Math.max(terms.grace_ends_at, terms.notice_ends_at, terms.exemption_ends_at ?? -Infinity);
}

/** A sentence a support person can read to a customer. */
export function reasonMessage(reason: Reason, at: { suspend_at: number | null; override: Override | null }): string {
  const iso = (ms: number | null) => (ms === null ? "no deadline" : new Date(ms).toISOString());
  switch (reason) {
    case "never_synced":
      return "No billing event has been seen for this org yet.";
    case "not_past_due":
      return "No base subscription is past due.";
    case "in_grace_period":
      return `A base subscription is past due and the org has never paid; ingestion will be suspended at ${iso(at.suspend_at)} (the latest of the grace period's end, the minimum notice's end and any exemption's end) unless the overdue invoice is paid.`;
    case "grace_elapsed_awaiting_autumn":
      return "The grace period has elapsed; suspension waits for a fresh read from Autumn to confirm the org is still past due and never paid.";
    case "grace_elapsed_never_paid":
      return "Suspended: a base subscription has been past due for longer than the grace period and the org has never paid an invoice with money. Paying the overdue invoice restores ingestion immediately.";
    case "lapsed_customer":
      return "Past due, but the org has paid before: a lapsed customer is left to normal dunning and is never suspended by this policy.";
    case "exempt":
      return at.override?.until == null
        ? "Past due, but exempted by support until cleared: not suspended meanwhile; once cleared, the minimum notice starts."
        : `Past due, but exempted by support until ${iso(at.override.until)}: not suspended meanwhile; unless the overdue invoice is paid, ingestion will be suspended at ${iso(at.suspend_at)} (no sooner than the minimum notice after the exemption was granted).`;
    case "manual_suspend":
      return `Suspended by support ${at.override?.until == null ? "until cleared" : `until ${iso(at.override.until)}`}.`;
  }
}

/** A few words for lists, where the full message would not fit. */
export const REASON_LABELS: Record<Reason, string> = {
  never_synced: "not seen yet",
  not_past_due: "in good standing",
  in_grace_period: "past due, in its grace period, never paid",
  grace_elapsed_awaiting_autumn: "grace period over, waiting for Autumn to confirm",
  grace_elapsed_never_paid: "past due beyond the grace period and never paid",
  lapsed_customer: "past due but paid before (normal dunning)",
  exempt: "past due, exempted by support",
  manual_suspend: "suspended by support",
};

// Plan limits.

/**
 * The plan limits a fresh read shows: every metered feature whose balance is used up, until its
 * next reset. A limit already in force keeps its `since`. Pure: the org's object calls it on
 * every good read, so a plan change or a reset that shows room again lifts the limit.
 */
export function limitsFrom(balances: Record<string, AutumnBalance>, features: UsageFeatures, previous: readonly LimitRecord[], now: number): LimitRecord[] {
  const limits: LimitRecord[] = [];
  for (const [featureId, signals] of meteredFeatures(features)) {
    const balance = balances[featureId];
    if (!exhausted(balance)) continue;
    const since = previous.find((limit) => limit.feature_id === featureId)?.since ?? now;
    // The schema already makes an out-of-range reset absent; checked again because a limit's reset is formatted into
    // events and the mirror, where one bad time would stop every commit of the org.
    const resetAt = isAutumnTime(balance!.next_reset_at) ? balance!.next_reset_at : null;
    limits.push({ feature_id: featureId, signals, reset_at: resetAt, since, usage: balance!.usage, granted: balance!.granted });
  }
  return limits;
}

/** What changed between two sets of limits: features newly used up, and features with room again. */
export function limitChanges(before: readonly LimitRecord[], after: readonly LimitRecord[]): { reached: LimitRecord[]; cleared: LimitRecord[] } {
  const had = new Set(before.map((limit) => limit.feature_id));
  const has = new Set(after.map((limit) => limit.feature_id));
  return { reached: after.filter((limit) => !had.has(limit.feature_id)), cleared: before.filter((limit) => !has.has(limit.feature_id)) };
}

/** What a usage report's answer (the track response's balance) said of its feature. */
export type BalanceAnswer = { feature_id: string; exhausted: boolean };

/**
 * The features whose report answers disagree with the limits held at `now`: used up but not held limited,
 * or held limited but showing room. Only those are worth a full Autumn read (customers.get, and invoices.list
 * while past due); an answer that agrees changes nothing, so a balance that stays used up while usage keeps
 * coming (ENFORCE_LIMITS=false) costs no read per report. A held limit whose reset has passed is lifted at
 * the edge already, so it counts as not held: a used-up answer then reads, for the new period's reset.
 */
export function limitDisagreements(answers: readonly BalanceAnswer[], held: readonly LimitRecord[], now: number): { reached: string[]; room: string[] } {
  const inForce = new Set(held.filter((limit) => limit.reset_at === null || limit.reset_at > now).map((limit) => limit.feature_id));
  const reached = new Set<string>();
  const room = new Set<string>();
  for (const answer of answers) {
    if (answer.exhausted && !inForce.has(answer.feature_id)) reached.add(answer.feature_id);
    if (!answer.exhausted && inForce.has(answer.feature_id)) room.add(answer.feature_id);
  }
  return { reached: [...reached], room: [...room] };
}

// When: retries, follow-up reads, resyncs and the alarm.

export type ScheduleConfig = { resyncIntervalMs: number; limitResyncIntervalMs: number };

const BACKOFF_BASE_MS = 5_000;
/** No retry waits longer, whatever `Retry-After` says: a day-long Retry-After must not strand an org. */
export const BACKOFF_CAP_MS = 15 * 60_000;
/** While a suspension waits only for Autumn to answer, it is retried at least this often. */
export const AWAITING_AUTUMN_CAP_MS = 60_000;
/** Reads after a webhook that left the org not ok, measured from that webhook's read. */
export const FOLLOW_UP_STEPS_MS = [60_000, 5 * 60_000, 15 * 60_000] as const;

/**
 * Exponential backoff after `failures` consecutive failures, capped at `backoffCapMs`, never
 * sooner than the server's `Retry-After`, and never longer than BACKOFF_CAP_MS whatever it says.
 */
export function retryDelay(failures: number, retryAfterMs?: number, backoffCapMs = BACKOFF_CAP_MS): number {
  const exponential = Math.min(BACKOFF_BASE_MS * 2 ** Math.min(Math.max(0, failures - 1), 30), backoffCapMs);
  return Math.min(Math.max(exponential, retryAfterMs ?? 0), BACKOFF_CAP_MS);
}

/**
 * The follow-up reads owed after a read. A webhook whose read leaves the org not ok starts
 * them; each successful read at or after a step moves to the next step still ahead; an org
 * back to ok needs none. A failed read changes nothing (its retry is owed anyway).
 */
export function nextFollowUp(prev: OrgRecord["follow_up"], read: { source: Source; ok: boolean; state: OrgRecord["state"] }, now: number): OrgRecord["follow_up"] {
  if (!read.ok) return prev;
  if (read.state === "ok") return null;
  if (read.source === "webhook") return { from: now, step: 0 };
  if (prev === null) return null;
  const step = FOLLOW_UP_STEPS_MS.findIndex((offset) => prev.from + offset > now);
  return step === -1 ? null : { from: prev.from, step: Math.max(step, prev.step) };
}

export function followUpAt(followUp: OrgRecord["follow_up"]): number | null {
  return followUp === null ? null : followUp.from + FOLLOW_UP_STEPS_MS[followUp.step]!;
}

export function earliest(...times: (number | null | undefined)[]): number | null {
  let min: number | null = null;
  for (const t of times) if (t != null && (min === null || t < min)) min = t;
  return min;
}

/**
 * When the object next owes a fresh Autumn read: a pending webhook or retry, a follow-up
 * after a webhook, the suspension deadline, the end of an override, a plan limit's reset, the periodic resync
 * while not `ok` (so a missed webhook cannot leave an org blocked or unblocked for long), or the limit resync
 * while a plan limit is in force (LIMIT_RESYNC_INTERVAL: an upgrade whose webhook is lost still lifts it).
 */
export function nextSyncAt(record: OrgRecord, now: number, config: ScheduleConfig): number | null {
  // The deadline and the end of an override are each owed one read at or after them;
  // a failed read sets retry_at instead, so neither can spin.
  const owedOnce = (at: number | null | undefined) => (at != null && (record.last_sync?.at ?? -Infinity) < at ? at : null);
  const exempt = activeOverride(record.override, now)?.action === "exempt";
  const deadline = record.state === "overdue" && !exempt ? owedOnce(record.suspend_at) : null;
  const overrideEnd = owedOnce(record.override?.until);
  const resync = record.state === "ok" ? null : (record.last_sync?.at ?? now) + config.resyncIntervalMs;
  // A plan limit is owed a read when its balance resets, the moment it may have room again.
  const limitReset = owedOnce(earliest(...record.limits.map((limit) => limit.reset_at)));
  // An ok org has no other periodic read, and a refused signal sends no usage reports: without this a limit
  // lifted by an upgrade whose webhook was lost would hold until its reset, or forever.
  // A customer Autumn does not know (404) is re-read on the resync schedule only, limits or not: every limited org
  // of a deployment with a wrong AUTUMN_API_URL or key would otherwise be read every LIMIT_RESYNC_INTERVAL forever.
  const limitResync = record.limits.length === 0 || record.last_sync?.customer_unknown ? null : (record.last_sync?.at ?? now) + config.limitResyncIntervalMs;
  return earliest(record.retry_at, owedOnce(followUpAt(record.follow_up)), deadline, overrideEnd, resync, limitReset, limitResync);
}

export function mirrorPending(record: OrgRecord): boolean {
  return record.mirror.version < record.projection_version;
}

/**
 * The single alarm of the object: the earliest of everything it owes, including what its
 * outbox owes (the next delivery or the suspension warning; passed in, as it lives outside
 * the record and depends on optional configuration).
 */
export function nextAlarmAt(record: OrgRecord, now: number, config: ScheduleConfig, outboxAt: number | null = null): number | null {
  const mirror = mirrorPending(record) ? (record.mirror.retry_at ?? now) : null;
  return earliest(nextSyncAt(record, now, config), mirror, outboxAt);
}
