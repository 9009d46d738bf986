import { z } from "zod";

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
