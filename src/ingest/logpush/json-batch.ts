/**
 * JSON Logpush bodies in every framing output_options can produce:
 * - NDJSON (the default), and records separated by any other record_delimiter (`,`, `;`, none);
 * - a JSON array (batch_prefix `[`, batch_suffix `]`, record_delimiter `,`);
 * - one object, pretty-printed or not;
 * - a batch wrapped in an object holding one array of records (batch_prefix `{"events":[`);
 * - records each wrapped in one more object by record_prefix/record_suffix (`{"info":{...}}`).
 *
 * Linear: one pass finds each top-level value with a bracket scanner (which also bounds the
 * nesting), then each value is parsed on its own. No copy of the whole body is made.
 */
import { lineOf, parseJson, scanJsonValue, errorText, MAX_DEPTH } from "./json-text.ts";
import { fail, finish, isRecord, isScalar, kindOf, type LogpushRecord, type ParseResult } from "./records.ts";

/** Fields that hold arrays of objects inside a real record, so a one-field record holding one is not taken for a batch wrapper. */
const RECORD_ARRAY_FIELDS = new Set(["Logs", "Exceptions", "DiagnosticsChannelEvents", "ScriptTags", "Entrypoint"]);
/** What may stand between records: a record_delimiter of punctuation or control characters, never text, digits, quotes or brackets. */
const DELIMITER = /^[^\w"{}[\]]{1,16}$/;
/** Where the text from `from` stops being whitespace: error messages name that line. */
const visible = (text: string, from: number): number => {
  const offset = text.slice(from).search(/\S/);
  return offset === -1 ? from : from + offset;
};
const preview = (text: string): string => JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);

const tooDeep = (text: string, at: number) =>
  fail("nesting_too_deep", `line ${lineOf(text, at)} nests JSON more than ${MAX_DEPTH} levels deep; Logpush records are never this deep, so the batch is refused`);

export function parseJsonBatch(text: string): ParseResult {
  const n = text.length;
  const values: unknown[] = [];
  const starts: number[] = [];
  let delimiter: string | null = null;
  let pos = 0;

  for (;;) {
    let i = pos;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x7b || c === 0x5b) break; // { [
      i++;
    }
    const gap = text.slice(pos, i).trim();
    if (i === n) {
      // After the last record only whitespace or one trailing delimiter may remain.
      if (values.length === 0) return notJson(text);
      if (gap !== "" && gap !== delimiter) return fail("invalid_payload", `line ${lineOf(text, visible(text, pos))}: text after the last record is not JSON: ${preview(gap)}`);
      break;
    }
    if (gap !== "") {
      // Before the first record only a record_prefix of punctuation may stand (`\u001e{`, `,{`).
      if (values.length === 0 && !DELIMITER.test(gap)) return notJson(text);
      if (!DELIMITER.test(gap)) return fail("invalid_payload", `line ${lineOf(text, visible(text, pos))}: text between records is not JSON: ${preview(gap)}`);
      if (delimiter === null) delimiter = gap;
      else if (gap !== delimiter) {
        return fail("invalid_payload", `line ${lineOf(text, visible(text, pos))}: records are separated by ${preview(delimiter)} and then by ${preview(gap)}; use one output_options.record_delimiter`);
      }
    }

    const scan = scanJsonValue(text, i);
    if (!scan.ok) {
      if (scan.reason === "too_deep") return tooDeep(text, scan.at);
      return fail("invalid_payload", `line ${lineOf(text, i)}: a JSON ${text[i] === "{" ? "object" : "array"} starts here but never ends`);
    }
    try {
      values.push(parseJson(text.slice(i, scan.end)));
    } catch (error) {
      return fail("invalid_payload", `line ${lineOf(text, i)} is not valid JSON: ${errorText(error)}`);
    }
    starts.push(i);
    pos = scan.end;
  }

  let records: LogpushRecord[];
  let shape: string;
  if (values.length === 1) {
    const only = values[0];
    const batch = Array.isArray(only) ? { items: only, where: "the JSON array" } : unwrapBatch(only as LogpushRecord);
    if ("code" in batch) return batch;
    if (batch.items === null) {
      records = [only as LogpushRecord];
      shape = "one JSON object";
    } else {
      const bad = batch.items.findIndex((item) => !isRecord(item));
      if (bad !== -1) {
        return fail(
          "unrecognised_batch",
          `element ${bad} of ${batch.where} is ${kindOf(batch.items[bad])}, not a record (a JSON object); check the job's output_options batch_prefix, record_prefix and record_suffix`,
        );
      }
      records = batch.items as LogpushRecord[];
      shape = batch.where;
    }
  } else {
    const bad = values.findIndex((value) => !isRecord(value));
    if (bad !== -1) {
      return fail(
        "unrecognised_batch",
        `line ${lineOf(text, starts[bad]!)} is ${kindOf(values[bad])}, not a record (a JSON object); check the job's output_options record_prefix and record_suffix (a JSON array needs batch_prefix "[" and record_delimiter ",")`,
      );
    }
    records = values as LogpushRecord[];
    shape = `${values.length} JSON objects`;
  }
  return finish(unwrapRecords(records), shape);
}

type Batch = { items: unknown[] | null; where: string } | ReturnType<typeof fail>;

/**
 * One object: a record, or a batch_prefix/batch_suffix wrapper `{"events":[ ... ]}` (exactly one
 * key, holding an array). An object made only of arrays and objects, with no field of its own,
 * is neither: it is refused rather than forwarded as one opaque record.
 */
function unwrapBatch(object: LogpushRecord): Batch {
  const keys = Object.keys(object);
  if (keys.length === 1 && Array.isArray(object[keys[0]!]) && !RECORD_ARRAY_FIELDS.has(keys[0]!)) {
    return { items: object[keys[0]!] as unknown[], where: `the ${JSON.stringify(keys[0])} array` };
  }
  const arrays = keys.filter((key) => Array.isArray(object[key]) && !RECORD_ARRAY_FIELDS.has(key));
  if (arrays.length > 0 && !keys.some((key) => isScalar(object[key]))) {
    return fail(
      "unrecognised_batch",
      `the body is one JSON object holding arrays under ${arrays.map((key) => JSON.stringify(key)).join(", ")} and no field of its own; Tollgate unwraps a batch only when output_options.batch_prefix/batch_suffix wrap it in an object with exactly one key, like {"events":[ ... ]}`,
    );
  }
  return { items: null, where: "one JSON object" };
}

/** record_prefix `{"info":{` / record_suffix `}}`: when every record is one same-named object, the records are inside it. */
function unwrapRecords(records: LogpushRecord[]): LogpushRecord[] {
  if (records.length === 0) return records;
  const first = Object.keys(records[0]!);
  if (first.length !== 1) return records;
  const key = first[0]!;
  if (RECORD_ARRAY_FIELDS.has(key)) return records;
  for (const record of records) {
    let count = 0;
    for (const _ in record) if (++count > 1) return records;
    if (!isRecord(record[key])) return records;
  }
  return records.map((record) => record[key] as LogpushRecord);
}

/** No JSON object or array anywhere, or text before the first one. */
function notJson(text: string): ParseResult {
  const trimmed = text.trim();
  if (trimmed.length < 1024) {
    try {
      const value = parseJson(trimmed);
      return fail("unrecognised_batch", `the body is ${kindOf(value)}, not Logpush records; check the job's output_options.output_type (for csv, add format=csv to destination_conf)`);
    } catch {
      // not JSON at all: below
    }
  }
  return fail(
    "invalid_payload",
    `line ${lineOf(text, Math.max(0, text.search(/\S/)))} is not JSON; if the job's output_options.output_type is csv, add format=csv (and fields=, unless a header line is sent) to the destination_conf URL`,
  );
}
