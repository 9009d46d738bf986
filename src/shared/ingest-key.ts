import { z } from "zod";
import { bearerToken } from "./bearer.ts";
import { MirrorEntry } from "./billing-state.ts";

/**
 * Ingest keys: a recognisable prefix (so leaked keys are easy to spot and scan for) and
 * 32 random bytes in base64url. Only HMAC-SHA256(key) under INGEST_KEY_PEPPER is stored.
 */
export const INGEST_KEY_PREFIX = "tg_ik_";
const KEY_PATTERN = /^tg_ik_[A-Za-z0-9_-]{43}$/;

/**
 * What INGEST_KEYS holds under each key hash. `verdict` is the org's mirror entry, rewritten by the org's
 * object with every publication, so a cold key costs one KV read for both who is sending and may they;
 * null (or absent, in entries written before it existed) means: read the org's mirror entry instead.
 */
export const IngestKeyRecord = z.object({ org_id: z.string(), key_id: z.string(), created_at: z.number(), verdict: MirrorEntry.nullable().optional() });
export type IngestKeyRecord = z.infer<typeof IngestKeyRecord>;

export function isWellFormedIngestKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function generateIngestKey(): { key: string; keyId: string } {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const id = crypto.getRandomValues(new Uint8Array(8));
  return { key: `${INGEST_KEY_PREFIX}${base64url(secret)}`, keyId: `ik_${[...id].map((b) => b.toString(16).padStart(2, "0")).join("")}` };
}

/**
 * The imported key per pepper: the key, never the promise of it. A request that awaited another request's pending
 * import would run on in that request's context (Workers), its I/O and its response made there; an isolate's first
 * concurrent requests each import instead.
 */
const peppers = new Map<string, CryptoKey>();

/** HMAC-SHA256(key) under the pepper, base64url: the only form in which keys are stored. */
export async function hashIngestKey(pepper: string, key: string): Promise<string> {
  let hmac = peppers.get(pepper);
  if (!hmac) {
    hmac = await crypto.subtle.importKey("raw", new TextEncoder().encode(pepper), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    peppers.set(pepper, hmac);
  }
  const mac = await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(key));
  return base64url(new Uint8Array(mac));
}

/**
 * The presented key: `Authorization: Bearer <key>` ("Bearer" case-insensitive) or
 * `x-ingest-key: <key>`. Query strings are never consulted.
 */
export function presentedIngestKey(headers: Headers): string | null {
  const bearer = bearerToken(headers);
  if (bearer !== null) return bearer;
  const header = headers.get("x-ingest-key");
  return header === null || header.trim() === "" ? null : header.trim();
}
