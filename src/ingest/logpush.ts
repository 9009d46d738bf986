/**
 * Cloudflare Logpush deliveries (already decompressed) parsed and mapped to an OTLP/JSON
 * `ExportLogsServiceRequest` for the upstream's `/v1/logs`.
 *
 * Pure: no I/O, no mutable module state; Web-standard JavaScript only (runs in workerd).
 *
 * Precision: Logpush's default `unixnano` timestamps (~1.7e18) exceed 2^53. Integers a JS
 * number cannot hold exactly are read from their source text (`JSON.parse` reviver
 * `context.source`) and kept as `bigint`; timestamps are computed in `bigint` from then on.
 */

// ---------------------------------------------------------------------------------------
// OTLP/JSON output shape (our own output: plain types). Field names are lowerCamelCase,
// 64-bit integers are decimal strings, enums (severityNumber) are integers.

export type AnyValueJson = { stringValue: string } | { intValue: string } | { doubleValue: number } | { boolValue: boolean };
export type KeyValueJson = { key: string; value: AnyValueJson };
export type LogRecordJson = {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  /** 0 = SEVERITY_NUMBER_UNSPECIFIED. */
  severityNumber: number;
  severityText?: string;
  body: { stringValue: string };
  attributes: KeyValueJson[];
};
export type ExportLogsServiceRequestJson = {
  resourceLogs: {
    resource: { attributes: KeyValueJson[] };
    scopeLogs: { scope: { name: string }; logRecords: LogRecordJson[] }[];
  }[];
};

export type LogpushRecord = Record<string, unknown>;
export type ParseResult = { ok: true; records: LogpushRecord[] } | { ok: false; message: string };

// ---------------------------------------------------------------------------------------
// Parsing

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
 * `JSON.parse`, keeping unsafe integers as bigint. The reviver costs a call per value, so
 * it is only used when the text has a run of 16+ digits (the only way to write an unsafe
 * integer without an exponent); `unix`/`rfc3339` batches parse at plain `JSON.parse` speed.
 */
function parseJson(text: string): unknown {
  return LONG_DIGIT_RUN.test(text) ? JSON.parse(text, keepUnsafeIntegers) : JSON.parse(text);
}

const isRecord = (value: unknown): value is LogpushRecord => typeof value === "object" && value !== null && !Array.isArray(value);
const kindOf = (value: unknown): string => (value === null ? "null" : Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : `a ${typeof value}`);
const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * A Logpush body: NDJSON (one object a line; blank lines and CRLF tolerated), a JSON array of
 * objects, or a single object (possibly pretty-printed). Linear in the body size.
 */
export function parseLogpushBody(text: string): ParseResult {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const start = body.search(/\S/);
  if (start === -1) return { ok: false, message: "the body is empty" };

  if (body[start] === "[") {
    let parsed: unknown;
    try {
      parsed = parseJson(body);
    } catch (error) {
      return { ok: false, message: `the body starts with "[" but is not a valid JSON array: ${errorText(error)}` };
    }
    if (!Array.isArray(parsed)) return { ok: false, message: "the body is not a JSON array of objects" };
    for (let i = 0; i < parsed.length; i++) {
      if (!isRecord(parsed[i])) return { ok: false, message: `element ${i} of the JSON array is ${kindOf(parsed[i])}, not a JSON object` };
    }
    return { ok: true, records: parsed as LogpushRecord[] };
  }

  // A single object, one line or pretty-printed. On NDJSON this throws right after the first
  // record ("unexpected non-whitespace"), so the cost is one line, not the whole body.
  let whole: unknown;
  let wholeError: unknown = null;
  try {
    whole = parseJson(body);
  } catch (error) {
    wholeError = error;
  }
  if (wholeError === null) {
    return isRecord(whole) ? { ok: true, records: [whole] } : { ok: false, message: `line ${lineOf(body, start)} is ${kindOf(whole)}, not a JSON object` };
  }

  const lines = body.split("\n");
  const records: LogpushRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim(); // also drops the "\r" of CRLF
    if (line === "") continue;
    let value: unknown;
    try {
      value = parseJson(line);
    } catch (error) {
      // Nothing parsed yet and the whole body was no single object either: say both.
      if (records.length === 0) {
        return { ok: false, message: `the body is neither NDJSON (line ${i + 1} is not valid JSON) nor one JSON object: ${errorText(wholeError)}` };
      }
      return { ok: false, message: `line ${i + 1} is not valid JSON: ${errorText(error)}` };
    }
    if (!isRecord(value)) return { ok: false, message: `line ${i + 1} is ${kindOf(value)}, not a JSON object` };
    records.push(value);
  }
  return { ok: true, records };
}

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < index; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

/**
 * Cloudflare's job-creation check: exactly one record whose only key is `content`, a string
 * (documented value `"tests"`; some receivers report `"test"`).
 */
export function isValidationRequest(records: readonly LogpushRecord[]): boolean {
  if (records.length !== 1) return false;
  const record = records[0]!;
  const keys = Object.keys(record);
  return keys.length === 1 && keys[0] === "content" && typeof record.content === "string";
}

// ---------------------------------------------------------------------------------------
// Timestamps

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

// ---------------------------------------------------------------------------------------
// Mapping to OTLP

type TimeField = { name: string; unit?: TimeUnit };

/**
 * Where each dataset keeps its event time, in order of preference. Fields ending in `Ms` are
 * always milliseconds; the others follow the job's `timestamp_format` (unixnano, unix,
 * rfc3339) and are read by magnitude.
 */
const TIME_FIELDS: Record<string, TimeField[]> = {
  http_requests: [{ name: "EdgeStartTimestamp" }, { name: "EdgeEndTimestamp" }],
  workers_trace_events: [{ name: "EventTimestampMs", unit: "ms" }, { name: "EventTimestamp" }],
};
/**
 * Any other dataset: the first present of these. `Datetime`: firewall_events, gateway_dns/http/
 * network, network_analytics_logs, dlp_forensic_copies; `Timestamp`: dns_logs, dns_firewall_logs,
 * spectrum_events, nel_reports, page_shield_events, magic_ids_detections, sinkhole_http_logs,
 * device_posture_results, email_security_alerts; `When`: audit_logs; `ActionTimestamp`:
 * audit_logs_v2; `CreatedAt`: access_requests; `DetectedTimestamp`: casb_findings;
 * `SessionStartTime`/`SessionEndTime`: zero_trust_network_sessions; then the http_requests and
 * workers_trace_events fields for jobs posted under an unexpected dataset name.
 */
const GENERIC_TIME_FIELDS: TimeField[] = [
  { name: "Datetime" },
  { name: "Timestamp" },
  { name: "When" },
  { name: "ActionTimestamp" },
  { name: "CreatedAt" },
  { name: "DetectedTimestamp" },
  { name: "SessionStartTime" },
  { name: "EdgeStartTimestamp" },
  { name: "EventTimestampMs", unit: "ms" },
  { name: "EdgeEndTimestamp" },
  { name: "SessionEndTime" },
];

/** The record's event time and the field it came from. A zero time is a placeholder ("not set"), not 1970. */
function eventTime(record: LogpushRecord, dataset: string): { ns: bigint; field: string } | null {
  for (const { name, unit } of TIME_FIELDS[dataset] ?? GENERIC_TIME_FIELDS) {
    const ns = parseTimestamp(record[name], unit);
    if (ns !== null && ns > 0n) return { ns, field: name };
  }
  return null;
}

// OTLP SeverityNumber values.
const INFO = { severityNumber: 9, severityText: "INFO" } as const;
const WARN = { severityNumber: 13, severityText: "WARN" } as const;
const ERROR = { severityNumber: 17, severityText: "ERROR" } as const;
type Severity = { severityNumber: number; severityText?: string };
const UNSPECIFIED: Severity = { severityNumber: 0 };

function httpStatusSeverity(status: unknown): Severity {
  const code = typeof status === "number" ? status : typeof status === "bigint" ? Number(status) : typeof status === "string" && /^\d+$/.test(status.trim()) ? Number(status) : NaN;
  if (!Number.isFinite(code)) return UNSPECIFIED;
  if (code >= 500) return ERROR;
  if (code >= 400) return WARN;
  return INFO;
}

/** Worker outcomes that mean the invocation failed on the Worker's or the platform's side. */
const FAILED_OUTCOMES = new Set(["exception", "exceededCpu", "exceededMemory", "scriptThrewException", "scriptNotFound", "killSwitch", "daemonDown", "loadShed"]);

/** `ok` → INFO; failures → ERROR; `canceled`, `responseStreamDisconnected` (the client went away), `unknown`, anything else → WARN. */
function outcomeSeverity(outcome: unknown): Severity {
  if (outcome === "ok") return INFO;
  if (typeof outcome === "string" && FAILED_OUTCOMES.has(outcome)) return ERROR;
  return WARN;
}

function severityOf(dataset: string, record: LogpushRecord): Severity {
  if (dataset === "http_requests") return httpStatusSeverity(record.EdgeResponseStatus);
  if (dataset === "workers_trace_events") return outcomeSeverity(record.Outcome);
  return UNSPECIFIED;
}

/** A field as text for a body: "" when absent; objects as JSON. */
function text(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value);
  return toJson(value);
}

function path(record: LogpushRecord, ...keys: string[]): unknown {
  let value: unknown = record;
  for (const key of keys) value = isRecord(value) ? value[key] : undefined;
  return value;
}

const joinPresent = (...parts: string[]): string => parts.filter((part) => part !== "").join(" ");
/** `"{head} -> {result}"`, dropping what is missing; the dataset name stands in for a missing head. "" when both are missing. */
function arrow(dataset: string, head: string, result: string): string {
  if (result === "") return head;
  return `${head === "" ? dataset : head} -> ${result}`;
}

function httpRequestBody(r: LogpushRecord): string {
  return arrow("http_requests", joinPresent(text(r.ClientRequestMethod), `${text(r.ClientRequestHost)}${text(r.ClientRequestURI)}`), text(r.EdgeResponseStatus));
}

function workersTraceBody(r: LogpushRecord): string {
  const method = text(path(r, "Event", "Request", "Method"));
  const url = text(path(r, "Event", "Request", "URL"));
  const cron = text(path(r, "Event", "Cron"));
  const queue = text(path(r, "Event", "Queue"));
  const trigger = method !== "" || url !== "" ? joinPresent(method, url) : cron !== "" ? `cron ${cron}` : queue !== "" ? `queue ${queue}` : text(r.EventType);
  return arrow("workers_trace_events", joinPresent(text(r.ScriptName), trigger), text(r.Outcome));
}

/** Fields that make a generic record recognisable, in order; the summary shows the first few present. */
const SUMMARY_FIELDS = [
  "Action", "Source", "ActionType", "ResourceType", "EventType", "QueryName", "QueryType", "ResponseCode",
  "ClientIP", "SrcIP", "ClientRequestMethod", "ClientRequestHost", "ClientRequestPath", "ClientRequestURI",
  "ActorEmail", "RuleID", "RayID",
];
const SUMMARY_LIMIT = 6;
const SUMMARY_VALUE_MAX = 120;

function isScalar(value: unknown): value is string | number | bigint | boolean {
  return typeof value === "string" || typeof value === "number" || typeof value === "bigint" || typeof value === "boolean";
}

/** `"{dataset}: Key=value Key=value …"` from known key fields, else the first scalar fields; never empty. */
function genericBody(dataset: string, r: LogpushRecord, timeField: string | null): string {
  let keys = SUMMARY_FIELDS.filter((key) => isScalar(r[key]) && r[key] !== "").slice(0, SUMMARY_LIMIT);
  if (keys.length === 0) keys = Object.keys(r).filter((key) => key !== timeField && isScalar(r[key]) && r[key] !== "").slice(0, SUMMARY_LIMIT);
  const name = dataset === "" ? "logpush" : dataset;
  if (keys.length === 0) return `${name} record`;
  const pairs = keys.map((key) => {
    const value = text(r[key]);
    return `${key}=${value.length > SUMMARY_VALUE_MAX ? `${value.slice(0, SUMMARY_VALUE_MAX)}…` : value}`;
  });
  return `${name}: ${pairs.join(" ")}`;
}

function bodyOf(dataset: string, record: LogpushRecord, timeField: string | null): string {
  const body = dataset === "http_requests" ? httpRequestBody(record) : dataset === "workers_trace_events" ? workersTraceBody(record) : "";
  return body !== "" ? body : genericBody(dataset, record, timeField);
}

/** JSON text with bigints written as plain digits (JSON.stringify refuses bigints). */
export function toJson(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined || typeof item === "function" ? "null" : toJson(item))).join(",")}]`;
  const members: string[] = [];
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined || typeof item === "function") continue;
    members.push(`${JSON.stringify(key)}:${toJson(item)}`);
  }
  return `{${members.join(",")}}`;
}

/** An OTLP AnyValue: strings, safe integers and bigints (as decimal strings), other numbers as doubles, booleans; objects and arrays as their JSON text. */
export function toAnyValue(value: unknown): AnyValueJson {
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (typeof value === "bigint") return { intValue: value.toString() };
  if (typeof value === "number") {
    if (Number.isSafeInteger(value)) return { intValue: String(value) };
    return Number.isFinite(value) ? { doubleValue: value } : { stringValue: String(value) };
  }
  return { stringValue: toJson(value) };
}

const keyValue = (key: string, value: unknown): KeyValueJson => ({ key, value: toAnyValue(value) });

export type LogpushContext = { dataset: string; orgId: string; observedAtNs: bigint };

/**
 * One OTLP log record per Logpush record, under one resource (`cloud.provider`,
 * `cloudflare.dataset`, `tollgate.org_id`) and one scope (`tollgate.logpush`).
 *
 * - `timeUnixNano`: the dataset's time field (see TIME_FIELDS), else `observedAtNs`.
 * - severity: http_requests by `EdgeResponseStatus`, workers_trace_events by `Outcome`,
 *   other datasets unspecified (0, no text).
 * - body: a one-line summary (see httpRequestBody / workersTraceBody / genericBody).
 * - attributes: every non-null field under its Logpush name, typed (see toAnyValue), except
 *   the field that supplied `timeUnixNano` (it is the record's time, not data). Fields shown in
 *   the body stay attributes too, so they remain queryable.
 */
export function toOtlpLogs(records: readonly LogpushRecord[], context: LogpushContext): ExportLogsServiceRequestJson {
  const observed = context.observedAtNs.toString();
  const logRecords = records.map((record): LogRecordJson => {
    const time = eventTime(record, context.dataset);
    const attributes: KeyValueJson[] = [];
    for (const key in record) {
      if (!Object.hasOwn(record, key) || key === time?.field) continue;
      const value = record[key];
      if (value === null || value === undefined) continue;
      attributes.push(keyValue(key, value));
    }
    return {
      timeUnixNano: time === null ? observed : time.ns.toString(),
      observedTimeUnixNano: observed,
      ...severityOf(context.dataset, record),
      body: { stringValue: bodyOf(context.dataset, record, time?.field ?? null) },
      attributes,
    };
  });
  return {
    resourceLogs: [
      {
        resource: {
          attributes: [keyValue("cloud.provider", "cloudflare"), keyValue("cloudflare.dataset", context.dataset), keyValue("tollgate.org_id", context.orgId)],
        },
        scopeLogs: [{ scope: { name: "tollgate.logpush" }, logRecords }],
      },
    ],
  };
}
