import { z } from "zod";
import { EnforcementBody, OverrideBody, type OverrideCommand } from "../admin/requests.ts";

/**
 * The console's override form, checked on the server: the browser's `pattern` is a hint,
 * never the check. "Until" is a UTC date-time to the minute, YYYY-MM-DDTHH:MMZ (the Z may be
 * left out: the field says UTC), so what an operator types is what is stored, whatever the
 * browser's time zone or locale.
 */
export const UNTIL_PATTERN = "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}Z?";
export const UNTIL_PLACEHOLDER = "YYYY-MM-DDTHH:MMZ";

/** An instant from "2026-12-05T10:00Z" (or without the Z), or null for anything else, an impossible day included. */
export function parseUtcMinute(text: string): number | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})Z?$/.exec(text.trim().toUpperCase());
  if (!match) return null;
  const [year, month, day, hour, minute] = match.slice(1).map(Number) as [number, number, number, number, number];
  const ms = Date.UTC(year, month - 1, day, hour, minute);
  const back = new Date(ms);
  // Date.UTC rolls 30 February over into March: only a date that reads back the same is one.
  const exact = back.getUTCFullYear() === year && back.getUTCMonth() === month - 1 && back.getUTCDate() === day && back.getUTCHours() === hour && back.getUTCMinutes() === minute;
  return exact ? ms : null;
}

const OverrideForm = z.object({
  action: z.unknown(),
  note: z.unknown(),
  until: z
    .string()
    .optional()
    .transform((text, ctx) => {
      if (text === undefined || text.trim() === "") return null;
      const ms = parseUtcMinute(text);
      if (ms === null) {
        ctx.addIssue({ code: "custom", message: `"${text}" is not a UTC date-time: write it as ${UNTIL_PLACEHOLDER}, e.g. 2026-12-31T18:00Z.` });
        return z.NEVER;
      }
      return ms;
    }),
});

export type OverrideFormResult = { ok: true; command: OverrideCommand } | { ok: false; error: string; message: string };

/** The form's fields as the org's object takes them, or the stable code and a sentence for the operator. */
export function readOverrideForm(form: FormData | null, now: number): OverrideFormResult {
  const field = (name: string) => {
    const value = form?.get(name);
    return typeof value === "string" ? value : undefined;
  };
  const fields = OverrideForm.safeParse({ action: field("action"), note: field("note") ?? "", until: field("until") });
  if (!fields.success) return { ok: false, error: "invalid_until", message: fields.error.issues[0]?.message ?? "invalid end date" };
  const until = fields.data.until;
  const body = OverrideBody.omit({ until: true }).safeParse({ action: fields.data.action, note: fields.data.note });
  if (!body.success) return { ok: false, error: "invalid_override", message: body.error.issues[0]?.message ?? "invalid override" };
  if (until !== null && until <= now) return { ok: false, error: "until_in_past", message: "The end of an override must be in the future." };
  if (body.data.action === "clear" && until !== null) return { ok: false, error: "clear_takes_no_end", message: "Clear takes no end date." };
  return { ok: true, command: { action: body.data.action, until, note: body.data.note } };
}

export type EnforcementFormResult = { ok: true; command: EnforcementBody } | { ok: false; error: string; message: string };

/** The enforcement form (mode and note), checked as the admin API checks it. */
export function readEnforcementForm(form: FormData | null): EnforcementFormResult {
  const field = (name: string) => {
    const value = form?.get(name);
    return typeof value === "string" ? value : undefined;
  };
  const body = EnforcementBody.safeParse({ mode: field("mode"), note: field("note") ?? "" });
  if (!body.success) return { ok: false, error: "invalid_enforcement", message: body.error.issues[0]?.message ?? "invalid enforcement" };
  return { ok: true, command: body.data };
}
