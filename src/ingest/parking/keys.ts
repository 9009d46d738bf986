/**
 * The parking bucket's key formats (docs/storage.md, "R2 bucket PARKING"). Apart from store.ts so
 * the storage doc's test, which runs in Node, can read them.
 */

/** One object per parked batch: `parked/{orgId}/{receivedAt}-{sequence}-{random}`, so a listing is in receive order. */
export const PARKED_PREFIX = "parked/";
export const orgPrefix = (orgId: string) => `${PARKED_PREFIX}${orgId}/`;

/**
 * Refused batches parked once (issue 18, 5): Logpush resends a refused upload, and an exporter may
 * resend a refused batch; each would be parked, delivered and metered again. A marker under this
 * prefix (outside `parked/`) says a batch is already kept, with which key and in which objects
 * (kept-once.ts).
 */
export const DIGEST_PREFIX = "parked-digests/";
export const digestKey = (orgId: string, digest: string) => `${DIGEST_PREFIX}${orgId}/${digest}`;

/** Where the cleanup writes the bucket's parked bytes (outside `parked/`, so no listing of parked data sees it). */
export const PARKED_TOTAL_KEY = "meta/parked-total.json";

/** Every key format, as docs/storage.md writes them (a test holds the doc to this list). */
export const R2_KEY_FORMATS = [orgPrefix("{orgId}"), digestKey("{orgId}", "{sha256 hex}"), PARKED_TOTAL_KEY];
