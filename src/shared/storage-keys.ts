/**
 * Every KV key format lives here, so the billing Worker (writer) and the ingest Worker
 * (reader) cannot drift apart.
 */

/** `BILLING_STATE`: one entry per org whose state ever changed; a missing entry means `ok`. */
export function billingStateKey(orgId: string): string {
  return `org:${orgId}`;
}

/** Every KV key format, as docs/storage.md writes them (a test holds the doc to this list). */
export const KV_KEY_FORMATS = [billingStateKey("{orgId}"), ingestKeyHashKey("{hash}")];

/** `INGEST_KEYS`: HMAC-SHA256(key) under `INGEST_KEY_PEPPER`, base64url. Raw keys are never stored. */
export function ingestKeyHashKey(keyHash: string): string {
  return `key:${keyHash}`;
}
