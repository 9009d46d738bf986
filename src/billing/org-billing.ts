import { DurableObject } from "cloudflare:workers";
import type { MirrorEntry, OrgState } from "../shared/billing-state.ts";
import { log, logError, logWarn } from "../shared/log.ts";
import { Serialized } from "../shared/serialized.ts";
import { generateIngestKey, hashIngestKey, type IngestKeyRecord } from "../shared/ingest-key.ts";
import { billingStateKey, ingestKeyHashKey } from "../shared/storage-keys.ts";
import type { OverrideCommand } from "./admin-requests.ts";
import { createAutumnClient, type AutumnFailure } from "./autumn-client.ts";
import { readBillingFacts, type BillingFacts } from "./billing-facts.ts";
import { autumnSettings, ConfigError, DEFAULT_GRACE_PERIOD, DEFAULT_RESYNC_INTERVAL, policySettings, type PolicySettings } from "./config.ts";
import { indexEntryOf, mirrorEntryOf, sameProjection } from "./mirror.ts";
import { newOrgRecord, type OrgRecord, type Source } from "./org-record.ts";
import { OrgStore } from "./org-store.ts";
import { orgIndex } from "./org-stub.ts";
import { orgView, type OrgView } from "./org-view.ts";
import { decide } from "./policy.ts";
import { mirrorPending, nextAlarmAt, nextSyncAt, retryDelay } from "./schedule.ts";
import { parseDuration } from "../shared/duration.ts";
import { eventsFor, warningDueAt } from "./notifications.ts";
import { deliver, notifySettings, type NotifySettings } from "./notifier.ts";

/** A webhook is acknowledged before its Autumn read finishes; this alarm re-reads if that read never lands. */
const WEBHOOK_SAFETY_NET_MS = 30_000;
/** Notifications are tried inline once; a slow receiver is retried by the alarm instead of delaying the caller. */
const NOTIFY_TIMEOUT_MS = 3_000;

type Trigger = { source: Source; message_id?: string; note?: string };

/**
 * One per org (`idFromName(orgId)`): the single writer of the org's billing state, its
 * history, its KV mirror and index entries, and its outbound events. Every decision is a
 * fresh Autumn read fed to the pure policy; the object's one alarm is always set to the
 * earliest thing it owes (a read, a publication, an event to deliver or a warning).
 */
export class OrgBilling extends DurableObject<BillingEnv> {
  private readonly store: OrgStore;
  private readonly syncs = new Serialized<OrgRecord>();
  private readonly mirrorWrites = new Serialized<void>();
  private readonly deliveries = new Serialized<void>();

  constructor(ctx: DurableObjectState, env: BillingEnv) {
    super(ctx, env);
    this.store = new OrgStore(ctx.storage.sql);
  }

  /** The admin view: state, reason, deadlines, evidence and history. */
  async view(orgId: string): Promise<OrgView> {
    return orgView(this.load(orgId), this.store.history(), Date.now(), this.settingsOrDefaults());
  }

  /** The ingest Worker's question, answered from storage without calling Autumn. */
  async verdict(orgId: string): Promise<MirrorEntry> {
    return mirrorEntryOf(this.load(orgId));
  }

  /** A verified webhook for this org: recorded (deduplicated by message id), then a fresh read. */
  async webhook(orgId: string, message: { id: string; type: string }): Promise<{ duplicate: boolean; state: OrgState }> {
    const now = Date.now();
    const recorded = this.ctx.storage.transactionSync(() => {
      if (!this.store.markMessageSeen(message.id, now)) return null;
      const record = this.load(orgId);
      const owed = Math.min(record.retry_at ?? Infinity, now + WEBHOOK_SAFETY_NET_MS);
      const next = { ...record, retry_at: owed, version: record.version + 1 };
      this.store.save(next);
      return next;
    });
    if (recorded === null) {
      const state = this.load(orgId).state;
      log({ event: "webhook_duplicate", org_id: orgId, message_id: message.id, type: message.type, state });
      return { duplicate: true, state };
    }
    this.arm();
    const after = await this.sync(orgId, { source: "webhook", message_id: message.id });
    return { duplicate: false, state: after.state };
  }

  /** A fresh Autumn read now, on an operator's request; it also rewrites the mirror entry, replacing a wrong or missing one. */
  async resync(orgId: string): Promise<OrgView> {
    await this.sync(orgId, { source: "admin", note: "resync" });
    this.ctx.storage.transactionSync(() => {
      const record = this.load(orgId);
      this.store.save({ ...record, projection_version: record.version, mirror: { ...record.mirror, version: Math.min(record.mirror.version, record.version - 1) } });
    });
    await this.flushMirror();
    return this.view(orgId);
  }

  /** Support overrides: recorded in history with the note, then applied with a fresh read. */
  async override(orgId: string, command: OverrideCommand): Promise<OrgView> {
    const now = Date.now();
    const settings = this.settingsOrDefaults();
    this.ctx.storage.transactionSync(() => {
      const record = this.load(orgId);
      const until = command.until ?? (command.action === "unsuspend" ? now + settings.gracePeriodMs : null);
      const override =
        command.action === "clear" ? null : { action: command.action === "suspend" ? ("suspend" as const) : ("exempt" as const), until, note: command.note, at: now };
      this.store.save({ ...record, override, version: record.version + 1 });
      this.store.appendHistory({
        at: now,
        kind: "override",
        from: record.state,
        to: record.state,
        reason: record.reason,
        source: "admin",
        message_id: null,
        note: command.note,
        override: { action: command.action, until },
        evidence: null,
      });
    });
    log({ event: "override", org_id: orgId, action: command.action, until: command.until, note: command.note });
    await this.sync(orgId, { source: "admin", note: command.note });
    return this.view(orgId);
  }

  /** Mints a key: its hash goes to INGEST_KEYS (read by the ingest Worker), the key itself only to the caller. */
  async createIngestKey(orgId: string, pepper: string): Promise<{ key_id: string; key: string; created_at: string }> {
    this.load(orgId);
    const { key, keyId } = generateIngestKey();
    const keyHash = await hashIngestKey(pepper, key);
    const createdAt = Date.now();
    const record: IngestKeyRecord = { org_id: orgId, key_id: keyId, created_at: createdAt };
    await this.env.INGEST_KEYS.put(ingestKeyHashKey(keyHash), JSON.stringify(record));
    this.store.addIngestKey({ key_id: keyId, key_hash: keyHash, created_at: createdAt });
    log({ event: "ingest_key_created", org_id: orgId, key_id: keyId });
    return { key_id: keyId, key, created_at: new Date(createdAt).toISOString() };
  }

  async listIngestKeys(orgId: string): Promise<{ key_id: string; created_at: string }[]> {
    this.load(orgId);
    return this.store.ingestKeys().map((k) => ({ key_id: k.key_id, created_at: new Date(k.created_at).toISOString() }));
  }

  /** False when the org has no such active key. The KV entry goes first, so a revoked key never lingers there. */
  async revokeIngestKey(orgId: string, keyId: string): Promise<boolean> {
    this.load(orgId);
    const key = this.store.ingestKeys().find((k) => k.key_id === keyId);
    if (!key) return false;
    await this.env.INGEST_KEYS.delete(ingestKeyHashKey(key.key_hash));
    this.store.revokeIngestKey(keyId, Date.now());
    log({ event: "ingest_key_revoked", org_id: orgId, key_id: keyId });
    return true;
  }

  override async alarm(): Promise<void> {
    const record = this.store.load();
    if (record === null) return;
    const now = Date.now();
    if (mirrorPending(record) && (record.mirror.retry_at ?? 0) <= now) await this.flushMirror();
    this.queueWarningIfDue(now);
    if ((this.store.outboxHead()?.next_at ?? Infinity) <= now) await this.flushOutbox();
    const due = nextSyncAt(this.store.load() ?? record, now, this.settingsOrDefaults());
    if (due !== null && due <= now) await this.sync(record.org_id, { source: "alarm" });
    this.arm();
  }

  private load(orgId: string): OrgRecord {
    const record = this.store.load();
    if (record === null) return newOrgRecord(orgId, Date.now());
    if (record.org_id !== orgId) throw new Error(`OrgBilling for ${record.org_id} was asked about ${orgId}: address objects with idFromName(orgId)`);
    return record;
  }

  private settingsOrDefaults(): PolicySettings {
    try {
      return policySettings(this.env);
    } catch {
      return { gracePeriodMs: parseDuration(DEFAULT_GRACE_PERIOD)!, resyncIntervalMs: parseDuration(DEFAULT_RESYNC_INTERVAL)! };
    }
  }

  /** Serialized: concurrent callers share one fresh read that started after they asked. */
  private sync(orgId: string, trigger: Trigger): Promise<OrgRecord> {
    return this.syncs.run(async () => {
      let facts: BillingFacts | null = null;
      let failure: AutumnFailure | null = null;
      let settings: PolicySettings;
      try {
        settings = policySettings(this.env);
        const result = await readBillingFacts(createAutumnClient(autumnSettings(this.env)), orgId);
        if (result.ok) facts = result.value;
        else failure = result.failure;
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        logError({ event: "not_configured", org_id: orgId, variable: error.variable, message: error.message });
        settings = this.settingsOrDefaults();
        failure = { kind: "invalid_response", message: error.message };
      }
      const record = this.commit(orgId, trigger, facts, failure, settings);
      await this.flushMirror();
      await this.flushOutbox();
      return record;
    });
  }

  /** Applies the policy to the stored record and whatever the read produced, atomically. */
  private commit(orgId: string, trigger: Trigger, facts: BillingFacts | null, failure: AutumnFailure | null, settings: PolicySettings): OrgRecord {
    const now = Date.now();
    const notify = this.notifySettings();
    const { prev, next } = this.ctx.storage.transactionSync(() => {
      const prev = this.load(orgId);
      const decision = decide(prev, facts, now, settings);
      const failures = facts === null ? prev.failures + 1 : 0;
      let next: OrgRecord = {
        ...prev,
        ...decision,
        evidence: facts?.evidence ?? prev.evidence,
        last_sync: { at: now, ok: facts !== null, error: failure?.message ?? null },
        failures,
        retry_at: facts === null ? now + retryDelay(failures, failure?.retryAfterMs) : null,
        version: prev.version + 1,
      };
      if (!sameProjection(prev, next)) next.projection_version = next.version;
      if (next.state !== prev.state) {
        this.store.appendHistory({
          at: now,
          kind: "transition",
          from: prev.state,
          to: next.state,
          reason: next.reason,
          source: trigger.source,
          message_id: trigger.message_id ?? null,
          note: trigger.note ?? null,
          override: null,
          evidence: next.evidence,
        });
      }
      if (notify) {
        const owed = eventsFor(prev, next, now, notify.warningMs);
        for (const event of owed.events) this.store.enqueue(event, now);
        next = owed.record;
      }
      this.store.save(next);
      return { prev, next };
    });
    this.arm();

    if (failure) {
      logWarn({ event: "sync_failed", org_id: orgId, source: trigger.source, kind: failure.kind, status: failure.status, code: failure.code, error: failure.message, failures: next.failures, retry_at: next.retry_at, state: next.state });
    } else {
      log({ event: "sync", org_id: orgId, source: trigger.source, message_id: trigger.message_id, past_due: facts?.pastDue, has_paid: facts?.hasPaid, state: next.state, reason: next.reason, suspend_at: next.suspend_at });
    }
    if (next.state !== prev.state) {
      log({ event: "transition", org_id: orgId, from: prev.state, to: next.state, reason: next.reason, source: trigger.source, message_id: trigger.message_id, note: trigger.note, anchor: next.anchor, suspend_at: next.suspend_at, version: next.version });
    }
    return next;
  }

  /** Publishes the record to the KV mirror and the index until both match it; on failure the alarm retries with backoff. */
  private flushMirror(): Promise<void> {
    return this.mirrorWrites.run(async () => {
      for (;;) {
        const record = this.store.load();
        if (record === null || !mirrorPending(record)) return;
        const entry = mirrorEntryOf(record);
        try {
          await Promise.all([this.env.BILLING_STATE.put(billingStateKey(record.org_id), JSON.stringify(entry)), orgIndex(this.env).upsert(indexEntryOf(record))]);
        } catch (error) {
          const now = Date.now();
          const failed = this.ctx.storage.transactionSync(() => {
            const current = this.store.load()!;
            const failures = current.mirror.failures + 1;
            const next = { ...current, mirror: { ...current.mirror, failures, retry_at: now + retryDelay(failures) } };
            this.store.save(next);
            return next;
          });
          logWarn({ event: "mirror_write_failed", org_id: record.org_id, version: entry.version, error: String(error), retry_at: failed.mirror.retry_at });
          this.arm();
          return;
        }
        this.ctx.storage.transactionSync(() => {
          const current = this.store.load()!;
          this.store.save({ ...current, mirror: { version: Math.max(current.mirror.version, entry.version), retry_at: null, failures: 0 } });
        });
        log({ event: "mirror_written", org_id: record.org_id, state: entry.state, version: entry.version });
        this.arm();
      }
    });
  }

  /** The warning owed once per overdue period, SUSPENSION_WARNING before its deadline. */
  private queueWarningIfDue(now: number): void {
    const notify = this.notifySettings();
    if (!notify) return;
    this.ctx.storage.transactionSync(() => {
      const record = this.store.load();
      if (record === null || (warningDueAt(record, notify.warningMs) ?? Infinity) > now) return;
      const owed = eventsFor(record, record, now, notify.warningMs);
      for (const event of owed.events) this.store.enqueue(event, now);
      this.store.save({ ...owed.record, version: record.version + 1 });
    });
  }

  /** Delivers queued events strictly in order; a failure stops the queue until the alarm retries it. */
  private flushOutbox(): Promise<void> {
    return this.deliveries.run(async () => {
      const notify = this.notifySettings();
      if (!notify) return;
      for (;;) {
        const now = Date.now();
        const head = this.store.outboxHead();
        if (head === null || head.next_at > now) break;
        let result: Awaited<ReturnType<typeof deliver>>;
        try {
          result = await deliver(this.env, notify.url, head.event, now, NOTIFY_TIMEOUT_MS);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          result = { ok: false, error: error.message };
        }
        const fields = { org_id: head.event.org_id, event_id: head.event.id, type: head.event.type, attempts: head.attempts + 1 };
        if (result.ok) {
          this.store.delivered(head.seq);
          log({ event: "notify_delivered", ...fields, status: result.status });
          continue;
        }
        const retryAt = now + retryDelay(head.attempts + 1);
        this.store.retryLater(head.seq, head.attempts + 1, retryAt);
        logWarn({ event: "notify_failed", ...fields, error: result.error, retry_at: retryAt });
        break;
      }
      this.arm();
    });
  }

  private notifySettings(): NotifySettings | null {
    try {
      return notifySettings(this.env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      logError({ event: "not_configured", variable: error.variable, message: error.message });
      return null;
    }
  }

  /** Sets the object's single alarm to the earliest thing it owes, from what is stored. */
  private arm(): void {
    const record = this.store.load();
    const notify = this.notifySettings();
    const at =
      record === null
        ? null
        : nextAlarmAt(record, Date.now(), this.settingsOrDefaults(), {
            outboxAt: this.store.outboxHead()?.next_at ?? null,
            warningAt: notify ? warningDueAt(record, notify.warningMs) : null,
          });
    if (at === null) void this.ctx.storage.deleteAlarm();
    else void this.ctx.storage.setAlarm(at);
  }
}
