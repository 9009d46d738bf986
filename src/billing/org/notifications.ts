import { z } from "zod";
import { OrgState } from "../../shared/billing-state.ts";
import { payLink, publishedDeadline, Reason, type OrgRecord } from "./record.ts";
import { parkingView, ParkingProgress } from "./parking.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";
import type { LimitRecord } from "./record.ts";
import { limitChanges } from "../usage/limits.ts";

/**
 * Outbound events, so the product can tell its customer (`NOTIFY_URL`): one per transition,
 * named after the state entered (`org.restored` when ingestion comes back), and one warning per
 * notice, SUSPENSION_WARNING before its deadline. Pure: what to send; the object queues and delivers it.
 */
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

/** An event given up after GIVE_UP_AFTER_MS of refusals (outbox.ts), kept for the admin view. */
export type DeadLetter = { event: NotifyEvent; attempts: number; error: string; at: number };

/**
 * The notice an org is in, by when its deadline was first published: an anchor that moves earlier
 * (an older invoice found later) is still the same notice, and gets no second warning; a new
 * notice (after an exemption is granted or cleared) gets its own.
 */
function noticePeriod(record: Pick<OrgRecord, "anchor" | "noticed_at" | "notice_from">): number | null {
  return record.notice_from ?? record.noticed_at ?? record.anchor;
}

/** When this org's warning is due, or null when there is nothing (more) to warn about. */
export function warningDueAt(
  record: Pick<OrgRecord, "state" | "reason" | "suspend_at" | "override" | "anchor" | "noticed_at" | "notice_from" | "warned_anchor">,
  warningMs: number,
): number | null {
  const deadline = publishedDeadline(record);
  if (deadline === null || record.warned_anchor === noticePeriod(record)) return null;
  return deadline - warningMs;
}

function event(type: NotifyEvent["type"], record: OrgRecord, previous: OrgRecord["state"] | null, now: number, parking: ParkingProgress | null = null): NotifyEvent {
  const p = type === "org.restored" && parking !== null ? parkingView(parking) : null;
  return {
    id: `evt_${crypto.randomUUID().replaceAll("-", "")}`,
    type,
    org_id: record.org_id,
    state: record.state,
    previous_state: previous,
    reason: record.reason,
    deadline: iso(publishedDeadline(record)),
    suspended_at: iso(record.suspended_at),
    pay_url: payLink(record),
    ...(p === null
      ? {}
      : {
          parking: {
            parked_batches: p.parked_batches,
            parked_bytes: p.parked_bytes,
            delivered_batches: p.delivered_batches,
            delivered_bytes: p.delivered_bytes,
            expired_batches: p.expired_batches,
            expired_bytes: p.expired_bytes,
            waiting_batches: p.waiting_batches,
            waiting_bytes: p.waiting_bytes,
          },
        }),
    at: new Date(now).toISOString(),
  };
}

function limitEvent(type: "org.limit_reached" | "org.limit_cleared", record: OrgRecord, limit: LimitRecord, now: number): NotifyEvent {
  const { feature_id, signals, reset_at, usage, granted } = limit;
  return { ...event(type, record, null, now), limit: { feature_id, signals, reset_at: iso(reset_at), usage, granted } };
}

const TYPE_FOR_STATE = { ok: "org.restored", overdue: "org.overdue", suspended: "org.suspended" } as const;

/**
 * Ingestion is back: the org left `suspended` (for `ok`, or for `overdue`: exempted, unsuspended,
 * a lapsed customer), or it is back to `ok` from `overdue`. Its `state` says which; the parked
 * batches are delivered on every exit from `suspended`.
 */
export function isRestored(prev: OrgRecord["state"], next: OrgRecord["state"]): boolean {
  return next !== prev && (prev === "suspended" || next === "ok");
}

/** The event of a transition: `org.restored` whenever ingestion comes back, else named after the state entered. */
function transitionType(prev: OrgRecord["state"], next: OrgRecord["state"]): NotifyEvent["type"] {
  return isRestored(prev, next) ? "org.restored" : TYPE_FOR_STATE[next];
}

/**
 * The events a committed change owes, in order, and the record with its warning marked: the
 * transition, then a plan limit reached or cleared per feature, then the suspension warning.
 * A warning is owed once per overdue period (keyed by its anchor), as soon as the deadline
 * is within `warningMs`, including at the moment the org turns overdue.
 */
export function eventsFor(
  prev: OrgRecord,
  next: OrgRecord,
  now: number,
  warningMs: number,
  parking: ParkingProgress | null = null,
): { events: NotifyEvent[]; record: OrgRecord } {
  const events: NotifyEvent[] = [];
  if (next.state !== prev.state) events.push(event(transitionType(prev.state, next.state), next, prev.state, now, parking));
  const limits = limitChanges(prev.limits, next.limits);
  for (const limit of limits.reached) events.push(limitEvent("org.limit_reached", next, limit, now));
  for (const limit of limits.cleared) events.push(limitEvent("org.limit_cleared", next, limit, now));
  // Back in good standing: the next overdue period gets its own warning, whatever its anchor.
  if (next.state === "ok") return { events, record: { ...next, warned_anchor: null } };
  const warnAt = warningDueAt(next, warningMs);
  if (warnAt !== null && now >= warnAt) {
    events.push(event("org.suspension_warning", next, null, now));
    return { events, record: { ...next, warned_anchor: noticePeriod(next) } };
  }
  return { events, record: next };
}
