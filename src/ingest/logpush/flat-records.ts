/**
 * The common Logpush segment, NDJSON of flat records (objects whose values are strings, numbers,
 * booleans and nulls), written as OTLP log records' JSON (UTF-8) in one scan of the text: no
 * JSON.parse of the record, no attribute objects or strings (issue 20: the parse and the
 * conversion were over a third of a 64 MiB batch's CPU, and most of its garbage).
 *
 * Identical, byte for byte, to JSON.stringify of toOtlpLogs' log records for the records
 * parseJsonBatch reads from the same text (test/ingest/logpush-flat-records.test.ts checks it):
 * - a string token without a backslash, control character or surrogate is what JSON.stringify
 *   writes for its value, so it is copied; any other is decoded and written by JSON.stringify;
 * - numbers follow toAnyValue on the value parseJson gives: an integer literal is its own digits
 *   (exact above 2^53, as parseJson keeps it), `-0` is "0"; any other literal is Number(literal),
 *   then an intValue, a doubleValue printed as JSON.stringify prints it, or "Infinity";
 * - the time, severity and body come from toOtlpLogs' own eventTime, severityOf and bodyOf,
 *   handed a record of just the fields they read (headFields), decoded as parseJson decodes
 *   them, in the record's order;
 * - a key's token is copied (it has no escape, see below), each attribute written in the order
 *   and spelling JSON.stringify gives toOtlpLogs' objects, nulls left out as it leaves them out;
 * - between records only JSON whitespace, so the framing is plain NDJSON or one object, where
 *   parseJsonBatch neither unwraps nor refuses anything.
 *
 * Anything else gives null and the caller parses the segment the general way, which also words
 * every refusal: an object or array inside a record, a key given twice (JSON.parse keeps the last
 * value where the first stood), a key with an escape or surrogate, an array-index key (listed
 * first by for-in), `__proto__`, any text that is not valid JSON, no record with a non-null field.
 * So the fast path never accepts what the general path refuses.
 */
import { endOfString } from "./json-text.ts";
import { bodyOf, eventTime, headFields, severityOf, timeFields, type LogpushContext, type Severity, type TimeField } from "./otlp-logs.ts";
import type { LogpushRecord } from "./records.ts";
import { Utf8Builder } from "./utf8-builder.ts";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const COLON = 0x3a;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const encoder = new TextEncoder();
const INT_CLOSE = encoder.encode('"}}');
const ZERO_CLOSE = encoder.encode('0"}}');
const CLOSE = encoder.encode("}}");
const TRUE = encoder.encode("true}}");
const FALSE = encoder.encode("false}}");
const TIME = encoder.encode('{"timeUnixNano":"');
const BODY = encoder.encode(',"body":{"stringValue":');
const ATTRIBUTES = encoder.encode('},"attributes":[');
const ATTRIBUTES_CLOSE = encoder.encode("]}");

/**
 * A key as met in the records, with its attributes' openings encoded once (a batch's records
 * share their keys). Each opening starts with the comma that separates attributes: the record's
 * first one is copied without it.
 */
type Key = { token: string; codes: Uint16Array; name: string; read: boolean; string: Uint8Array; int: Uint8Array; double: Uint8Array; bool: Uint8Array };

/**
 * One batch's converter: what the log records' heads need (its dataset, time fields, observed
 * time), the keys of the records seen last, and a buffer for a record's attributes.
 */
export class FlatRecords {
  private readonly dataset: string;
  private readonly fields: readonly TimeField[];
  private readonly names: Set<string>;
  private readonly leading: number;
  private readonly observed: string;
  /** `","observedTimeUnixNano":"…","severityNumber":`, the same for every record of the batch. */
  private readonly observedPart: Uint8Array;
  /** The keys of the last record that brought a new one: the next records are checked against it, not each against itself. */
  private schema: Key[] = [];
  private readonly attributes = new Utf8Builder(64 * 1024);
  private readonly severities = new Map<Severity, Uint8Array>();

  constructor(context: LogpushContext) {
    this.dataset = context.dataset;
    this.observed = context.observedAtNs.toString();
    this.observedPart = encoder.encode(`","observedTimeUnixNano":"${this.observed}","severityNumber":`);
    this.fields = timeFields(context.dataset, context.timeField ?? null);
    ({ names: this.names, leading: this.leading } = headFields(context.dataset, this.fields));
  }

  /**
   * The segment's log records written to `out` as JSON, comma-separated (the inside of a
   * logRecords array), and how many; null, with `out` as it was, when the segment is not all
   * flat records (see the header).
   */
  write(text: string, out: Utf8Builder): number | null {
    const mark = out.length;
    const records = this.scan(text, out);
    if (records === null) out.length = mark;
    return records;
  }

  private scan(text: string, out: Utf8Builder): number | null {
    const attributes = this.attributes;
    let records = 0;
    let data = false;
    let i = skipSpace(text, 0);
    while (i < text.length) {
      if (text.charCodeAt(i) !== OPEN_BRACE) return null;
      attributes.length = 0;
      const head: LogpushRecord = {};
      let leading = 0;
      let keys: Key[] | null = null;
      /** The tokens of `keys`: a key given twice is found in one lookup, not a scan of the record's keys (quadratic for thousands). */
      let tokens: Set<string> | null = null;
      let k = 0;
      i = skipSpace(text, i + 1);
      if (text.charCodeAt(i) === CLOSE_BRACE) i++;
      else {
        for (;;) {
          if (text.charCodeAt(i) !== QUOTE) return null;
          let key: Key;
          const known = this.schema[k];
          if (keys === null && known !== undefined && codesAt(text, i, known.codes)) key = known;
          else {
            const end = plainStringEnd(text, i);
            if (end === -1) return null;
            key = this.keyOf(text.slice(i, end));
            keys ??= this.schema.slice(0, k);
            tokens ??= new Set(keys.map((other) => other.token));
            if (key.name === "__proto__" || isDigit(key.name.charCodeAt(0)) || tokens.has(key.token)) return null;
            keys.push(key);
            tokens.add(key.token);
          }
          k++;
          i += key.codes.length;
          if (text.charCodeAt(i) !== COLON) {
            i = skipSpace(text, i);
            if (text.charCodeAt(i) !== COLON) return null;
          }
          i++;
          if (text.charCodeAt(i) <= 0x20) i = skipSpace(text, i);

          const c = text.charCodeAt(i);
          const wanted = key.read || leading < this.leading;
          let value: string | number | bigint | boolean | null;
          if (c === QUOTE) {
            attributes.raw(key.string);
            let end = copyPlainString(text, i, attributes);
            if (end !== -1) value = wanted ? text.slice(i + 1, end - 1) : "";
            else {
              end = endOfString(text, i);
              if (end === -1) return null;
              try {
                value = JSON.parse(text.slice(i, end)) as string;
              } catch {
                return null;
              }
              attributes.text(JSON.stringify(value));
              attributes.raw(CLOSE);
            }
            i = end;
          } else if (c === MINUS || isDigit(c)) {
            const end = numberEnd(text, i);
            if (end === -1) return null;
            if (isInteger(text, i, end)) {
              // parseJson keeps an integer literal exact whatever its size: its digits are the value's.
              attributes.raw(key.int);
              if (end - i === 2 && c === MINUS && text.charCodeAt(i + 1) === ZERO) attributes.raw(ZERO_CLOSE);
              else copyDigits(text, i, end, attributes);
              if (wanted) {
                const literal = text.slice(i, end);
                const number = Number(literal);
                value = Number.isSafeInteger(number) ? number : BigInt(literal);
              } else value = 0;
            } else {
              const number = Number(text.slice(i, end));
              if (Number.isSafeInteger(number)) {
                attributes.raw(key.int);
                attributes.ascii(String(number));
                attributes.raw(INT_CLOSE);
              } else {
                attributes.raw(Number.isFinite(number) ? key.double : key.string);
                attributes.ascii(Number.isFinite(number) ? String(number) : `"${number}"`);
                attributes.raw(CLOSE);
              }
              value = number;
            }
            i = end;
          } else if (occursAt(text, i, "true") || occursAt(text, i, "false")) {
            value = c === 0x74;
            attributes.raw(key.bool);
            attributes.raw(value ? TRUE : FALSE);
            i += value ? 4 : 5;
          } else if (occursAt(text, i, "null")) {
            value = null;
            i += 4;
          } else return null;

          if (value !== null) {
            data = true;
            // The first `leading` non-empty fields, for a generic body; every field the head reads.
            const lead = value !== "" && leading < this.leading;
            if (lead) leading++;
            if (lead || key.read) head[key.name] = value;
          }
          let next = text.charCodeAt(i);
          if (next <= 0x20) {
            i = skipSpace(text, i);
            next = text.charCodeAt(i);
          }
          if (next === CLOSE_BRACE) {
            i++;
            break;
          }
          if (next !== COMMA) return null;
          i = skipSpace(text, i + 1);
        }
      }
      if (keys !== null) this.schema = keys;
      if (records > 0) out.byte(COMMA);
      this.writeHead(head, out);
      if (attributes.length > 0) out.append(attributes, 1);
      out.raw(ATTRIBUTES_CLOSE);
      records++;
      i = skipSpace(text, i);
    }
    return data ? records : null;
  }

  /** The severity's JSON after `"severityNumber":`, for each of severityOf's few constant answers. */
  private severityBytes(severity: Severity): Uint8Array {
    let bytes = this.severities.get(severity);
    if (bytes === undefined) {
      bytes = encoder.encode(`${severity.severityNumber}${severity.severityText === undefined ? "" : `,"severityText":"${severity.severityText}"`}`);
      this.severities.set(severity, bytes);
    }
    return bytes;
  }

  private keyOf(token: string): Key {
    const name = token.slice(1, -1);
    const open = `,{"key":${token},"value":{`;
    const bytes = (text: string) => encoder.encode(text);
    const codes = new Uint16Array(token.length);
    for (let j = 0; j < token.length; j++) codes[j] = token.charCodeAt(j);
    return {
      token,
      codes,
      name,
      read: this.names.has(name),
      string: bytes(`${open}"stringValue":`),
      int: bytes(`${open}"intValue":"`),
      double: bytes(`${open}"doubleValue":`),
      bool: bytes(`${open}"boolValue":`),
    };
  }

  /**
   * The log record's JSON up to its attributes array, opened: what JSON.stringify writes of
   * toOtlpLogs' time, severity and body, in its order and spelling.
   */
  private writeHead(record: LogpushRecord, out: Utf8Builder): void {
    const time = eventTime(record, this.fields);
    out.raw(TIME);
    out.ascii(time === null ? this.observed : time.ns.toString());
    out.raw(this.observedPart);
    out.raw(this.severityBytes(severityOf(this.dataset, record)));
    out.raw(BODY);
    out.text(JSON.stringify(bodyOf(this.dataset, record, time?.field ?? null)));
    out.raw(ATTRIBUTES);
  }
}

const isDigit = (c: number) => c >= ZERO && c <= NINE;

/** `text.startsWith(token, at)`, which V8 runs several times slower for a position inside a long string. */
function occursAt(text: string, at: number, token: string): boolean {
  if (at + token.length > text.length) return false;
  for (let j = 0; j < token.length; j++) if (text.charCodeAt(at + j) !== token.charCodeAt(j)) return false;
  return true;
}

/** occursAt for a key's token, as char codes: the token is a slice of an earlier segment, slower to read. */
function codesAt(text: string, at: number, codes: Uint16Array): boolean {
  if (at + codes.length > text.length) return false;
  for (let j = 0; j < codes.length; j++) if (text.charCodeAt(at + j) !== codes[j]) return false;
  return true;
}

/** Past JSON whitespace (space, tab, line feed, carriage return): what JSON.parse skips, and nothing more. */
function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
    else return i;
  }
}

/** Whether a string token can be copied as JSON.stringify would write its value: no backslash, no control character (invalid JSON), no surrogate (a lone one is escaped). */
const isPlain = (c: number) => c !== BACKSLASH && c >= 0x20 && (c < 0xd800 || c > 0xdfff);

/** The end (exclusive) of the plain string token at `start` (see isPlain), or -1. */
function plainStringEnd(text: string, start: number): number {
  const n = text.length;
  for (let j = start + 1; j < n; j++) {
    const c = text.charCodeAt(j);
    if (c === QUOTE) return j + 1;
    if (!isPlain(c)) return -1;
  }
  return -1;
}

/** An integer literal's characters and the attribute's closing `"}}`. */
function copyDigits(text: string, start: number, end: number, out: Utf8Builder): void {
  out.reserve(end - start + 3);
  const bytes = out.bytes;
  let at = out.length;
  for (let j = start; j < end; j++) bytes[at++] = text.charCodeAt(j);
  bytes[at++] = QUOTE;
  bytes[at++] = CLOSE_BRACE;
  bytes[at++] = CLOSE_BRACE;
  out.length = at;
}

/** plainStringEnd, copying the token and the attribute's closing `}}` to `out` as UTF-8 as it goes; on -1 `out` is as it was. */
function copyPlainString(text: string, start: number, out: Utf8Builder): number {
  // The next quote ends the token unless an escape comes first, which sends it the slow way anyway.
  const close = text.indexOf('"', start + 1);
  if (close === -1) return -1;
  out.reserve(3 * (close - start) + 3);
  const bytes = out.bytes;
  let at = out.length;
  bytes[at++] = QUOTE;
  for (let j = start + 1; j < close; j++) {
    const c = text.charCodeAt(j);
    if (c < 0x80) {
      if (c === BACKSLASH || c < 0x20) return -1;
      bytes[at++] = c;
    } else if (c < 0x800) {
      bytes[at++] = 0xc0 | (c >> 6);
      bytes[at++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdfff) return -1;
    else {
      bytes[at++] = 0xe0 | (c >> 12);
      bytes[at++] = 0x80 | ((c >> 6) & 0x3f);
      bytes[at++] = 0x80 | (c & 0x3f);
    }
  }
  bytes[at++] = QUOTE;
  bytes[at++] = CLOSE_BRACE;
  bytes[at++] = CLOSE_BRACE;
  out.length = at;
  return close + 1;
}

/** The end (exclusive) of a JSON number literal at `start` (`-? (0 | [1-9]\d*) (\.\d+)? ([eE][+-]?\d+)?`), or -1. */
function numberEnd(text: string, start: number): number {
  let j = start;
  if (text.charCodeAt(j) === MINUS) j++;
  if (text.charCodeAt(j) === ZERO) j++;
  else if (isDigit(text.charCodeAt(j))) while (isDigit(text.charCodeAt(j))) j++;
  else return -1;
  if (text.charCodeAt(j) === DOT) {
    j++;
    if (!isDigit(text.charCodeAt(j))) return -1;
    while (isDigit(text.charCodeAt(j))) j++;
  }
  const e = text.charCodeAt(j);
  if (e === 0x65 || e === 0x45) {
    j++;
    const sign = text.charCodeAt(j);
    if (sign === 0x2b || sign === MINUS) j++;
    if (!isDigit(text.charCodeAt(j))) return -1;
    while (isDigit(text.charCodeAt(j))) j++;
  }
  return j;
}

/** No fraction, no exponent in the literal `text[start, end)`. */
function isInteger(text: string, start: number, end: number): boolean {
  for (let j = start; j < end; j++) {
    const c = text.charCodeAt(j);
    if (c === DOT || c === 0x65 || c === 0x45) return false;
  }
  return true;
}
