/**
 * JSON text helpers for Logpush records: a bracket scanner that finds where one JSON value ends
 * and how deep it nests (without recursion), parsing that keeps integers above 2^53 exact, and
 * serialising back with bigints as plain digits.
 *
 * Why a depth limit: V8's `JSON.parse` is iterative, but a reviver (which exact integers need)
 * and any recursive walk of the result are not; a record nested 5,000 deep overflowed the stack.
 * Every value is scanned before it is parsed, so nothing deeper than MAX_DEPTH is ever built.
 */

/** The deepest nesting accepted, counting the body's outermost bracket as 1. Real Logpush records nest a few levels. */
export const MAX_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;

export type Scan = { ok: true; end: number } | { ok: false; reason: "unterminated" | "too_deep"; at: number };

/**
 * The end (exclusive) of the string literal whose opening quote is at `start`, or -1. Jumps from
 * quote to quote with indexOf, so long strings cost little.
 */
export function endOfString(text: string, start: number): number {
  let j = start + 1;
  for (;;) {
    j = text.indexOf('"', j);
    if (j === -1) return -1;
    let backslashes = 0;
    for (let k = j - 1; text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return j + 1;
    j++;
  }
}

/**
 * Where the object or array opening at `start` closes, and that it nests at most `depth0 +
 * MAX_DEPTH` levels. Brackets inside strings do not count. Mismatched brackets (`{]`) are left
 * for JSON.parse to report.
 */
export function scanJsonValue(text: string, start: number, depth0 = 0): Scan {
  let depth = depth0;
  const n = text.length;
  for (let i = start; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = endOfString(text, i);
      if (end === -1) return { ok: false, reason: "unterminated", at: start };
      i = end - 1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > MAX_DEPTH) return { ok: false, reason: "too_deep", at: i };
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      if (--depth === depth0) return { ok: true, end: i + 1 };
    }
  }
  return { ok: false, reason: "unterminated", at: start };
}

const INTEGER_SOURCE = /^-?\d+$/;
/** Every integer above Number.MAX_SAFE_INTEGER (16 digits) has at least 16 digits in a row. */
const LONG_DIGIT_RUN = /\d{16}/;

function keepUnsafeIntegers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    const source = context?.source;
    if (source !== undefined && INTEGER_SOURCE.test(source)) return BigInt(source);
  }
  return value;
}

/**
 * `JSON.parse`, keeping unsafe integers as bigint. The reviver costs a call per value (and
 * recurses: callers scan the depth first), so it is only used when the text has a run of 16+
 * digits, the only way to write an unsafe integer without an exponent; `unix`/`rfc3339`
 * batches parse at plain `JSON.parse` speed. Throws SyntaxError.
 */
export function parseJson(text: string): unknown {
  if (!LONG_DIGIT_RUN.test(text)) return JSON.parse(text);
  return parseFlatExact(text) ?? JSON.parse(text, keepUnsafeIntegers);
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
/** Characters that make a digit run part of a fraction or exponent rather than an integer. */
const isNumberPart = (c: number) => c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b;

/**
 * A flat object (no object or array inside, the common Logpush record) with its unsafe integers
 * exact, at plain `JSON.parse` speed: the reviver made a 64 MiB Logpush batch of unixnano
 * timestamps parse about 6× slower (issue 20). One pass over the text (strings jumped with
 * indexOf) finds each integer literal of 16+ digits outside strings and the key before it;
 * after the plain parse, a key whose value is that literal, rounded, gets the exact bigint.
 * undefined when the text is not a flat object, or gives a key twice (the caller then uses the
 * reviver); throws JSON.parse's SyntaxError.
 */
function parseFlatExact(text: string): Record<string, unknown> | undefined {
  const n = text.length;
  let i = 0;
  while (i < n && text.charCodeAt(i) !== OPEN_BRACE) {
    if (text.charCodeAt(i) > 0x20) return undefined;
    i++;
  }
  const exact: { key: string; digits: string }[] = [];
  let lastString = -1;
  let lastStringEnd = -1;
  let keys = 0;
  for (i++; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = endOfString(text, i);
      if (end === -1) return undefined;
      lastString = i;
      lastStringEnd = end;
      let after = end;
      while (after < n && text.charCodeAt(after) <= 0x20) after++;
      if (text.charCodeAt(after) === COLON) keys++;
      i = end - 1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      return undefined;
    } else if (isDigit(c)) {
      let end = i + 1;
      while (end < n && isDigit(text.charCodeAt(end))) end++;
      const before = text.charCodeAt(i - 1);
      if (end - i >= 16 && !isNumberPart(before) && !(end < n && isNumberPart(text.charCodeAt(end))) && lastString !== -1) {
        try {
          exact.push({ key: JSON.parse(text.slice(lastString, lastStringEnd)) as string, digits: text.slice(before === 0x2d ? i - 1 : i, end) });
        } catch {
          return undefined;
        }
      }
      i = end - 1;
    }
  }
  const value = JSON.parse(text) as unknown;
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  // A key given twice: which literal's value JSON.parse kept is the reviver's to say.
  if (exact.length > 0 && Object.keys(record).length !== keys) return undefined;
  for (const { key, digits } of exact) {
    const parsed = record[key];
    if (typeof parsed === "number" && !Number.isSafeInteger(parsed) && parsed === Number(digits)) record[key] = BigInt(digits);
  }
  return record;
}

/**
 * JSON text with bigints written as plain digits (JSON.stringify refuses bigints). Values come
 * from scanned records, so the recursion is at most MAX_DEPTH deep; a deeper value handed in by
 * other code is cut off as the string "[too deep]" rather than overflowing the stack.
 */
export function toJson(value: unknown, depth = 0): string {
  if (typeof value === "bigint") return value.toString();
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (depth >= MAX_DEPTH) return '"[too deep]"';
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined || typeof item === "function" ? "null" : toJson(item, depth + 1))).join(",")}]`;
  const members: string[] = [];
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined || typeof item === "function") continue;
    members.push(`${JSON.stringify(key)}:${toJson(item, depth + 1)}`);
  }
  return `{${members.join(",")}}`;
}

/** The 1-based line of `index` in `text`. */
export function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < index; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));
