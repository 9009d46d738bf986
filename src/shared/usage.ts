import { z } from "zod";
import { INDEX_SHARDS } from "./index-shard.ts";
import { ConfigError, optionalSetting, type EnvVars } from "./settings.ts";

/**
 * What Tollgate meters (docs/metering.md): items per signal, and bytes received.
 * `traces` spans, `logs` OTLP log records, `metrics` data points, `logpush` Logpush records,
 * `bytes` every request body byte received (as sent, before decompression) on any route.
 */
export const Signal = z.enum(["traces", "logs", "metrics", "logpush", "bytes"]);
export type Signal = z.infer<typeof Signal>;
export const SIGNALS = Signal.options;

/** Signal → Autumn feature id. Several signals may share a feature (logs and logpush → log_records). */
export type UsageFeatures = Partial<Record<Signal, string>>;

/** Autumn feature ids are slugs; anything else is surely a typo in USAGE_FEATURES. */
const FEATURE_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * USAGE_FEATURES: space-separated `signal=feature_id` pairs, e.g.
 * `traces=spans logs=log_records metrics=data_points logpush=log_records bytes=ingest_bytes`.
 * Empty: metering is off. Read by both Workers (the ingest Worker counts only mapped signals;
 * the org's object reports them under these ids), so set the same value on both.
 */
export function usageFeatures(env: EnvVars): UsageFeatures {
  const text = optionalSetting(env, "USAGE_FEATURES", "");
  const features: UsageFeatures = {};
  for (const pair of text.split(/\s+/).filter(Boolean)) {
    const match = /^([a-z]+)=(.+)$/.exec(pair);
    const signal = Signal.safeParse(match?.[1]);
    if (!match || !signal.success || !FEATURE_ID.test(match[2]!)) {
      throw new ConfigError("USAGE_FEATURES", `USAGE_FEATURES: "${pair}" is not signal=feature_id with a signal among ${SIGNALS.join(", ")}`);
    }
    if (features[signal.data] !== undefined) throw new ConfigError("USAGE_FEATURES", `USAGE_FEATURES maps ${signal.data} twice`);
    features[signal.data] = match[2]!;
  }
  return features;
}

/** ENFORCE_LIMITS: the ingest Worker refuses a signal whose feature is limited only when this is "true". */
export function enforceLimits(env: EnvVars): boolean {
  const text = optionalSetting(env, "ENFORCE_LIMITS", "false").toLowerCase();
  if (text !== "true" && text !== "false") throw new ConfigError("ENFORCE_LIMITS", `ENFORCE_LIMITS="${text}" must be true or false`);
  return text === "true";
}

/** Counts per signal; absent means zero. */
export const UsageCounts = z.partialRecord(Signal, z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER));
export type UsageCounts = z.infer<typeof UsageCounts>;

/** An ingest isolate's stream of usage batches: random, minted once per isolate (src/ingest/usage/batcher.ts). */
export const UsageStream = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
/** A batch's number within its stream, per org: 1, 2, 3, … in the order the isolate flushed them. */
export const UsageSeq = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/**
 * What became of an org's requests (issue 21, the console's chart; docs/metering.md, "Activity"). Each
 * answered request counts once, under one kind: `accepted` (the upstream took it), `would_refuse` (taken
 * only because of observe mode), `parked` (kept in R2: a suspended org's batch, or one the upstream could
 * not take during an outage) or `refused` (a 402 or 429 refusal that kept nothing). Other refusals (a bad
 * key, a malformed body, the upstream's own) are not counted.
 */
export const ACTIVITY_KINDS = ["accepted", "refused", "would_refuse", "parked"] as const;
export type ActivityKind = (typeof ACTIVITY_KINDS)[number];

/**
 * The stable codes a would-be refusal would have been answered with (src/ingest/request/admit.ts):
 * 402 `billing_suspended` (the org is suspended) and 429 `plan_limit_reached` (a used-up feature).
 */
export const WOULD_REFUSE_CODES = ["billing_suspended", "plan_limit_reached"] as const;
export const WouldRefuseCode = z.enum(WOULD_REFUSE_CODES);
export type WouldRefuseCode = z.infer<typeof WouldRefuseCode>;

/** The kinds whose requests went to the upstream, so whose items metering counted (src/ingest/usage/meter.ts). */
export type ForwardedKind = "accepted" | "would_refuse";

export const HOUR_MS = 3_600_000;

const Count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const ActivityCount = Count.optional();

/**
 * One hour's counts: `hour` the epoch ms of the hour's start; absent kinds are zero; counts in requests.
 * `would_refuse_codes` splits `would_refuse` by the code that was not answered (version 7 of the org's
 * tables). An ingest Worker from before the split sends `would_refuse` alone: the org's object counts it
 * in the total and under no code (`unknown` in the admin view), never drops it; a billing Worker from
 * before the split strips the field (zod drops unknown keys) and counts the total as before.
 * `items`: the items metering counted in the hour's accepted and would-be-refused requests (only those
 * went upstream, so only their bodies were read); present only where metering counted the route's signal.
 */
export const ActivityHour = z.object({
  hour: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).multipleOf(HOUR_MS),
  accepted: ActivityCount,
  refused: ActivityCount,
  would_refuse: ActivityCount,
  parked: ActivityCount,
  would_refuse_codes: z.partialRecord(WouldRefuseCode, Count).optional(),
  items: z.object({ accepted: ActivityCount, would_refuse: ActivityCount }).optional(),
});
export type ActivityHour = z.infer<typeof ActivityHour>;

/** A message carries at most this many hours (a flush window spans one or two; the bound keeps a bad message cheap). */
export const MAX_ACTIVITY_HOURS = 48;

/**
 * An org's activity over one flush window, counted in requests (`unit`) whether metering is on or not:
 * a refusal's items are never read, so only requests count every kind alike. Where metering is on, each
 * hour's `items` adds the items of the requests that went upstream (accepted and would-be-refused).
 */
export const UsageActivity = z.object({
  unit: z.literal("requests"),
  hours: z.array(ActivityHour).min(1).max(MAX_ACTIVITY_HOURS),
});
export type UsageActivity = z.infer<typeof UsageActivity>;

/** The start of the hour holding `at` (epoch ms). */
export function hourOf(at: number): number {
  return Math.floor(at / HOUR_MS) * HOUR_MS;
}

/**
 * One message on the `tollgate-usage` queue: what one ingest isolate metered for one org
 * over a short window (sent only where metering counted something: activity goes in `ActivityMessage`). `stream` and `seq` are the batch's id, the same on every retried send
 * (a send may fail after the queue took it), which the org's object deduplicates by. Messages
 * sent before they existed have neither; the object then falls back to the queue's message id.
 */
export const UsageMessage = z
  .object({
    org_id: z.string().min(1),
    stream: UsageStream.optional(),
    seq: UsageSeq.optional(),
    /** Empty only in a message from an older ingest Worker, which then carries only `activity`. */
    counts: UsageCounts,
    /** The window's first and last request counted, epoch ms (for the ledger and logs). */
    first_at: z.number(),
    last_at: z.number(),
    /**
     * Sent only by ingest Workers from before activity had messages of its own (`ActivityMessage`); the
     * org's object still folds it (src/billing/usage/activity.ts), so nothing on the queue at the deploy is lost.
     */
    activity: UsageActivity.optional(),
  })
  .refine((message) => (message.stream === undefined) === (message.seq === undefined), { message: "stream and seq go together" });
export type UsageMessage = z.infer<typeof UsageMessage>;

/**
 * Activity travels apart from usage (issue 20: a usage message per org made every org active in a window
 * one queue message and one org object woken by the consumer, the cold-keys bench 0.08x the runtime hop):
 * one `ActivityMessage` per flush window carries every org's hours, split into parts by the org's index
 * shard (shared/index-shard.ts), and the consumer hands each part to that shard, which keeps the hours
 * (src/billing/index/activity.ts). A part's `seq` is numbered per stream and shard (1, 2, 3, …), so each
 * shard sees an unbroken sequence per isolate and folds a retried or redelivered part once (streams.ts).
 */
export const ACTIVITY_ORGS_PER_MESSAGE = 100;

/** One org's hours in an activity part. */
export const OrgActivity = z.object({ org_id: z.string().min(1).max(256), hours: z.array(ActivityHour).min(1).max(MAX_ACTIVITY_HOURS) });
export type OrgActivity = z.infer<typeof OrgActivity>;

/** One shard's share of an activity message: the orgs of that shard, under the stream's next number for the shard. */
export const ActivityPart = z.object({
  shard: z.number().int().nonnegative().max(INDEX_SHARDS - 1),
  seq: UsageSeq,
  orgs: z.array(OrgActivity).min(1).max(ACTIVITY_ORGS_PER_MESSAGE),
});
export type ActivityPart = z.infer<typeof ActivityPart>;

/** One message on the `tollgate-usage` queue carrying an isolate's activity for a window (at most ACTIVITY_ORGS_PER_MESSAGE orgs). */
export const ActivityMessage = z
  .object({
    kind: z.literal("activity"),
    stream: UsageStream,
    parts: z.array(ActivityPart).min(1).max(INDEX_SHARDS),
  })
  // One part per shard, as the producer splits them: so a shard's call carries at most one delivery per message of the
  // batch (contract.ts `ActivityDeliveries` bounds it), and one message with many parts for a shard cannot get the
  // whole call refused and every other message of the batch with a part for that shard retried with it.
  .refine((message) => new Set(message.parts.map((part) => part.shard)).size === message.parts.length, { message: "one part per shard" });
export type ActivityMessage = z.infer<typeof ActivityMessage>;

/**
 * A feature the org has used up, as the org's object mirrors it to the edge: refused (with
 * ENFORCE_LIMITS=true) for these signals until `reset_at` (when the edge lifts it by itself,
 * ahead of the object's read at that moment) or until the object publishes it gone.
 */
export const FeatureLimit = z.object({
  feature_id: z.string(),
  signals: z.array(Signal),
  /** Epoch ms; null when the balance never resets (only a plan change or a top-up lifts it). */
  reset_at: z.number().nullable(),
});
export type FeatureLimit = z.infer<typeof FeatureLimit>;

/** The limit in force for a signal at `now`, if any: its own feature's, or the `bytes` feature's, which covers every route. */
export function limitFor(limits: readonly FeatureLimit[], signal: Exclude<Signal, "bytes">, now: number): FeatureLimit | null {
  for (const limit of limits) {
    if (limit.reset_at !== null && limit.reset_at <= now) continue;
    if (limit.signals.includes(signal) || limit.signals.includes("bytes")) return limit;
  }
  return null;
}
