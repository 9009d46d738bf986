/**
 * A decompressed Logpush body to records, whatever output_options framed it: CSV when
 * destination_conf says `format=csv`, otherwise JSON in any framing (see json-batch.ts).
 */
import { parseCsvBatch } from "./csv-batch.ts";
import { parseJsonBatch } from "./json-batch.ts";
import type { LogpushOptions } from "./options.ts";
import { fail, type LogpushRecord, type ParseResult } from "./records.ts";

const JSON_DEFAULTS: LogpushOptions = { format: "json", fields: null, timeField: null };

export function parseLogpushBody(text: string, options: LogpushOptions = JSON_DEFAULTS): ParseResult {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (!/\S/.test(body)) return fail("invalid_payload", "the body is empty");
  return options.format === "csv" ? parseCsvBatch(body, options.fields) : parseJsonBatch(body);
}

/** Longest body worth checking for a validation request (`{"content":"tests"}` and friends). */
const VALIDATION_MAX_CHARS = 256;
const BARE_VALIDATION = /^\uFEFF?\s*tests?\s*$/;

/**
 * Cloudflare's job-creation check, which may reach any destination whatever its format: the
 * documented gzipped `{"content":"tests"}` (an object whose only key is `content`, a string), or
 * a bare `test` body, which other receivers (the OpenTelemetry Collector's) also accept.
 */
export function isValidationBody(text: string): boolean {
  if (text.length > VALIDATION_MAX_CHARS) return false;
  if (BARE_VALIDATION.test(text)) return true;
  const parsed = parseJsonBatch(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  return parsed.ok && isValidationRequest(parsed.records);
}

/** Exactly one record whose only key is `content`, a string (documented value `"tests"`; some receivers report `"test"`). */
export function isValidationRequest(records: readonly LogpushRecord[]): boolean {
  if (records.length !== 1) return false;
  const record = records[0]!;
  const keys = Object.keys(record);
  return keys.length === 1 && keys[0] === "content" && typeof record.content === "string";
}
