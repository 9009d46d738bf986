import { z } from "zod";
import { IndexCursor } from "../index/entry.ts";
import { OrgId } from "../../shared/storage-keys.ts";
import { DEAD_LETTER_LIMIT } from "../org/events.ts";
import { ORG_VIEW_DEAD_LETTERS } from "../org/view.ts";

/** `POST /admin/orgs/{orgId}/override`. `until` is an ISO time in the future. */
export const OverrideBody = z.object({
  action: z.enum(["exempt", "suspend", "unsuspend", "clear"]),
  until: z.iso.datetime({ offset: true }).optional(),
  note: z.string().trim().min(1, "a note is required: say who asked and why").max(2000),
});
export type OverrideBody = z.infer<typeof OverrideBody>;

/**
 * `POST /admin/orgs/{orgId}/enforcement` (issue 21): the org's own enforcement mode against the Workers'
 * ENFORCEMENT (a canary); `default` clears it. A note, as every override has.
 */
export const EnforcementBody = z.object({
  mode: z.enum(["enforce", "observe", "default"]),
  note: z.string().trim().min(1, "a note is required: say who asked and why").max(2000),
});
export type EnforcementBody = z.infer<typeof EnforcementBody>;

/** What the org's object receives once the worker has validated the request. */
export type OverrideCommand = { action: OverrideBody["action"]; until: number | null; note: string };

/** `GET /admin/orgs?state=...&limit=...&cursor=...`: a page of the index. */
export const ListQuery = z.object({
  state: z.enum(["overdue", "suspended", "ok"]),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: IndexCursor.optional(),
});

/** Orgs per `POST /admin/ingest-keys:batch`: one object call each, so a request stays well within a Worker's subrequests. */
export const MAX_BATCH_ORGS = 1_000;
/** The batch body's cap: 1,000 ids of 128 characters, quoted and separated, are about 131 KB. */
export const MAX_BATCH_BODY_BYTES = 256 * 1024;

/**
 * `POST /admin/ingest-keys:batch`: one new key for each org named. Duplicates are found after the schema
 * (`duplicateOrgs`), so they get their own error code: a list naming an org twice is refused whole.
 */
export const MintBatchBody = z.strictObject({
  orgs: z.array(OrgId).min(1, "name at least one org").max(MAX_BATCH_ORGS, `at most ${MAX_BATCH_ORGS} orgs per call: split the list`),
});
export type MintBatchBody = z.infer<typeof MintBatchBody>;

/** The org ids named more than once, each once, in the order first repeated. */
export function duplicateOrgs(orgs: readonly string[]): string[] {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const org of orgs) (seen.has(org) ? repeated : seen).add(org);
  return [...repeated];
}

/**
 * `GET /admin/orgs/{orgId}/dead-letters?cursor=&limit=`: `cursor` is a `next_cursor` the API answered (the seq
 * to continue below); at most DEAD_LETTER_LIMIT per page, since no org keeps more.
 */
export const DeadLetterQuery = z.object({
  cursor: z
    .string()
    .regex(/^[1-9][0-9]{0,14}$/, "cursor must be a next_cursor this API answered")
    .transform(Number)
    .optional(),
  limit: z.coerce.number().int().min(1).max(DEAD_LETTER_LIMIT).default(ORG_VIEW_DEAD_LETTERS),
});
