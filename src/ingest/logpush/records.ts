/** What every body parser yields: records, or a refusal with a stable code and a message naming what to fix. */

export type LogpushRecord = Record<string, unknown>;
export type ParseFailure = { ok: false; code: string; message: string };
export type ParseResult = { ok: true; records: LogpushRecord[] } | ParseFailure;

export const fail = (code: string, message: string): ParseFailure => ({ ok: false, code, message });

export const isRecord = (value: unknown): value is LogpushRecord => typeof value === "object" && value !== null && !Array.isArray(value);

export const kindOf = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : `a ${typeof value}`;

export const isScalar = (value: unknown): value is string | number | bigint | boolean =>
  typeof value === "string" || typeof value === "number" || typeof value === "bigint" || typeof value === "boolean";

/** A record carries something: at least one field that is not null. */
function hasData(record: LogpushRecord): boolean {
  for (const key in record) if (record[key] !== null && record[key] !== undefined) return true;
  return false;
}

/** The shared end of every parser: a batch with no record carrying data is refused, not forwarded as nothing. */
export function finish(records: LogpushRecord[], shape: string): ParseResult {
  if (!records.some(hasData)) {
    return fail(
      "no_records",
      `the body (${shape}) holds no records with fields; Logpush never sends an empty batch, so check the job's output_options (field_names, record_prefix, record_suffix, record_template)`,
    );
  }
  return { ok: true, records };
}
