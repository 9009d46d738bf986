/**
 * CSV Logpush bodies (output_type `csv`): one record a line (record_suffix "\n", CRLF tolerated),
 * fields joined by the field_delimiter (`,`, tab, `;` or `|`, inferred), strings quoted, numbers
 * and booleans bare, null as an empty field. Field names come from `fields=` on the URL or from
 * a header line the job sends as its batch_prefix (both documented by Cloudflare).
 *
 * Quoted fields accept both escapes in use: JSON-style (`\"`, `\\`, `\n`) and RFC 4180 (`""`).
 * A bare field starting with `{` or `[` is a JSON value and is read whole, delimiters included.
 */
import { endOfString, errorText, lineOf, MAX_DEPTH, parseJson, scanJsonValue } from "./json-text.ts";
import { FIELD_NAME } from "./options.ts";
import { fail, finish, type LogpushRecord, type ParseFailure, type ParseResult } from "./records.ts";

const DELIMITERS = [",", "\t", ";", "|"];
const INTEGER = /^-?\d+$/;
const NUMBER = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

type Cell = { value: unknown; next: number };

export function parseCsvBatch(text: string, fields: string[] | null): ParseResult {
  let pos = 0;
  while (pos < text.length && (text[pos] === "\n" || text[pos] === "\r")) pos++;
  const firstEnd = text.indexOf("\n", pos) === -1 ? text.length : text.indexOf("\n", pos);
  const firstLine = text.slice(pos, firstEnd).replace(/\r$/, "");

  let names = fields;
  let delimiter: string | null = null;
  const header = headerOf(firstLine, fields);
  if (header !== null) {
    names = header.names;
    delimiter = header.delimiter;
    pos = firstEnd + 1;
  } else if (names === null) {
    return fail(
      "csv_fields_unknown",
      "line 1 is not a header line of field names: add fields= (the job's output_options.field_names, comma-separated, in order) to the destination_conf URL, or send a header line as output_options.batch_prefix",
    );
  } else {
    const inferred = inferDelimiter(text, pos, names.length);
    if (typeof inferred !== "string") return inferred;
    delimiter = inferred;
  }

  const records: LogpushRecord[] = [];
  while (pos < text.length) {
    if (text[pos] === "\n" || text[pos] === "\r") {
      pos++;
      continue;
    }
    const row = parseRow(text, pos, delimiter);
    if ("code" in row) return row;
    if (row.cells.length !== names!.length) return mismatch(text, pos, row.cells.length, names!.length, delimiter);
    const record: LogpushRecord = {};
    for (let i = 0; i < names!.length; i++) if (row.cells[i] !== undefined) record[names![i]!] = row.cells[i];
    records.push(record);
    pos = row.next;
  }
  return finish(records, "CSV");
}

/** A header line: bare field names split by one of the delimiters (the one giving the most names), equal to `fields` when those are given. */
function headerOf(line: string, fields: string[] | null): { names: string[]; delimiter: string } | null {
  let best: { names: string[]; delimiter: string } | null = null;
  for (const delimiter of DELIMITERS) {
    const names = line.split(delimiter).map((name) => name.trim());
    if (!names.every((name) => FIELD_NAME.test(name))) continue;
    if (fields !== null && (names.length !== fields.length || names.some((name, i) => name !== fields[i]))) continue;
    if (best === null || names.length > best.names.length) best = { names, delimiter };
  }
  return best;
}

/** The delimiter that splits the first row into `count` fields. */
function inferDelimiter(text: string, pos: number, count: number): string | ParseFailure {
  let comma: { cells: unknown[] } | ParseFailure | null = null;
  for (const delimiter of DELIMITERS) {
    const row = parseRow(text, pos, delimiter);
    if (delimiter === ",") comma = row;
    if ("code" in row) {
      if (row.code === "nesting_too_deep") return row;
      continue;
    }
    if (row.cells.length === count) return delimiter;
  }
  // Nothing fits: report the row as read with the default delimiter.
  return comma !== null && "code" in comma ? comma : mismatch(text, pos, comma?.cells.length ?? 0, count, ",");
}

function mismatch(text: string, pos: number, got: number, expected: number, delimiter: string): ParseFailure {
  return fail(
    "csv_fields_mismatch",
    `line ${lineOf(text, pos)} has ${got} fields split by ${JSON.stringify(delimiter)}, but ${expected} field names are known; make fields= (or the header line) list output_options.field_names exactly, in order`,
  );
}

function parseRow(text: string, start: number, delimiter: string): { cells: unknown[]; next: number } | ParseFailure {
  const cells: unknown[] = [];
  let pos = start;
  for (;;) {
    const cell = parseCell(text, pos, delimiter);
    if ("code" in cell) return cell;
    cells.push(cell.value);
    pos = cell.next;
    if (pos >= text.length) return { cells, next: pos };
    if (text.startsWith(delimiter, pos)) {
      pos += delimiter.length;
      continue;
    }
    if (text[pos] === "\r" && text[pos + 1] === "\n") return { cells, next: pos + 2 };
    if (text[pos] === "\n") return { cells, next: pos + 1 };
    return fail("invalid_payload", `line ${lineOf(text, pos)}: unexpected text after a field: ${JSON.stringify(text.slice(pos, pos + 20))}`);
  }
}

function parseCell(text: string, pos: number, delimiter: string): Cell | ParseFailure {
  const c = text[pos];
  if (c === '"') return quotedCell(text, pos);
  if (c === "{" || c === "[") {
    const scan = scanJsonValue(text, pos);
    if (!scan.ok) {
      return scan.reason === "too_deep"
        ? fail("nesting_too_deep", `line ${lineOf(text, scan.at)} nests JSON more than ${MAX_DEPTH} levels deep; Logpush records are never this deep, so the batch is refused`)
        : fail("invalid_payload", `line ${lineOf(text, pos)}: a JSON value starts here but never ends`);
    }
    try {
      return { value: parseJson(text.slice(pos, scan.end)), next: scan.end };
    } catch (error) {
      return fail("invalid_payload", `line ${lineOf(text, pos)}: a field is not valid JSON: ${errorText(error)}`);
    }
  }
  let end = text.indexOf(delimiter, pos);
  const eol = text.indexOf("\n", pos);
  if (end === -1 || (eol !== -1 && eol < end)) end = eol === -1 ? text.length : eol;
  let raw = text.slice(pos, end);
  if (raw.endsWith("\r")) raw = raw.slice(0, -1);
  return { value: bareValue(raw.trim()), next: pos + raw.length };
}

/** A quoted field: JSON escapes (Logpush's own quoting) or RFC 4180 doubled quotes. */
function quotedCell(text: string, pos: number): Cell | ParseFailure {
  let j = pos + 1;
  let doubled = false;
  let escaped = false;
  for (;;) {
    const end = endOfString(text, j - 1);
    if (end === -1) return fail("invalid_payload", `line ${lineOf(text, pos)}: a quoted field never ends`);
    if (text.lastIndexOf("\\", end - 2) >= pos) escaped = true;
    if (text[end] === '"') {
      // `""` inside a field: an RFC 4180 escaped quote, keep going.
      doubled = true;
      j = end + 1;
      continue;
    }
    const raw = text.slice(pos, end);
    if (escaped) {
      try {
        return { value: JSON.parse(raw), next: end };
      } catch {
        // a backslash that is plain text in RFC 4180 quoting: below
      }
    }
    const inner = raw.slice(1, -1);
    return { value: doubled ? inner.replaceAll('""', '"') : inner, next: end };
  }
}

/** Bare fields: integers (exact, bigint above 2^53), other numbers, booleans, null; empty is absent; anything else is text. */
function bareValue(raw: string): unknown {
  if (raw === "") return undefined;
  if (INTEGER.test(raw)) {
    const n = Number(raw);
    return Number.isSafeInteger(n) ? n : BigInt(raw);
  }
  if (NUMBER.test(raw)) return Number(raw);
  if (raw === "true") return true;
  if (raw === "false") return false;
  if (raw === "null") return null;
  return raw;
}
