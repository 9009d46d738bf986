import { z } from "zod";
import { log, logWarn } from "../../shared/log.ts";
import { DECISION_LOG_WINDOW_MS, logThrottle } from "../log-throttle.ts";
import { report, type DeliveryEnv } from "./deliveries.ts";
import { digestKey, type ParkingSettings } from "./store.ts";

/**
 * "Kept once" (docs/customers.md, "Parking"; issue 18, 5 and its break tests): a suspended org's refused batch
 * is parked once, however often it is resent, and what was answered "kept" reaches the upstream
 * once. A batch is known by a digest of where it goes and its bytes as received; its marker
 * (`parked-digests/{orgId}/{digest}`) names the key the kept copy came with and the parked objects
 * that hold it (every piece: a marker is written only once the whole batch is parked).
 *
 * - A resend with the same key is answered "kept" without parking again.
 * - A resend with another key (the first was rotated out, maybe revoked: its copy would be discarded
 *   at delivery) moves the kept copy to the new key: its objects are rewritten in place naming the
 *   new key (same bytes, same R2 keys, so no bytes are counted twice). When that cannot be done (a
 *   piece gone or a write failing) the batch is parked again with the new key and the old copy is
 *   deleted once the new one is whole. Either way the data rides on the active key and reaches the
 *   upstream once.
 * - A batch that could not be parked whole (a later piece over the cap, R2 failing, an unreadable
 *   record) is answered with the plain 402 and its pieces already parked are deleted: the job resends
 *   the whole batch, so keeping them would deliver and meter them twice (nothing was promised for them).
 * - After payment (the org's state changed less than PARK_RETENTION ago), a Logpush retry of a kept
 *   batch is answered 200 without going upstream: the parked copy is delivered (logpush/route.ts).
 */

export type Marker = { keyId: string; keys: string[]; bytes: number; records: number | null };
export type ParkedPiece = { key: string; bytes: number };

const MarkerBody = z.object({
  key_id: z.string().min(1).max(64),
  keys: z.array(z.string().max(512)).max(10_000),
  bytes: z.number().int().nonnegative(),
  records: z.number().int().nonnegative().nullable().default(null),
});

/** SHA-256 (hex) of what identifies a batch: `parts` (route, options, encoding) and its bytes as received. */
export async function batchDigest(parts: string[], bytes: Uint8Array): Promise<string> {
  const head = new TextEncoder().encode(`${parts.join("\n")}\n\n`);
  const whole = new Uint8Array(head.byteLength + bytes.byteLength);
  whole.set(head, 0);
  whole.set(bytes, head.byteLength);
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", whole))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The marker of a batch kept within the retention, or null. A failing store, or a marker written
 * before markers named their key and copies (empty body), answers null: kept twice rather than lost.
 */
export async function readMarker(settings: ParkingSettings, orgId: string, digest: string, now: number): Promise<Marker | null> {
  try {
    const object = await settings.bucket.get(digestKey(orgId, digest));
    if (object === null) return null;
    const at = Number(object.customMetadata?.received_at ?? object.uploaded.getTime());
    const text = await object.text();
    if (!(now - at < settings.retentionMs) || text === "") return null;
    const body = MarkerBody.safeParse(JSON.parse(text));
    return body.success ? { keyId: body.data.key_id, keys: body.data.keys, bytes: body.data.bytes, records: body.data.records } : null;
  } catch {
    return null;
  }
}

/** Marks a batch kept (after every piece was parked). A failure only means a resend would be kept again. */
async function writeMarker(settings: ParkingSettings, orgId: string, digest: string, now: number, marker: Marker): Promise<void> {
  const body = JSON.stringify({ key_id: marker.keyId, keys: marker.keys, bytes: marker.bytes, records: marker.records });
  try {
    await settings.bucket.put(digestKey(orgId, digest), body, { customMetadata: { received_at: String(now) } });
  } catch {
    // best effort
  }
}

/**
 * Deletes parked copies that must not be delivered (a stopped park's pieces, a superseded copy) and
 * tells the org's object, so its waiting bytes (the per-org cap's figure) drop with them. Best
 * effort: a copy whose delete fails is delivered (at least once, never lost).
 */
async function dropParked(env: DeliveryEnv, parking: ParkingSettings, orgId: string, pieces: ParkedPiece[], why: "park_stopped" | "superseded"): Promise<void> {
  let batches = 0;
  let bytes = 0;
  for (const piece of pieces) {
    try {
      // A superseded copy may be gone already (delivered, expired): only what is deleted is counted.
      const size = why === "superseded" ? ((await parking.bucket.head(piece.key))?.size ?? null) : piece.bytes;
      if (size === null) continue;
      await parking.bucket.delete(piece.key);
      batches++;
      bytes += size;
    } catch (error) {
      logWarn({ event: "ingest_park_drop_failed", org_id: orgId, why, error: error instanceof Error ? error.message : String(error) });
    }
  }
  if (batches > 0) await report(env, orgId, { refused_batches: batches, refused_bytes: bytes });
}

/**
 * Rewrites a kept copy's objects in place naming `keyId` (the body and the rest of the metadata
 * as they were). False, leaving the caller to park again, when a piece is gone (delivered or
 * expired) or any read or write fails: pieces already rewritten are then deleted with the rest.
 */
async function rekey(parking: ParkingSettings, keys: string[], keyId: string): Promise<boolean> {
  if (keys.length === 0) return false;
  try {
    for (const key of keys) {
      const object = await parking.bucket.get(key);
      if (object === null) return false;
      const body = await object.arrayBuffer();
      await parking.bucket.put(key, body, { customMetadata: { ...object.customMetadata, key_id: keyId }, httpMetadata: object.httpMetadata });
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * A suspended org's refused batch, parked once (see the module comment). `parkAll` parks the
 * batch's pieces, adding each parked object to `pieces`, and resolves whether all of it was parked
 * (and, for Logpush, its record count). Resolves whether the batch is kept (answer "kept").
 */
export async function keepOnce(
  env: DeliveryEnv,
  parking: ParkingSettings,
  who: { orgId: string; keyId: string },
  digest: string,
  now: number,
  parkAll: (pieces: ParkedPiece[]) => Promise<{ whole: boolean; records: number | null }>,
): Promise<boolean> {
  const { orgId, keyId } = who;
  const before = await readMarker(parking, orgId, digest, now);
  if (before !== null && before.keyId === keyId) return true;
  if (before !== null && (await rekey(parking, before.keys, keyId))) {
    await writeMarker(parking, orgId, digest, now, { ...before, keyId });
    const count = logThrottle.hit(`${orgId} park_rekeyed`, now);
    if (count !== null) log({ event: "ingest_park_rekeyed", org_id: orgId, key_id: keyId, previous_key_id: before.keyId, batches: before.keys.length, count, window_s: DECISION_LOG_WINDOW_MS / 1000 });
    return true;
  }
  const pieces: ParkedPiece[] = [];
  let outcome: { whole: boolean; records: number | null };
  try {
    outcome = await parkAll(pieces);
  } catch (error) {
    await dropParked(env, parking, orgId, pieces, "park_stopped");
    throw error;
  }
  if (!outcome.whole) {
    await dropParked(env, parking, orgId, pieces, "park_stopped");
    return false;
  }
  await writeMarker(parking, orgId, digest, now, { keyId, keys: pieces.map((p) => p.key), bytes: pieces.reduce((sum, p) => sum + p.bytes, 0), records: outcome.records });
  if (before !== null) {
    // Resent with another key: the new copy is whole, the old one (maybe on a revoked key) goes.
    await dropParked(env, parking, orgId, before.keys.map((key) => ({ key, bytes: 0 })), "superseded");
    const count = logThrottle.hit(`${orgId} park_superseded`, now);
    if (count !== null) log({ event: "ingest_park_superseded", org_id: orgId, key_id: keyId, previous_key_id: before.keyId, count, window_s: DECISION_LOG_WINDOW_MS / 1000 });
  }
  return true;
}
