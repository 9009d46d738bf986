/**
 * The common Logpush batch, converted without building OTLP objects: NDJSON whose every line is a
 * flat record (no object or array inside) with no backslash in it. Each line is still parsed
 * (JSON.parse validates it and gives the values the time, severity and body need), but its
 * attributes are written from its own text: a string or key literal without a backslash is
 * already exactly what JSON.stringify would write. Building the objects and serialising them was
 * about half of a 64 MiB batch's conversion (issue 20).
 *
 * The text is the same, character for character, as
 * `JSON.stringify(toOtlpLogs(records, context)…logRecords)` from the general path; anything this
 * path does not handle exactly (another shape, an escape, a key given twice, an array-index key,
 * whose place in a JS object's key order is not the text's, `-0`, a batch without data) returns
 * null and the caller takes the general path, which also words any refusal.
 */
import { parseJson } from "./json-text.ts";
import { logRecordHead, timeFields, type LogpushContext } from "./otlp-logs.ts";

const QUOTE = 0x22;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const COMMA = 0x2c;
const INDEX_KEY = /^(?:0|[1-9]\d*)$/;
const INTEGER = /^-?(?:0|[1-9]\d*)$/;

/** The records' OTLP log records as JSON text without the enclosing brackets, and how many; null: use the general path. */
export function flatNdjsonLogs(text: string, context: LogpushContext): { records: number; json: string } | null {
  if (text.indexOf("\\") !== -1 || text.charCodeAt(0) === 0xfeff) return null;
  const observed = context.observedAtNs.toString();
  const fields = timeFields(context.dataset, context.timeField ?? null);
  const parts: string[] = [];
  let withData = false;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line === "") continue;
    if (line.charCodeAt(0) !== OPEN_BRACE || line.charCodeAt(line.length - 1) !== CLOSE_BRACE) return null;
    let record: unknown;
    try {
      record = parseJson(line);
    } catch {
      return null;
    }
    if (record === null || typeof record !== "object" || Array.isArray(record)) return null;
    const attributes = attributesOf(line, record as Record<string, unknown>);
    if (attributes === null) return null;
    if (attributes.data) withData = true;
    parts.push(`${logRecordHead(record as Record<string, unknown>, context, fields, observed)}${attributes.json}]}`);
  }
  if (!withData) return null;
  return { records: parts.length, json: parts.join(",") };
}

const skipSpace = (line: string, i: number): number => {
  while (i < line.length && line.charCodeAt(i) <= 0x20) i++;
  return i;
};

/**
 * A flat record's attributes from its text (already validated by JSON.parse): every non-null field
 * in order, typed as toAnyValue types it. null when the text is not flat, or its keys are not the
 * parsed object's keys in the same order (duplicates, array-index keys).
 */
function attributesOf(line: string, record: Record<string, unknown>): { json: string; data: boolean } | null {
  const out: string[] = [];
  let keys = 0;
  let i = skipSpace(line, 1);
  if (line.charCodeAt(i) === CLOSE_BRACE) return Object.keys(record).length === 0 ? { json: "", data: false } : null;
  for (;;) {
    if (line.charCodeAt(i) !== QUOTE) return null;
    const keyEnd = line.indexOf('"', i + 1) + 1;
    const keyLiteral = line.slice(i, keyEnd);
    const key = keyLiteral.slice(1, -1);
    if (INDEX_KEY.test(key)) return null;
    keys++;
    i = skipSpace(line, skipSpace(line, keyEnd) + 1); // past the colon
    const c = line.charCodeAt(i);
    let valueEnd: number;
    let value: string | null;
    if (c === QUOTE) {
      valueEnd = line.indexOf('"', i + 1) + 1;
      value = `{"stringValue":${line.slice(i, valueEnd)}}`;
    } else if (c === OPEN_BRACE || c === 0x5b) {
      return null;
    } else {
      valueEnd = i;
      while (valueEnd < line.length && line.charCodeAt(valueEnd) !== COMMA && line.charCodeAt(valueEnd) !== CLOSE_BRACE && line.charCodeAt(valueEnd) > 0x20) valueEnd++;
      const literal = line.slice(i, valueEnd);
      if (literal === "null") value = null;
      else if (literal === "true" || literal === "false") value = `{"boolValue":${literal}}`;
      else if (INTEGER.test(literal) && literal !== "-0") value = `{"intValue":"${literal}"}`;
      else {
        // A fraction or exponent: as toAnyValue writes the parsed number.
        const parsed = record[key];
        if (typeof parsed !== "number") return null;
        if (Number.isSafeInteger(parsed)) value = `{"intValue":"${String(parsed)}"}`;
        else value = Number.isFinite(parsed) ? `{"doubleValue":${JSON.stringify(parsed)}}` : `{"stringValue":${JSON.stringify(String(parsed))}}`;
      }
    }
    if (value !== null) out.push(`{"key":${keyLiteral},"value":${value}}`);
    i = skipSpace(line, valueEnd);
    const next = line.charCodeAt(i);
    if (next === CLOSE_BRACE) break;
    if (next !== COMMA) return null;
    i = skipSpace(line, i + 1);
  }
  if (Object.keys(record).length !== keys) return null;
  return { json: out.join(","), data: out.length > 0 };
}
