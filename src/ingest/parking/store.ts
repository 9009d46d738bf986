import { z } from "zod";
import { byteSizeSetting, durationSetting } from "../../shared/settings.ts";
import { digestKey, DIGEST_PREFIX, orgPrefix, PARKED_PREFIX, PARKED_TOTAL_KEY } from "./keys.ts";

// The bucket's key formats live in keys.ts; handed on here for the modules that park and deliver.
export { digestKey, DIGEST_PREFIX, orgPrefix, PARKED_PREFIX, PARKED_TOTAL_KEY };

/**
 * Parking: batches that cannot go upstream now (the org is suspended, or the upstream is down)
 * are kept in R2 (`PARKING`) and delivered later by the `tollgate-deliveries` queue
 * (deliveries.ts). With no `PARKING` binding, nothing here runs and nothing changes.
 *
 * Keys: `parked/{orgId}/{receivedAt, 15 digits}-{isolate sequence}-{random}`, so a listing of an
 * org's prefix is its batches in the order they were received (within a millisecond, in this
 * isolate's order). Each object is the body exactly as it would have gone upstream; its
 * customMetadata says where to and how (route, content type, encoding, receive time, why), what
 * metering already counted, and for a refused batch the key it came with. A refused batch's digest
 * marker (`parked-digests/{orgId}/{sha256}`) keeps a resend from being parked twice.
 */

/** The bindings and settings parking needs; declared here so the ingest Worker's env type stays as generated. */
export type ParkingEnv = {
  PARKING?: R2Bucket;
  DELIVERIES?: Queue<DeliveryMessage>;
  PARK_MAX_BYTES?: string;
  PARK_TOTAL_MAX_BYTES?: string;
  PARK_RETENTION?: string;
};

export const DeliveryMessage = z.object({ org_id: z.string().min(1).max(128) });
export type DeliveryMessage = z.infer<typeof DeliveryMessage>;

export type ParkingSettings = { bucket: R2Bucket; queue: Queue<DeliveryMessage> | null; maxBytes: number; totalMaxBytes: number; retentionMs: number };

export const PARK_DEFAULTS = { maxBytes: "256MiB", totalMaxBytes: "10GiB", retention: "72h" } as const;

/** Null when parking is off (no `PARKING` binding). An invalid setting throws ConfigError, naming it. */
export function parkingSettings(env: ParkingEnv): ParkingSettings | null {
  if (!env.PARKING) return null;
  return {
    bucket: env.PARKING,
    queue: env.DELIVERIES ?? null,
    maxBytes: byteSizeSetting(env, "PARK_MAX_BYTES", PARK_DEFAULTS.maxBytes),
    totalMaxBytes: byteSizeSetting(env, "PARK_TOTAL_MAX_BYTES", PARK_DEFAULTS.totalMaxBytes),
    retentionMs: durationSetting(env, "PARK_RETENTION", PARK_DEFAULTS.retention),
  };
}

export type ParkReason = "suspended" | "upstream_unavailable";

/**
 * What usage metering already counted of a parked batch when it was accepted, so delivery counts
 * the rest and nothing twice: `all` (an outage park whose items and bytes were counted when the
 * client got its 2xx), `bytes` (an outage park whose items could not be counted then: the upstream
 * refused before reading the body; its items are counted from the parked body at delivery),
 * `none` (a suspended org's batch, refused then: counted whole at delivery).
 */
export type Counted = "all" | "bytes" | "none";

export type ParkedBatch = {
  orgId: string;
  /** The upstream path it goes to: /v1/traces, /v1/metrics or /v1/logs. */
  route: string;
  contentType: string;
  contentEncoding: string | null;
  receivedAt: number;
  why: ParkReason;
  /** Default: `none` for a suspended park, `all` for an outage park. */
  counted?: Counted;
  /** The ingest key a suspended org's batch came with: a key revoked since means it is not delivered (docs/customers.md, "Parking"). */
  keyId?: string;
  /**
   * A suspended org's Logpush batch is parked as OTLP JSON, which no longer shows what was received:
   * its share of the batch's records and bytes as received, metered when it is delivered.
   */
  usage?: ParkedUsage;
};

export type ParkedUsage = { signal: "logpush"; items: number; bytes: number };


let sequence = 0;

export function parkedKey(orgId: string, receivedAt: number): string {
  sequence = (sequence + 1) % 1_000_000;
  const random = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${orgPrefix(orgId)}${String(receivedAt).padStart(15, "0")}-${String(sequence).padStart(6, "0")}-${random}`;
}

/** The receive time in a parked key (it is also in the metadata; the key alone serves cleanup's listing). */
export function receivedAtOfKey(key: string): number | null {
  const match = /\/(\d{15})-\d{6}-[0-9a-f]{8}$/.exec(key);
  return match ? Number(match[1]) : null;
}

/** The org of a parked key. */
export function orgOfKey(key: string): string | null {
  if (!key.startsWith(PARKED_PREFIX)) return null;
  const rest = key.slice(PARKED_PREFIX.length);
  const slash = rest.indexOf("/");
  return slash > 0 ? rest.slice(0, slash) : null;
}

export const ParkedMetadata = z.object({
  route: z.enum(["/v1/traces", "/v1/metrics", "/v1/logs"]),
  content_type: z.string(),
  content_encoding: z.string().default(""),
  received_at: z.string().regex(/^\d+$/),
  why: z.enum(["suspended", "upstream_unavailable"]),
  /** Absent in objects parked before it existed: then `none` for a suspended park, `all` for an outage park. */
  counted: z.enum(["all", "bytes", "none"]).optional(),
  key_id: z.string().max(64).optional(),
  /** Present on a suspended org's Logpush pieces (see ParkedBatch.usage). */
  usage_signal: z.literal("logpush").optional(),
  usage_items: z.string().regex(/^\d+$/).optional(),
  usage_bytes: z.string().regex(/^\d+$/).optional(),
});
export type ParkedMetadata = z.infer<typeof ParkedMetadata>;

/** What metering counted of a parked batch at acceptance (see Counted), for objects parked before the field too. */
export function countedOf(metadata: ParkedMetadata): Counted {
  return metadata.counted ?? (metadata.why === "suspended" ? "none" : "all");
}

export type ParkOutcome = { parked: true; key: string; bytes: number } | { parked: false; why: "over_cap" | "store_failed"; error?: string };

/**
 * Keeps one batch, if the org's parked bytes stay within the cap. Resolves only once R2 has
 * acknowledged the write (durable), so a 2xx given after it is honest. Never throws.
 */
export async function park(settings: ParkingSettings, batch: ParkedBatch, body: Uint8Array, now: number, ledger: ParkedBytes = parkedBytes, total: ParkedTotal = parkedTotal): Promise<ParkOutcome> {
  const estimate = ledger.estimate(batch.orgId, now);
  let totalEstimate: number;
  try {
    totalEstimate = await total.estimate(settings.bucket, now);
  } catch (error) {
    return { parked: false, why: "store_failed", error: message(error) };
  }
  if (estimate + body.byteLength > settings.maxBytes || totalEstimate + body.byteLength > settings.totalMaxBytes) return { parked: false, why: "over_cap" };
  const key = parkedKey(batch.orgId, batch.receivedAt);
  const metadata: ParkedMetadata = {
    route: batch.route as ParkedMetadata["route"],
    content_type: batch.contentType,
    content_encoding: batch.contentEncoding ?? "",
    received_at: String(batch.receivedAt),
    why: batch.why,
    counted: batch.counted ?? (batch.why === "suspended" ? "none" : "all"),
    ...(batch.keyId ? { key_id: batch.keyId } : {}),
    ...(batch.usage ? { usage_signal: batch.usage.signal, usage_items: String(batch.usage.items), usage_bytes: String(batch.usage.bytes) } : {}),
  };
  try {
    await settings.bucket.put(key, body, { customMetadata: metadata, httpMetadata: { contentType: batch.contentType } });
  } catch (error) {
    return { parked: false, why: "store_failed", error: message(error) };
  }
  ledger.add(batch.orgId, body.byteLength);
  total.add(body.byteLength);
  return { parked: true, key, bytes: body.byteLength };
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** How often an isolate at an org's cap re-asks the org's object what is parked (deliveries free room). */
export const SUMMARY_REFRESH_MS = 10_000;
/** An answer older than this is forgotten: the next park goes ahead and its report brings a fresh one. */
export const SUMMARY_MAX_AGE_MS = 60_000;

type Known = { waiting: number | null; own: number; heardAt: number; askedAt: number };

/**
 * The per-isolate estimate of an org's parked bytes, with no R2 listing and no call on the request
 * path (issue 18, 9b): what the org's object last said is waiting (`recordParking` answers every
 * parked report this isolate sends, at most one per org per 10 s, and every delivery run and cleanup
 * keeps that figure in step with R2), plus this isolate's own writes not yet in that answer. An
 * isolate that has not heard (or heard over a minute ago) counts only its own writes; its first park
 * is reported at once and the answer follows. So the cap is overshot by at most one batch per
 * isolate that has not heard yet, plus what other isolates parked and have not reported yet (their
 * reports wait at most 10 s). At the cap the isolate re-asks at most every 10 s (`shouldAsk`).
 */
export class ParkedBytes {
  private readonly known = new Map<string, Known>();
  private readonly capacity: number;
  constructor(capacity = 10_000) {
    this.capacity = capacity;
  }

  estimate(orgId: string, now: number): number {
    const known = this.known.get(orgId);
    if (!known) return 0;
    const fresh = known.waiting !== null && now - known.heardAt < SUMMARY_MAX_AGE_MS;
    return (fresh ? known.waiting! : 0) + known.own;
  }

  /** This isolate's own write, counted at once. */
  add(orgId: string, bytes: number): void {
    const known = this.entry(orgId);
    known.own += bytes;
  }

  /** The object's answer: `waiting` bytes parked, which include the `reported` bytes of this isolate's report. */
  heard(orgId: string, waiting: number, reported: number, now = Date.now()): void {
    const known = this.entry(orgId);
    known.waiting = waiting;
    known.own = Math.max(0, known.own - reported);
    known.heardAt = now;
  }

  /** Whether to ask the object now (never heard, or the answer is older than SUMMARY_REFRESH_MS); counts as asked. */
  shouldAsk(orgId: string, now: number): boolean {
    const known = this.entry(orgId);
    if (now - Math.max(known.heardAt, known.askedAt) < SUMMARY_REFRESH_MS) return false;
    known.askedAt = now;
    return true;
  }

  forget(orgId: string): void {
    this.known.delete(orgId);
  }

  clear(): void {
    this.known.clear();
  }

  private entry(orgId: string): Known {
    let known = this.known.get(orgId);
    if (!known) {
      if (this.known.size >= this.capacity) {
        const oldest = this.known.keys().next().value;
        if (oldest !== undefined) this.known.delete(oldest);
      }
      known = { waiting: null, own: 0, heardAt: -Infinity, askedAt: -Infinity };
      this.known.set(orgId, known);
    }
    return known;
  }
}

/** This isolate's estimates. */
export const parkedBytes = new ParkedBytes();

/** How often an isolate re-reads the total the cleanup wrote. */
export const TOTAL_REFRESH_MS = 60_000;

/**
 * The global cap's estimate, without a counter object: the bucket's total as the cleanup last listed it
 * (every 30 minutes, on the sweep's schedule), re-read once a minute, plus what this isolate parked since
 * that total was taken. Other isolates' writes since the last cleanup are not seen, so the cap can be
 * overshot by what the rest of the fleet parks in one cleanup interval; it bounds cost, not each write.
 */
export class ParkedTotal {
  private read: { bytes: number; at: number; readAt: number } | null = null;
  private ownSince = 0;

  async estimate(bucket: R2Bucket, now: number): Promise<number> {
    if (this.read === null || now - this.read.readAt >= TOTAL_REFRESH_MS) {
      const object = await bucket.get(PARKED_TOTAL_KEY);
      const written = object === null ? null : ParkedTotalRecord.safeParse(JSON.parse(await object.text()));
      const next = written?.success ? { ...written.data, readAt: now } : { bytes: 0, at: 0, readAt: now };
      if (this.read === null || next.at !== this.read.at) this.ownSince = 0;
      this.read = next;
    }
    return this.read.bytes + this.ownSince;
  }

  add(bytes: number): void {
    this.ownSince += bytes;
  }
}

export const ParkedTotalRecord = z.object({ bytes: z.number().nonnegative(), at: z.number() });
export const parkedTotal = new ParkedTotal();
