import type { EnforcementMode } from "../../shared/billing-state.ts";
import { formatDuration } from "../../shared/duration.ts";
import type { Evidence } from "../autumn/answers.ts";
import type { PolicySettings } from "../config.ts";
import type { IndexEntry } from "../index/entry.ts";
import { deadlineTerms, followUpAt, mirrorPending, nextAlarmAt, publishedDeadline, reasonMessage, type DeadLetter, type HistoryEntry, type OrgRecord } from "./record.ts";
import { NO_PARKING, parkingView, type ParkingProgress } from "./parking.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";
import type { UsageView } from "../usage/usage-view.ts";
import { NO_ACTIVITY, type ActivityView } from "../usage/activity-view.ts";


function evidenceView(evidence: Evidence | null) {
  if (evidence === null) return null;
  const invoice = (i: Evidence["open_invoices"][number]) => ({ ...i, created_at: iso(i.created_at) });
  return {
    ...evidence,
    open_invoices: evidence.open_invoices.map(invoice),
    paid_invoice: evidence.paid_invoice === null ? null : invoice(evidence.paid_invoice),
    balances: Object.fromEntries(Object.entries(evidence.balances).map(([id, b]) => [id, { ...b, next_reset_at: iso(b.next_reset_at) }])),
  };
}

function historyView(entry: HistoryEntry) {
  return {
    ...entry,
    at: iso(entry.at),
    override: entry.override === null ? null : { ...entry.override, until: iso(entry.override.until) },
    evidence: evidenceView(entry.evidence),
    limit: entry.limit === null ? null : { ...entry.limit, reset_at: iso(entry.limit.reset_at) },
  };
}

/** Dead letters the org's view shows (the newest); `GET /admin/orgs/{id}/dead-letters` pages through the rest. */
export const ORG_VIEW_DEAD_LETTERS = 20;

function deadLetterView(letter: DeadLetter) {
  return { ...letter, at: iso(letter.at) };
}

/** A dead-letter cursor is the seq to continue below, as a string: opaque to clients, checked by the admin API (requests.ts). */
function deadLetterCursor(next: number | null): string | null {
  return next === null ? null : String(next);
}

/** `GET /admin/orgs/{id}/dead-letters`: a page, the count and the cursor to the next page (null after the oldest). */
export function deadLetterPageView(letters: DeadLetter[], count: number, next: number | null) {
  return { dead_letters: letters.map(deadLetterView), count, next_cursor: deadLetterCursor(next) };
}
export type DeadLetterPageView = ReturnType<typeof deadLetterPageView>;

/** The admin API's JSON for one org: times as ISO strings, history and dead letters newest first. */
export function orgView(
  record: OrgRecord,
  history: HistoryEntry[],
  deadLetters: DeadLetter[],
  now: number,
  settings: PolicySettings,
  /** When the object's outbox and usage ledger next owe something (they live outside the record). */
  othersDueAt: number | null = null,
  parking: ParkingProgress = NO_PARKING,
  /** The last 30 days' requests per hour (usage/activity.ts): the console's chart. */
  activity: ActivityView = NO_ACTIVITY,
  /** Dead letters in all and the cursor past `deadLetters` (the newest page); by default `deadLetters` is all of them. */
  deadLetterPaging: { count: number; next: number | null } = { count: deadLetters.length, next: null },
) {
  const exemptionEnd = record.override?.action === "exempt" ? record.override.until : null;
  const terms = record.anchor === null ? null : deadlineTerms({ anchor: record.anchor, notice_from: record.notice_from ?? record.noticed_at ?? record.anchor, exemption_end: exemptionEnd }, settings);
  return {
    org_id: record.org_id,
    state: record.state,
    since: iso(record.since),
    reason: record.reason,
    reason_message: reasonMessage(record.reason, record),
    anchor: iso(record.anchor),
    noticed_at: iso(record.noticed_at),
    suspend_at: iso(record.suspend_at),
    /** The deadline that can still fire (publishedDeadline): in grace, awaiting Autumn, or the one that applies once an exemption ends. */
    published_deadline: iso(publishedDeadline(record)),
    /** When the deadline in force was first published: the start of its minimum notice. */
    notice_from: iso(record.notice_from),
    /** The deadline is the latest of these: the grace period from the anchor, the minimum notice from its start, an exemption's end. */
    deadline_terms:
      terms === null || record.suspend_at === null
        ? null
        : { grace_ends_at: iso(terms.grace_ends_at), notice_ends_at: iso(terms.notice_ends_at), exemption_ends_at: iso(terms.exemption_ends_at) },
    suspended_at: iso(record.suspended_at),
    lapsed_customer: record.lapsed,
    grace_period: formatDuration(settings.gracePeriodMs),
    min_notice: formatDuration(settings.minNoticeMs),
    evidence: evidenceView(record.evidence),
    last_sync: record.last_sync === null ? null : { ...record.last_sync, at: iso(record.last_sync.at) },
    /** The last read found no such customer in Autumn: the state was kept (absence never restores an org); check the customer or AUTUMN_API_URL. */
    autumn_customer_unknown: record.last_sync?.customer_unknown ?? false,
    consecutive_failures: record.failures,
    next_check_at: iso(nextAlarmAt(record, now, settings, othersDueAt)),
    follow_up_at: iso(followUpAt(record.follow_up)),
    override: record.override === null ? null : { ...record.override, until: iso(record.override.until), at: iso(record.override.at) },
    /** The org's own enforcement mode (a canary against the Workers' ENFORCEMENT), with its note; null: the Workers'. */
    enforcement: record.enforcement === null ? null : { ...record.enforcement, at: iso(record.enforcement.at) },
    version: record.version,
    mirror: { version: record.mirror.version, in_sync: !mirrorPending(record) },
    history: history.map(historyView),
    /** The newest ORG_VIEW_DEAD_LETTERS; the rest from `GET .../dead-letters?cursor=` with `dead_letters_next_cursor`. */
    dead_letters: deadLetters.map(deadLetterView),
    dead_letters_count: deadLetterPaging.count,
    dead_letters_next_cursor: deadLetterCursor(deadLetterPaging.next),
    /** Batches kept while suspended or while the upstream was down, and what became of them (README, "Parking"). */
    parking: parkingView(parking),
    /** What became of the org's requests per hour, the last 30 days (docs/metering.md, "Activity"); only hours with something counted. */
    activity,
  };
}
/** What the admin API answers for one org: the billing view, and its usage (usage/usage-view.ts). */
/**
 * `enforcement_mode`: what applies to the org now, its own override or else the billing Worker's
 * ENFORCEMENT (the ingest Worker's should match it: docs/deploying.md), so an operator sees observe mode.
 */
export type OrgView = ReturnType<typeof orgView> & { usage: UsageView; enforcement_mode: EnforcementMode };

/** An index entry for the admin API and the console: times as ISO strings. */
export function indexEntryView(entry: IndexEntry) {
  return { ...entry, since: iso(entry.since), suspend_at: iso(entry.suspend_at), suspended_at: iso(entry.suspended_at) };
}
export type IndexEntryView = ReturnType<typeof indexEntryView>;
