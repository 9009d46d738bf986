/**
 * Logpush timestamps to unix nanoseconds, exactly: RFC 3339 with any fraction, unix seconds,
 * milliseconds, microseconds or nanoseconds (by magnitude, or in a given unit). Computed in
 * bigint: Logpush's default `unixnano` values (~1.7e18) exceed 2^53.
 */

export type TimeUnit = "s" | "ms" | "us" | "ns";
const NS_PER: Record<TimeUnit, bigint> = { s: 1_000_000_000n, ms: 1_000_000n, us: 1_000n, ns: 1n };
/** Fraction digits that still count at nanosecond precision, per unit. */
const FRACTION_DIGITS: Record<TimeUnit, number> = { s: 9, ms: 6, us: 3, ns: 0 };
/** The largest int64: beyond it (year 2262) backends storing signed nanoseconds overflow. */
const MAX_NS = 9_223_372_036_854_775_807n;

/**
 * The unit of a unix time given as a bare number, by magnitude of its integer part:
 *   < 1e11 → seconds      (1e11 s  is year 5138)
 *   < 1e14 → milliseconds (1e11 ms is 1973-03-03, 1e14 ms is year 5138)
 *   < 1e17 → microseconds (1e14 µs is 1973-03-03, 1e17 µs is year 5138)
 *   else   → nanoseconds  (1e17 ns is 1973-03-03)
 * So any instant between March 1973 and year 5138 is read right whatever its unit; earlier
 * instants in ms/µs/ns would be misread (Logpush never sends those).
 */
export function unitByMagnitude(integerPart: bigint): TimeUnit {
  if (integerPart < 100_000_000_000n) return "s";
  if (integerPart < 100_000_000_000_000n) return "ms";
  if (integerPart < 100_000_000_000_000_000n) return "us";
  return "ns";
}

const DECIMAL = /^(\d+)(?:\.(\d+))?$/;

/** Digits (and optional fraction digits) in `unit` (or by magnitude) to nanoseconds; fraction digits below 1 ns are truncated. */
function fromDecimal(intDigits: string, fraction: string, unit: TimeUnit | undefined): bigint | null {
  const whole = BigInt(intDigits);
  const u = unit ?? unitByMagnitude(whole);
  const digits = FRACTION_DIGITS[u];
  const sub = digits === 0 ? 0n : BigInt(fraction.slice(0, digits).padEnd(digits, "0"));
  return bounded(whole * NS_PER[u] + sub);
}

const bounded = (ns: bigint): bigint | null => (ns < 0n || ns > MAX_NS ? null : ns);

/**
 * A timestamp to unix nanoseconds, or null (absent, negative, non-finite, unparseable, or
 * beyond int64 nanoseconds).
 * - RFC 3339 strings (`Z` or `±hh:mm` offsets, fraction of any length): the fraction's digits
 *   are kept exactly to nanoseconds (extra digits truncated), never through a float.
 * - Numbers, bigints and numeric strings (optionally with a fraction) are unix time in `unit`
 *   when given (e.g. `"ms"` for `EventTimestampMs`), else in the unit picked by
 *   {@link unitByMagnitude}.
 */
export function parseTimestamp(value: unknown, unit?: TimeUnit): bigint | null {
  if (typeof value === "bigint") {
    if (value < 0n) return null;
    return bounded(value * NS_PER[unit ?? unitByMagnitude(value)]);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) return null;
    if (Number.isSafeInteger(value)) return fromDecimal(String(value), "", unit);
    if (Number.isInteger(value)) return bounded(BigInt(value) * NS_PER[unit ?? unitByMagnitude(BigInt(value))]); // already imprecise as a number
    // A fraction: its shortest decimal form (e.g. 1700000000.123 → "1700000000.123") keeps the
    // digits that were written; tiny values print with an exponent and are seconds anyway.
    const decimal = DECIMAL.exec(String(value));
    if (decimal) return fromDecimal(decimal[1]!, decimal[2] ?? "", unit);
    return bounded(BigInt(Math.round(value * 1e9)));
  }
  if (typeof value !== "string") return null;
  const text = value.trim();
  const decimal = DECIMAL.exec(text);
  if (decimal) return fromDecimal(decimal[1]!, decimal[2] ?? "", unit);
  return parseRfc3339(text);
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))$/;

/** RFC 3339 to unix nanoseconds, with calendar checks; a leap second (:60) counts as the next minute's :00. */
function parseRfc3339(text: string): bigint | null {
  const m = RFC3339.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 60) return null;
  let offsetSeconds = 0;
  if (m[8] === undefined) {
    const offsetHours = Number(m[10]);
    const offsetMinutes = Number(m[11]);
    if (offsetHours > 23 || offsetMinutes > 59) return null;
    offsetSeconds = (m[9] === "-" ? -1 : 1) * (offsetHours * 3600 + offsetMinutes * 60);
  }
  // Local wall time minus the offset is UTC. All these fit a double exactly (years ≤ 9999).
  const seconds = daysFromCivil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds;
  const fraction = (m[7] ?? "").slice(0, 9).padEnd(9, "0");
  return bounded(BigInt(seconds) * NS_PER.s + BigInt(fraction));
}

const isLeapYear = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const daysInMonth = (y: number, m: number): number => (m === 2 ? (isLeapYear(y) ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31);

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}
