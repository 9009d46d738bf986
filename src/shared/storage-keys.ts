import { z } from "zod";

/**
 * The org id and every key made from it. An org id is valid because it becomes part of KV keys
 * and Durable Object names, so its rule lives beside the key formats it ends up in. Every KV key
 * format lives here, so the billing Worker (writer) and the ingest Worker (reader) cannot drift apart.
 */

/**
 * Org ids are Autumn customer ids. They name Durable Objects and KV keys, so they are
 * checked before any object is touched: 1-128 characters, letters, digits, `_`, `-`, `.`,
 * starting with a letter or digit.
 */
export const ORG_ID_RULE = "1-128 characters of letters, digits, '_', '-' or '.', starting with a letter or digit";
export const OrgId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, `org id must be ${ORG_ID_RULE}`);

export function isValidOrgId(value: unknown): value is string {
  return OrgId.safeParse(value).success;
}

/**
 * One path segment, percent-decoded, or null when it cannot be decoded (`%E0`, a bare `%`,
 * `%zz`, overlong or surrogate UTF-8). `decodeURIComponent` throws on those, and a throw
 * inside a route would be a 500 for what is a client's mistake; callers answer 400 or 404.
 */
export function decodePathSegment(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

/** The org id named by a path segment, or null when it is undecodable or not a valid org id. */
export function orgIdFromPath(raw: string | undefined): string | null {
  const decoded = decodePathSegment(raw);
  return decoded !== null && isValidOrgId(decoded) ? decoded : null;
}

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
