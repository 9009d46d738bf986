/**
 * The value if it is an https URL, else null. Pay links are shown to customers (refusals, events) and
 * linked from the console, so any other scheme (javascript:, http:) is dropped by both Workers.
 */
export function httpsUrl(value: string | null | undefined): string | null {
  return typeof value === "string" && URL.canParse(value) && new URL(value).protocol === "https:" ? value : null;
}
