import { isoOrNull as iso } from "../../shared/iso-time.ts";
import { log, logWarn } from "../../shared/log.ts";
import { Serialized } from "../../shared/serialized.ts";
import { ConfigError, durationSetting, optionalSetting, requiredSetting, type EnvVars } from "../../shared/settings.ts";
import type { EnforcementMode } from "../../shared/billing-state.ts";
import { enforcementMode, type ConfigReports } from "../config.ts";
import { importSigningSecret, isSigningSecret, signPayload } from "../signature.ts";
import { limitChanges, NotifyEvent, payLink, publishedDeadline, retryDelay, type DeadLetter, type LimitRecord, type OrgRecord } from "./record.ts";
import { parkingView, type ParkingProgress } from "./parking.ts";
import type { OrgStore, TableOwner, Transact } from "./store.ts";

/*
 * The org's outbound events (`NOTIFY_URL`), so the product can tell its customer, in one module:
 * - which events a change owes (`eventsFor`, pure): one per transition, named after the state
 *   entered (`org.restored` when ingestion comes back), one per plan limit reached or cleared, and
 *   one warning per notice, SUSPENSION_WARNING before its deadline;
 * - the outbox and dead_letters tables (their DDL is here: `EVENT_TABLES`);
 * - signing (Standard Webhooks under NOTIFY_SECRET) and delivery, strictly in order, retried with
 *   backoff by the object's alarm, and set aside as dead letters after GIVE_UP_AFTER_MS.
 */

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

/**
 * `workerMode`: the billing Worker's ENFORCEMENT; the org's own override wins. An event says which mode the
 * org is in (issue 21), so a receiver can tell a suspension carried out from one only observed.
 */
function event(type: NotifyEvent["type"], record: OrgRecord, previous: OrgRecord["state"] | null, now: number, workerMode: EnforcementMode, parking: ParkingProgress | null = null): NotifyEvent {
  const p = type === "org.restored" && parking !== null ? parkingView(parking) : null;
  return {
    id: `evt_${crypto.randomUUID().replaceAll("-", "")}`,
    type,
    org_id: record.org_id,
    enforcement: modeOf(record, workerMode),
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

function limitEvent(type: "org.limit_reached" | "org.limit_cleared", record: OrgRecord, limit: LimitRecord, now: number, workerMode: EnforcementMode): NotifyEvent {
  const { feature_id, signals, reset_at, usage, granted } = limit;
  return { ...event(type, record, null, now, workerMode), limit: { feature_id, signals, reset_at: iso(reset_at), usage, granted } };
}

/** The org's enforcement mode: its own override, else the billing Worker's ENFORCEMENT. */
export function modeOf(record: OrgRecord, workerMode: EnforcementMode): EnforcementMode {
  return record.enforcement?.mode ?? workerMode;
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
  workerMode: EnforcementMode = "enforce",
): { events: NotifyEvent[]; record: OrgRecord } {
  const events: NotifyEvent[] = [];
  if (next.state !== prev.state) events.push(event(transitionType(prev.state, next.state), next, prev.state, now, workerMode, parking));
  // A suspended org whose refusals start or stop being carried out (its enforcement override): ingestion
  // stops or comes back although the state did not change, so the receiver hears it.
  else if (next.state === "suspended" && modeOf(prev, workerMode) !== modeOf(next, workerMode)) events.push(event("org.enforcement_changed", next, prev.state, now, workerMode));
  const limits = limitChanges(prev.limits, next.limits);
  for (const limit of limits.reached) events.push(limitEvent("org.limit_reached", next, limit, now, workerMode));
  for (const limit of limits.cleared) events.push(limitEvent("org.limit_cleared", next, limit, now, workerMode));
  // Back in good standing: the next overdue period gets its own warning, whatever its anchor.
  if (next.state === "ok") return { events, record: { ...next, warned_anchor: null } };
  const warnAt = warningDueAt(next, warningMs);
  if (warnAt !== null && now >= warnAt) {
    events.push(event("org.suspension_warning", next, null, now, workerMode));
    return { events, record: { ...next, warned_anchor: noticePeriod(next) } };
  }
  return { events, record: next };
}

/** `enforcement`: the billing Worker's ENFORCEMENT, which events carry unless the org has its own. */
export type NotifySettings = { url: string; secret: string; warningMs: number; enforcement: EnforcementMode };

/**
 * Null when `NOTIFY_URL` is unset: then no event is queued at all. With `NOTIFY_URL` set,
 * a missing or malformed `NOTIFY_SECRET`, an invalid `SUSPENSION_WARNING` or `ENFORCEMENT` throws a ConfigError
 * (notifications are then off, and queued events wait), so a delivery can never fail on configuration.
 */
export function notifySettings(env: EnvVars): NotifySettings | null {
  const url = optionalSetting(env, "NOTIFY_URL", "");
  if (url === "") return null;
  const secret = requiredSetting(env, "NOTIFY_SECRET", "set a whsec_ secret with `wrangler secret put NOTIFY_SECRET` and give it to the receiver");
  if (!isSigningSecret(secret)) throw new ConfigError("NOTIFY_SECRET", "NOTIFY_SECRET must be whsec_ followed by base64 (for example whsec_ + base64 of 32 random bytes)");
  return { url, secret, warningMs: durationSetting(env, "SUSPENSION_WARNING", "24h"), enforcement: enforcementMode(env) };
}

export type Delivery = { ok: true; status: number } | { ok: false; error: string; status?: number };

/** One delivery, signed with the Standard Webhooks scheme (`webhook-*` headers) under NOTIFY_SECRET. */
export async function deliver(settings: NotifySettings, event: NotifyEvent, now: number, timeoutMs: number): Promise<Delivery> {
  const key = await importSigningSecret(settings.secret, "NOTIFY_SECRET");
  const body = JSON.stringify(event);
  const timestamp = String(Math.floor(now / 1000));
  try {
    const response = await fetch(settings.url, {
      method: "POST",
      headers: { "content-type": "application/json", "webhook-id": event.id, "webhook-timestamp": timestamp, "webhook-signature": await signPayload(key, event.id, timestamp, body) },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel();
    return response.ok ? { ok: true, status: response.status } : { ok: false, status: response.status, error: `receiver answered ${response.status}` };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/** Events are tried inline once; a slow receiver is retried by the alarm instead of delaying the caller. */
const NOTIFY_TIMEOUT_MS = 3_000;
/** Attempts an event gets before it can be set aside, however long ago the first one was. */
export const GIVE_UP_MIN_ATTEMPTS = 10;
/** An event the receiver keeps refusing for this long after its first attempt (and GIVE_UP_MIN_ATTEMPTS times) is set aside, so it stops holding back the org's later events. */
export const GIVE_UP_AFTER_MS = 3 * 86_400_000;

/** Dead letters kept per org, newest first. */
export const DEAD_LETTER_LIMIT = 100;

/**
 * The outbox and dead_letters tables, created by the object's one migration (store.ts, `OrgStore`).
 * Version 1: outbox. Version 2: dead_letters. Version 3: outbox.first_attempt_at (the give-up clock
 * starts at the first delivery attempt).
 */
export const EVENT_TABLES: TableOwner = {
  ddl: `
    CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS dead_letters (seq INTEGER PRIMARY KEY, event TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, at INTEGER NOT NULL);
  `,
  upgrade: (sql) => {
    const columns = sql.exec<{ name: string }>("PRAGMA table_info(outbox)").toArray().map((column) => column.name);
    if (!columns.includes("first_attempt_at")) sql.exec("ALTER TABLE outbox ADD COLUMN first_attempt_at INTEGER");
  },
};

type OutboxRow = { seq: number; event: NotifyEvent; attempts: number; next_at: number; first_attempt_at: number | null };

/**
 * The org's outbound events: queued in the same transaction as the change that owes them,
 * delivered strictly in order, retried with backoff by the object's alarm, and set aside as dead
 * letters after GIVE_UP_AFTER_MS. With notifications off (or misconfigured) queued events are kept
 * and left alone until they are back. Its table methods are synchronous, so they compose inside
 * the object's `transact`.
 */
export class Outbox {
  private readonly deliveries = new Serialized<void>();
  private readonly sql: SqlStorage;
  private readonly store: OrgStore;
  private readonly transact: Transact;
  private readonly configReports: ConfigReports;

  constructor(sql: SqlStorage, store: OrgStore, transact: Transact, configReports: ConfigReports) {
    this.sql = sql;
    this.store = store;
    this.transact = transact;
    this.configReports = configReports;
  }

  /** Inside the caller's transaction: queues what the change owes; returns the record with its warning marked. */
  queueFor(prev: OrgRecord, next: OrgRecord, now: number, notify: NotifySettings | null): OrgRecord {
    if (notify === null) return next;
    // Read only when the org is restored: the one event that carries it.
    const owed = eventsFor(prev, next, now, notify.warningMs, isRestored(prev.state, next.state) ? this.store.parking() : null, notify.enforcement);
    for (const event of owed.events) this.enqueue(event, now);
    return owed.record;
  }

  /** The warning owed once per notice, SUSPENSION_WARNING before its deadline. */
  queueWarningIfDue(now: number, notify: NotifySettings | null): void {
    if (notify === null) return;
    const record = this.store.load();
    if (record === null || (warningDueAt(record, notify.warningMs) ?? Infinity) > now) return;
    this.transact(() => {
      const current = this.store.load()!;
      this.store.save({ ...this.queueFor(current, current, now, notify), version: current.version + 1 });
    });
  }

  /** When the alarm owes this outbox something: never while notifications are off, so queued events cannot spin it. */
  dueAt(record: OrgRecord | null, notify: NotifySettings | null): number | null {
    if (notify === null || record === null) return null;
    const head = this.head()?.next_at ?? null;
    const warning = warningDueAt(record, notify.warningMs);
    return head === null ? warning : warning === null ? head : Math.min(head, warning);
  }

  /** Delivers due events in order; a failure stops the queue until the alarm retries it. */
  flush(notify: NotifySettings | null): Promise<void> {
    return this.deliveries.run(async () => {
      if (notify === null) return;
      for (;;) {
        const now = Date.now();
        const head = this.head();
        if (head === null || head.next_at > now) return;
        let result: Awaited<ReturnType<typeof deliver>>;
        try {
          result = await deliver(notify, head.event, now, NOTIFY_TIMEOUT_MS);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          this.configReports.report(error);
          return;
        }
        const attempts = head.attempts + 1;
        const fields = { org_id: head.event.org_id, event_id: head.event.id, type: head.event.type, attempts };
        if (result.ok) {
          this.transact(() => this.delivered(head.seq));
          log({ event: "notify_delivered", ...fields, status: result.status });
          continue;
        }
        // Events kept while notifications were off are not given up on their first attempt once back.
        if (now - (head.first_attempt_at ?? now) >= GIVE_UP_AFTER_MS && attempts >= GIVE_UP_MIN_ATTEMPTS) {
          this.transact(() => this.deadLetter(head.seq, attempts, result.error, now));
          logWarn({ event: "notify_dead_lettered", ...fields, error: result.error });
          continue;
        }
        const retryAt = now + retryDelay(attempts);
        this.transact(() => this.retryLater(head.seq, attempts, retryAt, now));
        logWarn({ event: "notify_failed", ...fields, error: result.error, retry_at: retryAt });
        return;
      }
    });
  }

  /**
   * A page of the events given up, newest first: those set aside before `before` (a seq; null: the newest),
   * at most `limit`, and the seq to ask for the next page with (null after the oldest). Keyset on seq, so
   * letters set aside between two pages never shift the next one.
   */
  deadLetterPage(before: number | null, limit: number): { letters: DeadLetter[]; next: number | null } {
    const rows = this.sql
      .exec<{ seq: number; event: string; attempts: number; error: string; at: number }>(
        "SELECT seq, event, attempts, error, at FROM dead_letters WHERE seq < ? ORDER BY seq DESC LIMIT ?",
        before ?? Number.MAX_SAFE_INTEGER,
        limit + 1,
      )
      .toArray();
    const shown = rows.slice(0, limit);
    return {
      letters: shown.map(({ seq: _seq, ...row }) => ({ ...row, event: NotifyEvent.parse(JSON.parse(row.event)) })),
      next: rows.length > limit ? shown[shown.length - 1]!.seq : null,
    };
  }

  /** How many events are set aside (at most DEAD_LETTER_LIMIT). */
  deadLetterCount(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM dead_letters").one().n;
  }

  private enqueue(event: NotifyEvent, now: number): void {
    this.sql.exec("INSERT INTO outbox (event, next_at) VALUES (?, ?)", JSON.stringify(event), now);
  }

  /** The oldest undelivered event: events go out strictly in order. */
  private head(): OutboxRow | null {
    const row = this.sql
      .exec<Omit<OutboxRow, "event"> & { event: string }>("SELECT seq, event, attempts, next_at, first_attempt_at FROM outbox ORDER BY seq LIMIT 1")
      .toArray()[0];
    return row ? { ...row, event: NotifyEvent.parse(JSON.parse(row.event)) } : null;
  }

  private delivered(seq: number): void {
    this.sql.exec("DELETE FROM outbox WHERE seq = ?", seq);
  }

  private retryLater(seq: number, attempts: number, nextAt: number, now: number): void {
    this.sql.exec("UPDATE outbox SET attempts = ?, next_at = ?, first_attempt_at = COALESCE(first_attempt_at, ?) WHERE seq = ?", attempts, nextAt, now, seq);
  }

  /** Sets an undeliverable event aside, so the events after it can go out. */
  private deadLetter(seq: number, attempts: number, error: string, now: number): void {
    this.sql.exec("INSERT INTO dead_letters (seq, event, attempts, error, at) SELECT seq, event, ?, ?, ? FROM outbox WHERE seq = ?", attempts, error, now, seq);
    this.sql.exec("DELETE FROM outbox WHERE seq = ?", seq);
    this.sql.exec("DELETE FROM dead_letters WHERE seq NOT IN (SELECT seq FROM dead_letters ORDER BY seq DESC LIMIT ?)", DEAD_LETTER_LIMIT);
  }
}
