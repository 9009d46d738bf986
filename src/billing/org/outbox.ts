import { log, logWarn } from "../../shared/log.ts";
import { Serialized } from "../../shared/serialized.ts";
import { ConfigError } from "../config.ts";
import { eventsFor, isRestored, warningDueAt } from "./notifications.ts";
import { deliver, type NotifySettings } from "./notifier.ts";
import type { OrgRecord } from "./record.ts";
import type { OrgStore, Transact } from "./store.ts";
import type { ParkingProgress } from "./parking.ts";
import { retryDelay } from "./schedule.ts";

/** Events are tried inline once; a slow receiver is retried by the alarm instead of delaying the caller. */
const NOTIFY_TIMEOUT_MS = 3_000;
/** Attempts an event gets before it can be set aside, however long ago the first one was. */
export const GIVE_UP_MIN_ATTEMPTS = 10;
/** An event the receiver keeps refusing for this long after its first attempt (and GIVE_UP_MIN_ATTEMPTS times) is set aside, so it stops holding back the org's later events. */
export const GIVE_UP_AFTER_MS = 3 * 86_400_000;

/**
 * The org's outbound events (`NOTIFY_URL`): queued in the same transaction as the change
 * that owes them, delivered strictly in order, retried with backoff by the object's alarm,
 * and set aside as dead letters after GIVE_UP_AFTER_MS. With notifications off (or
 * misconfigured) queued events are kept and left alone until they are back.
 */
export class Outbox {
  private readonly deliveries = new Serialized<void>();
  private readonly store: OrgStore;
  private readonly transact: Transact;
  private readonly reportConfig: (error: ConfigError) => void;
  /** The org's parking progress (the object's key-value storage), carried by org.restored. */
  private readonly parking: () => ParkingProgress | null;

  constructor(store: OrgStore, transact: Transact, reportConfig: (error: ConfigError) => void, parking: () => ParkingProgress | null = () => null) {
    this.store = store;
    this.transact = transact;
    this.reportConfig = reportConfig;
    this.parking = parking;
  }

  /** Inside the caller's transaction: queues what the change owes; returns the record with its warning marked. */
  queueFor(prev: OrgRecord, next: OrgRecord, now: number, notify: NotifySettings | null): OrgRecord {
    if (notify === null) return next;
    // Read only when the org is restored: the one event that carries it.
    const owed = eventsFor(prev, next, now, notify.warningMs, isRestored(prev.state, next.state) ? this.parking() : null);
    for (const event of owed.events) this.store.enqueue(event, now);
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
    const head = this.store.outboxHead()?.next_at ?? null;
    const warning = warningDueAt(record, notify.warningMs);
    return head === null ? warning : warning === null ? head : Math.min(head, warning);
  }

  /** Delivers due events in order; a failure stops the queue until the alarm retries it. */
  flush(notify: NotifySettings | null): Promise<void> {
    return this.deliveries.run(async () => {
      if (notify === null) return;
      for (;;) {
        const now = Date.now();
        const head = this.store.outboxHead();
        if (head === null || head.next_at > now) return;
        let result: Awaited<ReturnType<typeof deliver>>;
        try {
          result = await deliver(notify, head.event, now, NOTIFY_TIMEOUT_MS);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          this.reportConfig(error);
          return;
        }
        const attempts = head.attempts + 1;
        const fields = { org_id: head.event.org_id, event_id: head.event.id, type: head.event.type, attempts };
        if (result.ok) {
          this.transact(() => this.store.delivered(head.seq));
          log({ event: "notify_delivered", ...fields, status: result.status });
          continue;
        }
        // Events kept while notifications were off are not given up on their first attempt once back.
        if (now - (head.first_attempt_at ?? now) >= GIVE_UP_AFTER_MS && attempts >= GIVE_UP_MIN_ATTEMPTS) {
          this.transact(() => this.store.deadLetter(head.seq, attempts, result.error, now));
          logWarn({ event: "notify_dead_lettered", ...fields, error: result.error });
          continue;
        }
        const retryAt = now + retryDelay(attempts);
        this.transact(() => this.store.retryLater(head.seq, attempts, retryAt, now));
        logWarn({ event: "notify_failed", ...fields, error: result.error, retry_at: retryAt });
        return;
      }
    });
  }
}
