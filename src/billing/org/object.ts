import { DurableObject } from "cloudflare:workers";
import type { EnforcementMode, MirrorEntry, OrgState } from "../../shared/billing-state.ts";
import { generateIngestKey, hashIngestKey } from "../../shared/ingest-key.ts";
import { log, logError, logWarn } from "../../shared/log.ts";
import { Serialized } from "../../shared/serialized.ts";
import { ParkingDelta, UsageDeliveries, type IngestKeyListing, type OrgBillingRpc, type RecordParkingAnswer, type RecordUsageAnswer, type UsageDelivery } from "../../shared/contract.ts";
import type { EnforcementBody, OverrideCommand } from "../admin/requests.ts";
import { createAutumnClient, readBillingFacts, type AutumnFailure } from "../autumn/client.ts";
import type { BillingFacts } from "../autumn/answers.ts";
import { autumnSettings, ConfigError, ConfigReports, DEFAULT_POLICY, enforcementMode, NO_USAGE, policySettings, settingOrError, usageSettings, type AutumnSettings, type PolicySettings, type UsageSettings } from "../config.ts";
import { EVENT_TABLES, modeOf, notifySettings, Outbox, type NotifySettings } from "./events.ts";
import { AWAITING_AUTUMN_CAP_MS, decide, earliest, limitChanges, limitDisagreements, limitsFrom, mirrorPending, newOrgRecord, nextAlarmAt, nextFollowUp, nextSyncAt, retryDelay, type OrgRecord, type Source } from "./record.ts";
import { MAX_ACTIVE_KEYS, mirrorEntryOf, OrgStore, Publisher, sameProjection, type Transact } from "./store.ts";
import { deadLetterPageView, ORG_VIEW_DEAD_LETTERS, orgView, type DeadLetterPageView, type OrgView } from "./view.ts";
import { addParking, parkedFiguresDiffer, parkedPublicationAt, waitingBytes } from "./parking.ts";
import type { Disagreement } from "../reconcile/compare.ts";
import { USAGE_TABLES, UsageLedger } from "../usage/ledger.ts";
import { ACTIVITY_TABLES, ActivityLog, activityView, mergeActivity, wouldRefuseDue, type ActivityRow } from "../usage/activity.ts";
import { hourOf } from "../../shared/usage.ts";
import { orgIndex } from "../index/object.ts";
import { meteredBalances } from "../autumn/answers.ts";
import { UsageReporter } from "../usage/reporter.ts";
import { usageView } from "../usage/usage-view.ts";
import { NO_ACTIVITY } from "../usage/activity-view.ts";

/** The webhook is recorded before its Autumn read starts; should that read never land (a failure, an eviction), this alarm reads again. */
const WEBHOOK_SAFETY_NET_MS = 30_000;

/**
 * What caused a read, and what the read's one transaction applies besides the policy: an override
 * recorded just before the decision (`override`), or the projection marked unpublished so the
 * publication rewrites a wrong or missing entry (`republish`).
 */
type Trigger = { source: Source; message_id?: string; note?: string; override?: { command: OverrideCommand; at: number }; republish?: boolean };
/** The deliveries queue (README, "Parking"), bound on the billing Worker as a producer only; absent when parking is off. */
type DeliveriesEnv = { DELIVERIES?: { send(body: { org_id: string }): Promise<unknown> } };
type Settings = {
  policy: PolicySettings;
  autumn: AutumnSettings | ConfigError;
  notify: NotifySettings | null;
  /** The billing Worker's ENFORCEMENT (enforce while invalid: the setting's problem is reported like the others). */
  enforcement: EnforcementMode;
  /** Metering off (NO_USAGE) when its settings are invalid; `usageProblem` then says why. */
  usage: UsageSettings;
  usageProblem: ConfigError | null;
  problem: ConfigError | null;
};

/**
 * One per org, reached with `getByName(orgId)`: the single writer of the org's billing state,
 * its history, its publication (KV mirror and index) and its outbound events. Every decision is
 * a fresh Autumn read fed to the pure policy.
 *
 * One pass per entry point (each public method that can change what the alarm owes, and the alarm
 * itself; `pass`. `recordParking` owes the alarm nothing and only transacts):
 * - the settings are read once, at the start, and handed down to whatever needs them;
 * - every write goes through `transact` (one `transactionSync`, nothing else), and a read's decision
 *   is committed in one transaction (`commit`), with what the entry point adds to it (an override,
 *   a republication) inside the same transaction;
 * - the alarm is armed once, at the end (in a `finally`, so a failure still owes its retry), to the
 *   earliest thing the object owes (a read, a publication, an event, a warning or a usage report).
 *   The one deliberate exception: `webhook()` also brings the alarm forward to its safety-net read
 *   right after recording the message, so that read is owed even if the object is evicted before
 *   its own read lands.
 * What happens after an awaited call (a publication, a delivery, a usage report) is recorded in a
 * transaction of its own once its answer is in: no transaction spans an await.
 *
 * A webhook's 2xx goes out when `webhook()` returns: after the message is recorded as seen (its own
 * transaction, before the read) AND its whole sync has run: the Autumn read, the decision committed,
 * the publication to KV and the index, the outbound events delivered or queued for the alarm, and the
 * parked batches' delivery queued when a suspension ends. So a 2xx means the event is durably recorded
 * and one read was decided and published. A failed Autumn read or KV write still answers 2xx (the event
 * is recorded; Svix need not send it again): the alarm reads or publishes again with backoff. A
 * redelivery within the dedupe window is a duplicate and reads nothing.
 */
export class OrgBilling extends DurableObject<BillingEnv> implements OrgBillingRpc {
  private readonly store: OrgStore;
  private readonly publisher: Publisher;
  private readonly outbox: Outbox;
  private readonly usage: UsageLedger;
  private readonly activity: ActivityLog;
  /** The hour the would-be refusals last went to the index (in memory: a new instance writes once more at most). */
  private wouldRefuseIndexedHour: number | null = null;
  private readonly reporter: UsageReporter;
  private readonly syncs = new Serialized<OrgRecord>();
  private readonly configReports: ConfigReports;
  /** Runs a storage change atomically (the store's): every write of the object and its collaborators goes through it. */
  private readonly transact: Transact;

  constructor(ctx: DurableObjectState, env: BillingEnv) {
    super(ctx, env);
    this.store = new OrgStore(ctx.storage, [EVENT_TABLES, USAGE_TABLES, ACTIVITY_TABLES]);
    const transact = this.store.transact;
    this.configReports = new ConfigReports(ctx.id.name ?? null);
    this.publisher = new Publisher(env, this.store, transact);
    this.outbox = new Outbox(ctx.storage.sql, this.store, transact, this.configReports);
    this.usage = new UsageLedger(ctx.storage.sql);
    this.activity = new ActivityLog(ctx.storage.sql);
    this.reporter = new UsageReporter(this.usage, transact);
    this.transact = transact;
  }

  /** The admin view: state, reason, deadlines, evidence, history and undeliverable events. */
  async view(): Promise<OrgView> {
    return this.viewWith(this.settings());
  }

  /**
   * The view, its activity the object's own rows merged with its index shard's (one RPC, started first so it runs
   * while the storage is read; the storage reads come before the await, so the view is of one moment). A failed
   * shard read leaves the object's rows, marked `incomplete`: the rest of the view is whole.
   */
  private async viewWith(settings: Settings): Promise<OrgView> {
    const now = Date.now();
    const shardRows = this.shardActivity(now);
    const record = this.load();
    // The newest page only: the rest through deadLetters() (GET /admin/orgs/{id}/dead-letters).
    const deadLetters = this.outbox.deadLetterPage(null, ORG_VIEW_DEAD_LETTERS);
    const ownActivity = this.activity.points(now);
    const view: OrgView = {
      ...orgView(record, this.store.history(), deadLetters.letters, now, settings.policy, earliest(this.outbox.dueAt(record, settings.notify), this.usage.dueAt(settings.usage.reportIntervalMs)), this.store.parking(), NO_ACTIVITY, { count: this.outbox.deadLetterCount(), next: deadLetters.next }),
      usage: usageView(record, this.usage.rows(), settings.usage, now),
      enforcement_mode: modeOf(record, settings.enforcement),
    };
    const shard = await shardRows;
    return { ...view, activity: activityView(mergeActivity(ownActivity, shard ?? []), shard === null) };
  }

  /**
   * The org's activity kept by its index shard (since issue 20 the ingest Worker sends it there: index/activity.ts),
   * or null when it could not be read (logged). Never rejects, so the view can start it before its storage reads.
   */
  private async shardActivity(now: number): Promise<ActivityRow[] | null> {
    try {
      return await orgIndex(this.env).activityOf(this.orgId, now);
    } catch (error) {
      logWarn({ event: "activity_read_failed", org_id: this.ctx.id.name ?? null, error: error instanceof Error ? error.message : String(error) });
      return null;
    }
  }

  /** A page of the org's dead letters, newest first, below `cursor` (a seq; null: from the newest). Reads only. */
  async deadLetters(query: { cursor: number | null; limit: number }): Promise<DeadLetterPageView> {
    const page = this.outbox.deadLetterPage(query.cursor, query.limit);
    return deadLetterPageView(page.letters, this.outbox.deadLetterCount(), page.next);
  }

  /**
   * Usage from the ingest Worker's queue (README, "Usage metering"), folded into the ledger at most
   * once per queue message id, then reported to Autumn by the alarm. Refused (`ok: false`, and the
   * consumer has the queue deliver the messages again) while USAGE_FEATURES is invalid: usage is
   * kept on the queue, never dropped. Malformed messages are refused the same way and change nothing.
   */
  async recordUsage(messages: UsageDelivery[]): Promise<RecordUsageAnswer> {
    const parsed = UsageDeliveries.safeParse(messages);
    if (!parsed.success) {
      logWarn({ event: "usage_refused", org_id: this.orgId, error: parsed.error.message });
      return { ok: false, error: `malformed usage messages: ${parsed.error.issues[0]?.message ?? ""}` };
    }
    return this.pass(async (settings) => {
      if (settings.usageProblem !== null) return { ok: false as const, error: `usage is not recorded until the configuration is fixed: ${settings.usageProblem.message}` };
      const now = Date.now();
      // The activity of the messages the ledger found new, in the same transaction: each message's once. Only messages from
      // ingest Workers from before issue 20 carry activity (newer ones send it to the index shards): this table ages out after them.
      const result = this.transact(() => {
        const folded = this.usage.fold(parsed.data, settings.usage.features, now);
        return { ...folded, activity: this.activity.fold(folded.fresh, now) };
      });
      if (wouldRefuseDue(result.activity, this.wouldRefuseIndexedHour, now)) await this.indexWouldRefuse(now);
      log({ event: "usage_recorded", org_id: this.orgId, messages: parsed.data.length, recorded: result.recorded, duplicates: result.duplicates });
      if (result.abandoned.length > 0) {
        // Usage may be lost if a batch from these ever arrives: never silent (bounded: the first 10 named).
        logError({ event: "usage_gaps_abandoned", org_id: this.orgId, gaps: result.abandoned.length, first: result.abandoned.slice(0, 10), message: "a stream had more gaps than the ledger keeps; batches from the oldest are now taken for duplicates" });
      }
      if (result.unmapped > 0) logWarn({ event: "usage_unmapped", org_id: this.orgId, items: result.unmapped, message: "the ingest Worker counted signals this Worker's USAGE_FEATURES does not map: set the same USAGE_FEATURES on both Workers" });
      return { ok: true, recorded: result.recorded, duplicates: result.duplicates };
    });
  }

  /** The overview's would-be-refused list (index/object.ts): a failure is logged and tried at the next fold; the usage stays recorded. */
  private async indexWouldRefuse(now: number): Promise<void> {
    try {
      const answer = await orgIndex(this.env).recordWouldRefuse(this.orgId, this.activity.wouldRefuseHours(now));
      if (!answer.ok) throw new Error("the index refused the hours as malformed");
      this.wouldRefuseIndexedHour = hourOf(now);
    } catch (error) {
      logWarn({ event: "would_refuse_index_failed", org_id: this.orgId, error: error instanceof Error ? error.message : String(error) });
    }
  }

  /**
   * Progress of the org's parked batches, reported by the ingest Worker (throttled reports of
   * batches parked; deliveries, expiry and refusals from the delivery queue and the cleanup).
   * Never called per ingest request. A malformed report is refused (`ok: false`) and changes nothing.
   * Answers the bytes the org has parked now (the ingest Worker's per-org cap); an empty report only asks.
   */
  async recordParking(delta: ParkingDelta): Promise<RecordParkingAnswer> {
    const parsed = ParkingDelta.strict().safeParse(delta);
    if (!parsed.success) {
      logWarn({ event: "parking_report_refused", org_id: this.orgId, error: parsed.error.message });
      return { ok: false };
    }
    if (Object.keys(parsed.data).length === 0) return { ok: true, waiting_bytes: waitingBytes(this.store.parking()) };
    // Parking progress owes the alarm nothing (no settings, no arming), except a publication put off by the throttle below.
    const now = Date.now();
    const { next, publishAt } = this.transact(() => {
      const prev = this.store.parking();
      let next = addParking(prev, parsed.data, now);
      const publishAt = parkedFiguresDiffer(prev, next) ? this.owePublication(next.published_at, now) : null;
      if (publishAt !== null) next = { ...next, published_at: publishAt };
      this.store.saveParking(next);
      return { next, publishAt };
    });
    if (publishAt !== null && publishAt <= now) {
      await this.publisher.flush();
      // This entry point is no pass: a publication the flush left owed (a failed write, or figures a report
      // changed while it was writing, put off by the throttle) needs the alarm brought forward here.
      const after = this.store.load();
      if (after !== null && mirrorPending(after)) await this.armNoLaterThan(after.mirror.retry_at ?? Date.now());
    } else if (publishAt !== null) await this.armNoLaterThan(publishAt);
    return { ok: true, waiting_bytes: waitingBytes(next) };
  }

  /**
   * Inside recordParking's transaction: the parked figures changed, and the mirror entry carries them (the
   * customer's status reads them there). A publication is owed now, or a minute after the last one they owed
   * (`lastAt`), so a parking org's reports rewrite its entries at most once a minute; the alarm publishes a
   * put-off one (`mirror.retry_at`). Null when a publication is owed already: one not yet started carries the
   * figures current then, and one whose writes are in flight owes these figures itself when it lands
   * (`Publisher.flush` compares what it wrote with the progress).
   */
  private owePublication(lastAt: number | null, now: number): number | null {
    const record = this.load();
    if (mirrorPending(record)) return null;
    const at = parkedPublicationAt(lastAt, now);
    const version = record.version + 1;
    this.store.save({ ...record, version, projection_version: version, mirror: { ...record.mirror, retry_at: at > now ? at : null } });
    return at;
  }

  /** The ingest Worker's question, answered from storage without calling Autumn. */
  async verdict(): Promise<MirrorEntry> {
    return mirrorEntryOf(this.load(), this.store.parking());
  }

  /** A verified webhook for this org: recorded (deduplicated by message id), then a fresh read. */
  async webhook(message: { id: string; type: string }): Promise<{ duplicate: boolean; state: OrgState }> {
    return this.pass(async (settings) => {
      const now = Date.now();
      const safetyNetAt = this.transact(() => {
        if (!this.store.markMessageSeen(message.id, now)) return null;
        const record = this.load();
        const retryAt = Math.min(record.retry_at ?? Infinity, now + WEBHOOK_SAFETY_NET_MS);
        this.store.save({ ...record, retry_at: retryAt, version: record.version + 1 });
        return retryAt;
      });
      if (safetyNetAt === null) {
        const state = this.load().state;
        log({ event: "webhook_duplicate", org_id: this.orgId, message_id: message.id, type: message.type, state });
        return { duplicate: true, state };
      }
      // The one arm before the end: the safety-net read is owed even if this object is evicted mid-read.
      await this.armNoLaterThan(safetyNetAt);
      const after = await this.sync({ source: "webhook", message_id: message.id }, settings);
      return { duplicate: false, state: after.state };
    });
  }

  /** The reconciliation sweep saw Autumn disagree with this org's state: read Autumn now and decide. */
  async reconcile(disagreement: Disagreement): Promise<OrgState> {
    return this.pass(async (settings) => (await this.sync({ source: "reconcile", note: disagreement }, settings)).state);
  }

  /** A fresh Autumn read now, on an operator's request; it also rewrites the mirror entry, replacing a wrong or missing one. */
  async resync(): Promise<OrgView> {
    return this.pass(async (settings) => {
      await this.sync({ source: "admin", note: "resync", republish: true }, settings);
      return this.viewWith(settings);
    });
  }

  /**
   * Support overrides: a fresh read, then one transaction records the override (and its history
   * entry, with the note) and applies the policy to it.
   */
  async override(command: OverrideCommand): Promise<OrgView> {
    return this.pass(async (settings) => {
      await this.sync({ source: "admin", note: command.note, override: { command, at: Date.now() } }, settings);
      return this.viewWith(settings);
    });
  }

  /**
   * The org's own enforcement mode (issue 21: a canary), with its note: one transaction records it on
   * the record and in history (an `override` entry), marks the projection changed, then the mirror
   * entry and every key's entry are republished so the ingest Worker follows within its cache bounds.
   * No Autumn read and no decision: the billing state is what it was.
   */
  async setEnforcement(command: EnforcementBody): Promise<OrgView> {
    return this.pass(async (settings) => {
      const at = Date.now();
      const { prev, next } = this.transact(() => {
        const record = this.load();
        this.store.appendHistory({ at, kind: "override", from: record.state, to: record.state, reason: record.reason, source: "admin", message_id: null, note: command.note, override: null, evidence: null, enforcement: command.mode });
        const enforcement = command.mode === "default" ? null : { mode: command.mode, note: command.note, at };
        let next = { ...record, enforcement, version: record.version + 1 };
        if (!sameProjection(record, next)) next.projection_version = next.version;
        // A suspended org cut off or let through by this: `org.enforcement_changed` (events.ts).
        next = this.outbox.queueFor(record, next, at, settings.notify);
        this.store.save(next);
        return { prev: record, next };
      });
      log({ event: "enforcement_override", org_id: this.orgId, mode: command.mode, note: command.note });
      await this.publisher.flush();
      await this.outbox.flush(settings.notify);
      // Observed now, no longer refused: what was kept while it was enforced goes upstream (parking/deliveries.ts).
      if (next.state === "suspended" && modeOf(next, settings.enforcement) === "observe" && modeOf(prev, settings.enforcement) === "enforce") await this.deliverParked();
      return this.viewWith(settings);
    });
  }

  /**
   * Mints a key: its hash goes to INGEST_KEYS (read by the ingest Worker) with the org's verdict, the key
   * itself only to the caller. Stored first, then written behind any publication in flight, so every later
   * publication rewrites it. At most MAX_ACTIVE_KEYS, so a publication stays a bounded number of writes.
   */
  async createIngestKey(pepper: string): Promise<{ ok: true; key_id: string; key: string; created_at: string } | { ok: false; error: "too_many_keys" }> {
    return this.pass(async () => {
      const orgId = this.orgId;
      const { key, keyId } = generateIngestKey();
      const stored = { key_id: keyId, key_hash: await hashIngestKey(pepper, key), created_at: Date.now() };
      const added = this.transact(() => {
        if (this.store.ingestKeys().length >= MAX_ACTIVE_KEYS) return false;
        this.store.addIngestKey(stored);
        // The org's first key: its new record is kept, so every key minted before anything is published carries
        // the same verdict (the same `since`). An ok, never-synced record owes no read and no publication.
        if (this.store.load() === null) this.store.save(newOrgRecord(orgId, stored.created_at));
        return true;
      });
      if (!added) return { ok: false as const, error: "too_many_keys" as const };
      await this.publisher.writeKey(orgId, stored);
      log({ event: "ingest_key_created", org_id: orgId, key_id: keyId });
      return { ok: true as const, key_id: keyId, key, created_at: new Date(stored.created_at).toISOString() };
    });
  }


  async listIngestKeys(): Promise<IngestKeyListing> {
    return this.store.ingestKeys().map((k) => ({ key_id: k.key_id, created_at: new Date(k.created_at).toISOString() }));
  }

  /**
   * False when the org never had such a key. Revoked in storage first (so no publication starting
   * later writes it), then deleted from KV behind any publication in flight; revoking again repeats
   * the delete, so a revocation whose delete failed can simply be retried.
   */
  async revokeIngestKey(keyId: string): Promise<boolean> {
    return this.pass(async () => {
      const now = Date.now();
      const key = this.transact(() => {
        const key = this.store.ingestKey(keyId);
        if (key?.revoked_at === null) this.store.revokeIngestKey(keyId, now);
        return key;
      });
      if (key === null) return false;
      await this.publisher.deleteKey(key);
      log({ event: "ingest_key_revoked", org_id: this.orgId, key_id: keyId });
      return true;
    });
  }

  /** Whatever is due, in order: usage reports, a publication retry, the warning, event deliveries, a read. The alarm that woke it is spent: `pass` owes the next one even when nothing changed. */
  override async alarm(): Promise<void> {
    return this.pass(async (settings) => {
      if ((this.usage.dueAt(settings.usage.reportIntervalMs) ?? Infinity) <= Date.now()) await this.reportUsage(settings);
      const record = this.store.load();
      if (record === null) return;
      const now = Date.now();
      if (mirrorPending(record) && (record.mirror.retry_at ?? 0) <= now) await this.publisher.flush();
      this.outbox.queueWarningIfDue(now, settings.notify);
      if ((this.outbox.dueAt(this.store.load(), settings.notify) ?? Infinity) <= now) await this.outbox.flush(settings.notify);
      const due = nextSyncAt(this.store.load() ?? record, now, settings.policy);
      if (due !== null && due <= now) await this.sync({ source: "alarm" }, settings);
    });
  }

  /** One entry point's pass: the settings read once and handed down; the alarm armed once, at the end, whatever happened. */
  private async pass<T>(run: (settings: Settings) => Promise<T>): Promise<T> {
    const settings = this.settings();
    try {
      return await run(settings);
    } finally {
      this.arm(settings);
    }
  }

  /**
   * Sends the usage reports due. A report whose answer disagrees with the limits held (a balance used up
   * that is not limited, or a limit whose balance shows room) makes the object read Autumn now (source
   * `metering`), so the limit is decided or lifted without waiting for a webhook; an answer that agrees reads nothing.
   */
  private async reportUsage(settings: Settings): Promise<void> {
    const client = settings.autumn instanceof ConfigError ? { kind: "not_configured" as const, message: settings.autumn.message } : createAutumnClient(settings.autumn);
    const { answers } = await this.reporter.flush(this.orgId, client, { intervalMs: settings.usage.reportIntervalMs, refusedRetryMs: settings.policy.resyncIntervalMs });
    const { reached, room } = limitDisagreements(answers, this.load().limits, Date.now());
    const notes = [...(reached.length > 0 ? [`balance used up: ${reached.join(", ")}`] : []), ...(room.length > 0 ? [`balance has room: ${room.join(", ")}`] : [])];
    if (notes.length > 0) await this.sync({ source: "metering", note: notes.join("; ") }, settings);
  }

  /** The org this object serves: its name, as given to `getByName`. */
  private get orgId(): string {
    const name = this.ctx.id.name ?? this.store.load()?.org_id;
    if (!name) {
      throw new Error(
        "OrgBilling has no org id: reach it with env.ORG_BILLING.getByName(orgId) (see orgBilling in org/object.ts), not with newUniqueId() or idFromString(), which carry no name",
      );
    }
    return name;
  }

  /** The stored record, or a new one for an org never seen (nothing is stored until something changes). */
  private load(): OrgRecord {
    return this.store.load() ?? newOrgRecord(this.orgId, Date.now());
  }

  /**
   * Every setting the object uses, read in one place. An invalid policy setting falls back to
   * the defaults for scheduling but blocks decisions (see `sync`); invalid notifications are off.
   * Each problem is logged at most once an hour per object, however often the alarm runs.
   */
  private settings(): Settings {
    const policy = settingOrError(() => policySettings(this.env));
    const autumn = settingOrError(() => autumnSettings(this.env));
    const notify = settingOrError(() => notifySettings(this.env));
    const usage = settingOrError(() => usageSettings(this.env));
    const enforcement = settingOrError(() => enforcementMode(this.env));
    const problems = [policy, autumn, notify, usage, enforcement].filter((value): value is ConfigError => value instanceof ConfigError);
    for (const problem of problems) this.configReports.report(problem);
    return {
      policy: policy instanceof ConfigError ? DEFAULT_POLICY : policy,
      autumn,
      notify: notify instanceof ConfigError ? null : notify,
      enforcement: enforcement instanceof ConfigError ? "enforce" : enforcement,
      usage: usage instanceof ConfigError ? NO_USAGE : usage,
      usageProblem: usage instanceof ConfigError ? usage : null,
      problem: policy instanceof ConfigError ? policy : autumn instanceof ConfigError ? autumn : null,
    };
  }

  /**
   * One fresh read, decided and committed, then published and announced. Concurrent callers
   * with the same trigger share one read that started after they asked; different triggers
   * get reads of their own, so history names what caused each change.
   */
  private sync(trigger: Trigger, settings: Settings): Promise<OrgRecord> {
    // An override is never merged with another caller's read: each one's own command is applied.
    const key = trigger.override ? `override:${crypto.randomUUID()}` : trigger.source === "admin" ? `admin:${trigger.note ?? ""}` : trigger.source;
    return this.syncs.run(async () => {
      const before = this.store.load()?.state ?? "ok";
      let read: { facts: BillingFacts; failure: null } | { facts: null; failure: AutumnFailure };
      if (settings.problem !== null) {
        read = { facts: null, failure: { kind: "not_configured", message: settings.problem.message } };
      } else {
        const result = await readBillingFacts(createAutumnClient(settings.autumn as AutumnSettings), this.orgId);
        read = result.ok ? { facts: result.value, failure: null } : { facts: null, failure: result.failure };
      }
      const record = this.commit(trigger, read.facts, read.failure, settings);
      await this.publisher.flush();
      await this.outbox.flush(settings.notify);
      // Out of suspension, whatever the state now (ok, or overdue: exempted, unsuspended, lapsed): the parked batches go.
      if (before === "suspended" && record.state !== "suspended") await this.deliverParked();
      return record;
    }, key);
  }

  /** Applies the policy to the stored record and whatever the read produced, atomically. */
  private commit(trigger: Trigger, facts: BillingFacts | null, failure: AutumnFailure | null, settings: Settings): OrgRecord {
    const now = Date.now();
    const orgId = this.orgId;
    const { prev, next } = this.transact(() => {
      const prev = trigger.override ? this.applyOverride(this.load(), trigger.override.command, trigger.override.at, settings) : this.load();
      const decision = decide(prev, facts, now, settings.policy);
      // Autumn not knowing the customer is no failure to retry: it is re-read on the resync schedule, not hammered.
      const unknown = failure?.kind === "unknown_customer";
      const failures = facts === null && !unknown ? prev.failures + 1 : 0;
      // While a suspension waits only for Autumn, retry often: it then follows Autumn's recovery within a minute.
      const retryCap = decision.reason === "grace_elapsed_awaiting_autumn" ? AWAITING_AUTUMN_CAP_MS : undefined;
      const limits = facts === null ? prev.limits : limitsFrom(facts.balances, settings.usage.features, prev.limits, now);
      let next: OrgRecord = {
        ...prev,
        ...decision,
        evidence: facts === null ? prev.evidence : { ...facts.evidence, balances: meteredBalances(facts.balances, settings.usage.features) },
        limits,
        last_sync: { at: now, ok: facts !== null, error: failure?.message ?? null, customer_unknown: unknown },
        failures,
        retry_at: facts === null && !unknown ? now + retryDelay(failures, failure?.retryAfterMs, retryCap) : null,
        follow_up: nextFollowUp(prev.follow_up, { source: trigger.source, ok: facts !== null, state: decision.state }, now),
        version: prev.version + 1,
      };
      if (!sameProjection(prev, next)) next.projection_version = next.version;
      // An operator's resync rewrites the entry even when nothing changed, replacing a wrong or missing one.
      if (trigger.republish) next = { ...next, projection_version: next.version, mirror: { ...next.mirror, version: Math.min(next.mirror.version, next.version - 1) } };
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
      this.recordLimitChanges(prev, next, trigger, now);
      next = this.outbox.queueFor(prev, next, now, settings.notify);
      this.store.save(next);
      return { prev, next };
    });

    if (trigger.override) {
      const { command } = trigger.override;
      log({ event: "override", org_id: orgId, action: command.action, until: command.until, note: command.note });
    }
    if (failure?.kind === "unknown_customer") {
      logWarn({ event: "autumn_customer_unknown", org_id: orgId, source: trigger.source, state: next.state, reason: next.reason });
    } else if (failure) {
      logWarn({ event: "sync_failed", org_id: orgId, source: trigger.source, kind: failure.kind, status: failure.status, code: failure.code, error: failure.message, failures: next.failures, retry_at: next.retry_at, state: next.state });
    } else {
      log({ event: "sync", org_id: orgId, source: trigger.source, message_id: trigger.message_id, past_due: facts?.pastDue, has_paid: facts?.hasPaid, state: next.state, reason: next.reason, suspend_at: next.suspend_at });
    }
    if (next.state !== prev.state) {
      log({ event: "transition", org_id: orgId, from: prev.state, to: next.state, reason: next.reason, source: trigger.source, message_id: trigger.message_id, note: trigger.note, anchor: next.anchor, noticed_at: next.noticed_at, suspend_at: next.suspend_at, version: next.version });
    }
    return next;
  }

  /** Inside `commit`'s transaction: the override recorded on the record and in history, with its note. */
  private applyOverride(record: OrgRecord, command: OverrideCommand, at: number, settings: Settings): OrgRecord {
    const until = command.until ?? (command.action === "unsuspend" ? at + settings.policy.gracePeriodMs : null);
    const override = command.action === "clear" ? null : { action: command.action === "suspend" ? ("suspend" as const) : ("exempt" as const), until, note: command.note, at };
    this.store.appendHistory({
      at,
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
    return { ...record, override, version: record.version + 1 };
  }

  /** One history entry and one log line per plan limit reached or cleared (the events are the outbox's). */
  private recordLimitChanges(prev: OrgRecord, next: OrgRecord, trigger: Trigger, now: number): void {
    const changes = limitChanges(prev.limits, next.limits);
    for (const [kind, limits] of [["limit_reached", changes.reached], ["limit_cleared", changes.cleared]] as const) {
      for (const limit of limits) {
        const current = kind === "limit_reached" ? limit : (next.evidence?.balances[limit.feature_id] ?? limit);
        const entry = { feature_id: limit.feature_id, reset_at: kind === "limit_reached" ? limit.reset_at : null, usage: current.usage, granted: current.granted };
        this.store.appendHistory({ at: now, kind, from: next.state, to: next.state, reason: next.reason, source: trigger.source, message_id: trigger.message_id ?? null, note: trigger.note ?? null, override: null, evidence: null, limit: entry });
        log({ event: kind, org_id: next.org_id, ...entry, signals: limit.signals, source: trigger.source });
      }
    }
  }

  /**
   * Out of suspended (to ok or overdue): the batches parked while suspended go upstream now, through the
   * deliveries queue. A failed send is logged; the ingest Worker's cleanup (on the sweep's
   * schedule) enqueues every org with batches waiting, so they still go out within one cycle.
   */
  private async deliverParked(): Promise<void> {
    const queue = (this.env as DeliveriesEnv).DELIVERIES;
    if (!queue) return;
    try {
      await queue.send({ org_id: this.orgId });
      log({ event: "parked_delivery_queued", org_id: this.orgId });
    } catch (error) {
      logWarn({ event: "parked_delivery_queue_failed", org_id: this.orgId, error: error instanceof Error ? error.message : String(error) });
    }
  }

  /** Brings the alarm forward to `at` if it is set later or not at all (the end of the pass sets it exactly). */
  private async armNoLaterThan(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** Sets the object's single alarm to the earliest thing it owes, from what is stored (the usage ledger's reports included). */
  private arm(settings: Settings): void {
    const record = this.store.load();
    const usageAt = this.usage.dueAt(settings.usage.reportIntervalMs);
    const at = record === null ? usageAt : nextAlarmAt(record, Date.now(), settings.policy, earliest(this.outbox.dueAt(record, settings.notify), usageAt));
    if (at === null) void this.ctx.storage.deleteAlarm();
    else void this.ctx.storage.setAlarm(at);
  }
}

/** The org's object. Callers must have validated `orgId` (see shared/storage-keys.ts) first. */
export function orgBilling(env: { ORG_BILLING?: DurableObjectNamespace<OrgBilling> }, orgId: string): DurableObjectStub<OrgBilling> {
  if (!env.ORG_BILLING) {
    throw new Error("The ORG_BILLING Durable Object binding is missing: did you forget to add it to durable_objects.bindings in your wrangler.jsonc?");
  }
  return env.ORG_BILLING.getByName(orgId);
}
