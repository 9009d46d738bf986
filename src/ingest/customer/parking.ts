import { z } from "zod";
import { byteSizeSetting, durationSetting } from "../../shared/settings.ts";

/**
 * Parking: batches that cannot go upstream now (the org is suspended, or the upstream is down)
 * are kept in R2 (`PARKING`) and delivered later by the `tollgate-deliveries` queue
 * (deliveries.ts). With no `PARKING` binding, nothing here runs and nothing changes.
 *
 * Keys: `parked/{orgId}/{receivedAt, 15 digits}-{isolate sequence}-{random}`, so a listing of an
 * org's prefix is its batches in the order they were received (within a millisecond, in this
 * isolate's order). Each object is the body exactly as it would have gone upstream; its
 * customMetadata says where to and how (route, content type, encoding, receive time, why).
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

export type ParkedBatch = {
  orgId: string;
  /** The upstream path it goes to: /v1/traces, /v1/metrics or /v1/logs. */
  route: string;
  contentType: string;
  contentEncoding: string | null;
  receivedAt: number;
  why: ParkReason;
  /**
   * A suspended org's Logpush batch is parked as OTLP JSON, which no longer shows what was received:
   * its share of the batch's records and bytes as received, metered when it is delivered.
   */
  usage?: ParkedUsage;
};

export type ParkedUsage = { signal: "logpush"; items: number; bytes: number };

export const PARKED_PREFIX = "parked/";
export const orgPrefix = (orgId: string) => `${PARKED_PREFIX}${orgId}/`;

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
  /** Present on a suspended org's Logpush pieces (see ParkedBatch.usage). */
  usage_signal: z.literal("logpush").optional(),
  usage_items: z.string().regex(/^\d+$/).optional(),
  usage_bytes: z.string().regex(/^\d+$/).optional(),
});
export type ParkedMetadata = z.infer<typeof ParkedMetadata>;

export type ParkOutcome = { parked: true; key: string; bytes: number } | { parked: false; why: "over_cap" | "store_failed"; error?: string };

/**
 * Keeps one batch, if the org's parked bytes stay within the cap. Resolves only once R2 has
 * acknowledged the write (durable), so a 2xx given after it is honest. Never throws.
 */
export async function park(settings: ParkingSettings, batch: ParkedBatch, body: Uint8Array, now: number, ledger: ParkedBytes = parkedBytes, total: ParkedTotal = parkedTotal): Promise<ParkOutcome> {
  let estimate: number;
  let totalEstimate: number;
  try {
    [estimate, totalEstimate] = await Promise.all([ledger.estimate(settings.bucket, batch.orgId, now, settings.maxBytes), total.estimate(settings.bucket, now)]);
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
    ...(batch.usage ? { usage_signal: batch.usage.signal, usage_items: String(batch.usage.items), usage_bytes: String(batch.usage.bytes) } : {}),
  };
  try {
    await settings.bucket.put(key, body, { customMetadata: metadata, httpMetadata: { contentType: batch.contentType } });
  } catch (error) {
    return { parked: false, why: "store_failed", error: message(error) };
  }
  ledger.add(batch.orgId, key, body.byteLength);
  total.add(body.byteLength);
  return { parked: true, key, bytes: body.byteLength };
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** How often an isolate lists the keys other isolates added since its last look. */
export const LEDGER_REFRESH_MS = 2_000;
/** How long before an isolate re-counts an org's prefix from scratch (deliveries and expiry only shrink it). */
export const LEDGER_RECOUNT_MS = 60_000;

type Count = { bytes: number; lastKey: string | null; refreshedAt: number; countedAt: number };

/**
 * The per-isolate estimate of an org's parked bytes, kept without a Durable Object: a full
 * listing of the org's prefix (sizes summed, stopping once past the cap) at first use and then
 * every minute; in between, this isolate's own writes are added as they happen, and every 2 s a
 * listing of only the keys after the last one seen adds other isolates' writes (keys sort by
 * receive time). So the cap is overshot by at most what other isolates wrote in the last 2 s
 * (plus keys written with an older timestamp than one already seen), and deletions (delivery,
 * expiry) are seen within a minute (until then the estimate is high: parking stops early, never late).
 */
export class ParkedBytes {
  private readonly counts = new Map<string, Count>();
  private readonly capacity: number;
  constructor(capacity = 10_000) {
    this.capacity = capacity;
  }

  async estimate(bucket: R2Bucket, orgId: string, now: number, cap: number): Promise<number> {
    let count = this.counts.get(orgId);
    if (!count || now - count.countedAt >= LEDGER_RECOUNT_MS) {
      count = { ...(await listFrom(bucket, orgId, null, cap)), refreshedAt: now, countedAt: now };
    } else if (now - count.refreshedAt >= LEDGER_REFRESH_MS) {
      const added = await listFrom(bucket, orgId, count.lastKey, cap);
      count = { bytes: count.bytes + added.bytes, lastKey: added.lastKey ?? count.lastKey, refreshedAt: now, countedAt: count.countedAt };
    }
    this.remember(orgId, count);
    return count.bytes;
  }

  /** This isolate's own write, counted at once. */
  add(orgId: string, key: string, bytes: number): void {
    const count = this.counts.get(orgId);
    if (!count) return;
    count.bytes += bytes;
    if (count.lastKey === null || key > count.lastKey) count.lastKey = key;
  }

  forget(orgId: string): void {
    this.counts.delete(orgId);
  }

  clear(): void {
    this.counts.clear();
  }

  private remember(orgId: string, count: Count): void {
    this.counts.delete(orgId);
    if (this.counts.size >= this.capacity) {
      const oldest = this.counts.keys().next().value;
      if (oldest !== undefined) this.counts.delete(oldest);
    }
    this.counts.set(orgId, count);
  }
}

/** Sums sizes under the org's prefix after `startAfter`; stops once past `cap` (the answer is then "over"). */
async function listFrom(bucket: R2Bucket, orgId: string, startAfter: string | null, cap: number): Promise<{ bytes: number; lastKey: string | null }> {
  let bytes = 0;
  let lastKey = startAfter;
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix: orgPrefix(orgId), cursor, ...(cursor === undefined && startAfter !== null ? { startAfter } : {}), limit: 1000 });
    for (const object of page.objects) {
      bytes += object.size;
      if (lastKey === null || object.key > lastKey) lastKey = object.key;
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined && bytes <= cap);
  return { bytes, lastKey };
}

/** This isolate's estimates. */
export const parkedBytes = new ParkedBytes();

/** Where the cleanup writes the bucket's parked bytes (outside `parked/`, so no listing of parked data sees it). */
export const PARKED_TOTAL_KEY = "meta/parked-total.json";
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
