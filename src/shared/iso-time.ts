/** Epoch milliseconds as an ISO string for JSON views; null (or undefined) stays null. */
export function isoOrNull(ms: number | null | undefined): string | null {
  return ms == null ? null : new Date(ms).toISOString();
}
