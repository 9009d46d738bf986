import { z } from "zod";
import { IndexCursor } from "../index/entry.ts";

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
