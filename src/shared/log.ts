/**
 * One structured log line per decision. Objects (not strings) are logged so that
 * `wrangler tail --format json` shows them as `logs[i].message[0]` with fields intact
 * and Workers Logs indexes them. Callers must never pass secrets or ingest keys.
 */
export type LogEvent = { event: string; [field: string]: unknown };

export function log(entry: LogEvent): void {
  console.log(entry);
}

export function logWarn(entry: LogEvent): void {
  console.warn(entry);
}

export function logError(entry: LogEvent): void {
  console.error(entry);
}
