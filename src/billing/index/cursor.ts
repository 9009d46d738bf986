import { z } from "zod";

/**
 * The index's page cursor: where the last page ended, as the state listed and the last row's sort key
 * (`sort_key`, then `org_id`, the order every list is read in). Each shard reads its rows after that key
 * through an index, so a page costs the same at the thousandth page as at the first (no OFFSET), and rows
 * added or removed between pages neither shift nor repeat the others. No snapshot is kept: an org whose own
 * place moves while a walk is under way (overdue again with a later deadline, restored again) may be met
 * twice or not at all by that walk (docs/admin-api.md, "Paging"; test/billing/scale-break.test.ts).
 *
 * Outside it is opaque: base64url of a small JSON object. A cursor is accepted only if it decodes to exactly
 * that object and encodes back to the same text, so a hand-made or altered cursor is refused where it
 * enters (the admin API's 400, the console's first page) rather than read in some approximate way.
 */
export const LISTED_STATES = ["overdue", "suspended", "ok"] as const;
export type ListedState = (typeof LISTED_STATES)[number];

/** Largest sort key: an overdue org with no deadline, a suspended org with no suspension time (they list last). */
export const LAST_KEY = Number.MAX_SAFE_INTEGER;

const Position = z
  .object({
    s: z.enum(LISTED_STATES),
    k: z.number().int().min(-LAST_KEY).max(LAST_KEY),
    o: z.string().min(1).max(256),
  })
  .strict();
export type CursorPosition = { state: ListedState; key: number; orgId: string };

const BASE64URL = /^[A-Za-z0-9_-]{1,600}$/;

export function encodeCursor(position: CursorPosition): string {
  const json = JSON.stringify({ s: position.state, k: position.key, o: position.orgId });
  let binary = "";
  for (const byte of new TextEncoder().encode(json)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The position a cursor carries, or null when the index did not make it. */
export function decodeCursor(cursor: string): CursorPosition | null {
  if (!BASE64URL.test(cursor)) return null;
  let json: string;
  try {
    const binary = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
    json = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return null;
  }
  const parsed = Position.safeParse(value);
  if (!parsed.success) return null;
  const position = { state: parsed.data.s, key: parsed.data.k, orgId: parsed.data.o };
  // One text per position: padding, other whitespace or key order would be a cursor the index never made.
  return encodeCursor(position) === cursor ? position : null;
}
