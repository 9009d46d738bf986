import { z } from "zod";
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
 * One message on the `tollgate-usage` queue: what one ingest isolate accepted for one org
 * over a short window. `stream` and `seq` are the batch's id, the same on every retried send
 * (a send may fail after the queue took it), which the org's object deduplicates by. Messages
 * sent before they existed have neither; the object then falls back to the queue's message id.
 */
export const UsageMessage = z
  .object({
    org_id: z.string().min(1),
    stream: UsageStream.optional(),
    seq: UsageSeq.optional(),
    counts: UsageCounts,
    /** The window's first and last acceptance, epoch ms (for the ledger and logs). */
    first_at: z.number(),
    last_at: z.number(),
  })
  .refine((message) => (message.stream === undefined) === (message.seq === undefined), { message: "stream and seq go together" });
export type UsageMessage = z.infer<typeof UsageMessage>;

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
