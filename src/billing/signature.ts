import { ConfigError } from "./config.ts";

/** Standard Webhooks / Svix: timestamps further than this from now are refused. */
export const TIMESTAMP_TOLERANCE_SECONDS = 5 * 60;

/**
 * Senders list one entry per active secret (two while rotating), plus perhaps `v1a` ones.
 * A longer list is refused before any HMAC is computed: it only ever comes from an attacker.
 */
export const MAX_SIGNATURE_ENTRIES = 32;

export type SignatureFailure = {
  code: "missing_signature_headers" | "timestamp_out_of_tolerance" | "too_many_signatures" | "invalid_signature";
  message: string;
};
export type SignedMessage = { id: string; timestamp: number };

/** The imported key per secret: the key, never the promise of it (see hashIngestKey in shared/ingest-key.ts for why). */
const keyCache = new Map<string, CryptoKey>();

function decodeBase64(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

function secretBytes(secret: string): Uint8Array | null {
  const bytes = secret.startsWith("whsec_") ? decodeBase64(secret.slice("whsec_".length)) : null;
  return bytes === null || bytes.length === 0 ? null : bytes;
}

/** Whether `secret` is a usable `whsec_<base64>` signing secret (checked where settings are read). */
export function isSigningSecret(secret: string): boolean {
  return secretBytes(secret) !== null;
}

/** `whsec_<base64>`: the decoded bytes are the HMAC-SHA256 key. The imported key is kept for the isolate (concurrent first callers each import it). */
export async function importSigningSecret(secret: string, variable = "AUTUMN_WEBHOOK_SECRET"): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    const bytes = secretBytes(secret);
    if (bytes === null) throw new ConfigError(variable, `${variable} must hold whsec_<base64> secrets separated by spaces`);
    key = await crypto.subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keyCache.set(secret, key);
  }
  return key;
}

/** Accepts Svix's `svix-*` headers and the unbranded `webhook-*` ones. */
export function signatureHeaders(headers: Headers): { id: string; timestamp: string; signature: string } | null {
  for (const prefix of ["svix", "webhook"]) {
    const id = headers.get(`${prefix}-id`);
    const timestamp = headers.get(`${prefix}-timestamp`);
    const signature = headers.get(`${prefix}-signature`);
    if (id && timestamp && signature) return { id, timestamp, signature };
  }
  return null;
}

function signedContent(id: string, timestamp: string, body: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode(`${id}.${timestamp}.`);
  const content = new Uint8Array(prefix.length + body.length);
  content.set(prefix);
  content.set(body, prefix.length);
  return content;
}

/** The `webhook-signature` value for a delivery: `v1,` and the base64 HMAC of `id.timestamp.body`. */
export async function signPayload(key: CryptoKey, id: string, timestamp: string, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", key, signedContent(id, timestamp, new TextEncoder().encode(body)));
  return `v1,${btoa(String.fromCharCode(...new Uint8Array(mac)))}`;
}

/**
 * Verifies a Svix-signed delivery against the raw body bytes. Any `v1` entry signed by any
 * of `keys` is enough (senders list several while rotating; receivers hold several while
 * rotating). The body is HMACed once per configured secret, whatever the number of
 * entries, and each entry is compared with that MAC in constant time.
 */
export async function verifySignature(input: {
  keys: CryptoKey[];
  headers: Headers;
  body: Uint8Array;
  nowMs: number;
}): Promise<({ ok: true } & SignedMessage) | ({ ok: false } & SignatureFailure)> {
  const found = signatureHeaders(input.headers);
  if (found === null) {
    return { ok: false, code: "missing_signature_headers", message: "svix-id, svix-timestamp and svix-signature (or webhook-*) headers are required" };
  }
  if (!/^\d{1,15}$/.test(found.timestamp)) {
    return { ok: false, code: "missing_signature_headers", message: "the signature timestamp must be integer seconds since the epoch" };
  }
  const timestamp = Number(found.timestamp);
  const skew = Math.floor(input.nowMs / 1000) - timestamp;
  if (Math.abs(skew) > TIMESTAMP_TOLERANCE_SECONDS) {
    return {
      ok: false,
      code: "timestamp_out_of_tolerance",
      message: `the signature timestamp is ${skew > 0 ? "too old" : "too new"} (more than ${TIMESTAMP_TOLERANCE_SECONDS} s from now); check the sender's clock`,
    };
  }

  const entries = found.signature.split(" ").filter((entry) => entry !== "");
  if (entries.length > MAX_SIGNATURE_ENTRIES) {
    return { ok: false, code: "too_many_signatures", message: `the signature header lists ${entries.length} entries; at most ${MAX_SIGNATURE_ENTRIES} are accepted` };
  }
  const candidates: Uint8Array[] = [];
  for (const entry of entries) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const bytes = decodeBase64(entry.slice(comma + 1));
    if (bytes !== null && bytes.length === 32) candidates.push(bytes);
  }
  if (candidates.length > 0) {
    const content = signedContent(found.id, found.timestamp, input.body);
    for (const key of input.keys) {
      const expected = await crypto.subtle.sign("HMAC", key, content);
      // Every candidate is compared, so the time taken does not say which one matched.
      let matched = false;
      for (const candidate of candidates) matched = crypto.subtle.timingSafeEqual(expected, candidate) || matched;
      if (matched) return { ok: true, id: found.id, timestamp };
    }
  }
  return { ok: false, code: "invalid_signature", message: "no v1 signature matches the body with the configured secret(s)" };
}
