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
  return LONG_DIGIT_RUN.test(text) ? JSON.parse(text, keepUnsafeIntegers) : JSON.parse(text);
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
