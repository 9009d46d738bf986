/**
 * Cloudflare Logpush deliveries, parsed and mapped to an OTLP/JSON ExportLogsServiceRequest.
 * Pure: no I/O. Logpush's `unixnano` timestamps exceed 2^53, so integers that a JS number
 * cannot hold are kept as bigint from the source text and never pass through a number.
 */
export type LogpushRecord = Record<string, unknown>;

type AnyValue = { stringValue: string } | { boolValue: boolean } | { intValue: string } | { doubleValue: number };
type KeyValue = { key: string; value: AnyValue };
export type OtlpLogRecord = {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: number;
  severityText?: string;
  body: { stringValue: string };
  attributes: KeyValue[];
};
export type OtlpLogsRequest = {
  resourceLogs: { resource: { attributes: KeyValue[] }; scopeLogs: { scope: { name: string }; logRecords: OtlpLogRecord[] }[] }[];
};

function preciseReviver(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context?.source !== undefined && /^-?\d+$/.test(context.source)) return BigInt(context.source);
  return value;
}

const parsePrecise = (text: string): unknown => JSON.parse(text, preciseReviver as (key: string, value: unknown) => unknown);
const isRecord = (value: unknown): value is LogpushRecord => typeof value === "object" && value !== null && !Array.isArray(value);

/** NDJSON (blank lines and CRLF tolerated), a JSON array of objects, or one object. */
export function parseLogpushBody(text: string): { ok: true; records: LogpushRecord[] } | { ok: false; message: string } {
  const trimmed = text.trim();
  if (trimmed === "") return { ok: false, message: "the body is empty" };
  if (trimmed.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = parsePrecise(trimmed);
    } catch (error) {
      return { ok: false, message: `the body is not a valid JSON array: ${(error as Error).message}` };
    }
    if (!Array.isArray(parsed) || !parsed.every(isRecord)) return { ok: false, message: "a JSON array body must hold only objects" };
    return { ok: true, records: parsed };
  }
  // One object, possibly pretty-printed. For NDJSON this fails at the second line, cheaply.
  try {
    const whole = parsePrecise(trimmed);
    return isRecord(whole) ? { ok: true, records: [whole] } : { ok: false, message: "the body must be NDJSON objects, a JSON array of objects or one object" };
  } catch {
    // fall through to NDJSON
  }
  const records: LogpushRecord[] = [];
  const lines = trimmed.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    let value: unknown;
    try {
      value = parsePrecise(line);
    } catch (error) {
      return { ok: false, message: `line ${i + 1} is not valid JSON: ${(error as Error).message}` };
    }
    if (!isRecord(value)) return { ok: false, message: `line ${i + 1} is not a JSON object` };
    records.push(value);
  }
  return { ok: true, records };
}

/** Logpush's job-creation check: one record whose only key is `content` (`"tests"`, some see `"test"`). */
export function isValidationRequest(records: LogpushRecord[]): boolean {
  if (records.length !== 1) return false;
  const keys = Object.keys(records[0]!);
  return keys.length === 1 && keys[0] === "content" && typeof records[0]!.content === "string";
}

const NS_PER = { s: 1_000_000_000n, ms: 1_000_000n, us: 1_000n, ns: 1n };

/**
 * Unix time in any unit Logpush uses, to nanoseconds. Integers are read by magnitude:
 * below 1e11 seconds (until year 5138), below 1e14 milliseconds, below 1e17 microseconds,
 * else nanoseconds. RFC 3339 keeps every fractional digit up to nanoseconds.
 */
export function parseTimestamp(value: unknown): bigint | null {
  if (typeof value === "bigint") return value < 0n ? null : scaleInteger(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) return null;
    if (Number.isInteger(value)) return scaleInteger(BigInt(value));
    return value < 1e11 ? BigInt(Math.round(value * 1e9)) : scaleInteger(BigInt(Math.round(value)));
  }
  if (typeof value !== "string") return null;
  const text = value.trim();
  const numeric = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (numeric) {
    const whole = BigInt(numeric[1]!);
    if (numeric[2] === undefined) return scaleInteger(whole);
    // A fractional value is seconds (Logpush's `unix` format can carry fractions).
    return whole * NS_PER.s + BigInt(numeric[2].slice(0, 9).padEnd(9, "0"));
  }
  const rfc = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})$/.exec(text);
  if (!rfc) return null;
  const seconds = Date.parse(`${rfc[1]}T${rfc[2]}${rfc[4]!.toUpperCase()}`);
  if (Number.isNaN(seconds) || seconds < 0) return null;
  return BigInt(seconds) * NS_PER.ms + BigInt((rfc[3] ?? "").slice(0, 9).padEnd(9, "0"));
}

function scaleInteger(n: bigint): bigint {
  if (n < 100_000_000_000n) return n * NS_PER.s;
  if (n < 100_000_000_000_000n) return n * NS_PER.ms;
  if (n < 100_000_000_000_000_000n) return n * NS_PER.us;
  return n;
}

const TIME_FIELDS: Record<string, string[]> = {
  http_requests: ["EdgeStartTimestamp", "EdgeEndTimestamp"],
  workers_trace_events: ["EventTimestampMs", "EventTimestamp"],
};
const GENERIC_TIME_FIELDS = ["Datetime", "Timestamp", "EventTimestampMs", "EdgeStartTimestamp", "EdgeEndTimestamp", "When", "Date"];

const SEVERITY = { INFO: 9, WARN: 13, ERROR: 17 } as const;
type Severity = { number: number; text?: string };

function httpSeverity(status: unknown): Severity {
  const code = typeof status === "bigint" ? Number(status) : Number(status);
  if (!Number.isFinite(code)) return { number: 0 };
  if (code >= 500) return { number: SEVERITY.ERROR, text: "ERROR" };
  if (code >= 400) return { number: SEVERITY.WARN, text: "WARN" };
  return { number: SEVERITY.INFO, text: "INFO" };
}

function workerSeverity(outcome: unknown): Severity {
  if (outcome === "ok") return { number: SEVERITY.INFO, text: "INFO" };
  if (outcome === "canceled" || outcome === "unknown" || outcome === "responseStreamDisconnected" || typeof outcome !== "string") return { number: SEVERITY.WARN, text: "WARN" };
  return { number: SEVERITY.ERROR, text: "ERROR" };
}

const str = (value: unknown): string => (value === undefined || value === null ? "" : typeof value === "object" ? JSON.stringify(value, bigintJson) : String(value));

function field(record: LogpushRecord, ...path: string[]): unknown {
  let value: unknown = record;
  for (const key of path) value = isRecord(value) ? (value[key] ?? value[key.toLowerCase()]) : undefined;
  return value;
}

function bodyOf(dataset: string, r: LogpushRecord, timeField: string | null): string {
  if (dataset === "http_requests") return `${str(r.ClientRequestMethod)} ${str(r.ClientRequestHost)}${str(r.ClientRequestURI)} -> ${str(r.EdgeResponseStatus)}`;
  if (dataset === "workers_trace_events") {
    const method = field(r, "Event", "Request", "Method");
    const url = field(r, "Event", "Request", "URL");
    const trigger = method !== undefined || url !== undefined ? `${str(method)} ${str(url)}`.trim() : str(field(r, "Event", "Cron")) || str(r.EventType) || "event";
    return `${str(r.ScriptName) || "worker"} ${trigger} -> ${str(r.Outcome) || "unknown"}`;
  }
  const summary = Object.entries(r)
    .filter(([k, v]) => k !== timeField && (typeof v === "string" || typeof v === "number" || typeof v === "bigint"))
    .slice(0, 4)
    .map(([k, v]) => `${k}=${str(v)}`)
    .join(" ");
  return summary === "" ? `${dataset} event` : `${dataset}: ${summary}`;
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

export function anyValue(value: unknown): AnyValue {
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (typeof value === "bigint") return { intValue: value.toString() };
  if (typeof value === "number") return Number.isSafeInteger(value) ? { intValue: String(value) } : { doubleValue: value };
  return { stringValue: JSON.stringify(value, bigintJson) };
}

const kv = (key: string, value: unknown): KeyValue => ({ key, value: anyValue(value) });

/** One OTLP log record per Logpush record, under a resource naming Cloudflare, the dataset and the org. */
export function toOtlpLogs(records: LogpushRecord[], context: { dataset: string; orgId: string; observedAtNs: bigint }): OtlpLogsRequest {
  const timeFields = TIME_FIELDS[context.dataset] ?? GENERIC_TIME_FIELDS;
  const observed = context.observedAtNs.toString();
  const logRecords = records.map((record): OtlpLogRecord => {
    let time: bigint | null = null;
    let timeField: string | null = null;
    for (const name of timeFields) {
      time = parseTimestamp(record[name]);
      if (time !== null) {
        timeField = name;
        break;
      }
    }
    const severity =
      context.dataset === "http_requests" ? httpSeverity(record.EdgeResponseStatus) : context.dataset === "workers_trace_events" ? workerSeverity(record.Outcome) : { number: 0 };
    const attributes = Object.entries(record)
      .filter(([key, value]) => value !== null && value !== undefined && key !== timeField)
      .map(([key, value]) => kv(key, value));
    return {
      timeUnixNano: (time ?? context.observedAtNs).toString(),
      observedTimeUnixNano: observed,
      severityNumber: severity.number,
      ...(severity.text ? { severityText: severity.text } : {}),
      body: { stringValue: bodyOf(context.dataset, record, timeField) },
      attributes,
    };
  });
  return {
    resourceLogs: [
      {
        resource: { attributes: [kv("cloud.provider", "cloudflare"), kv("cloudflare.dataset", context.dataset), kv("tollgate.org_id", context.orgId)] },
        scopeLogs: [{ scope: { name: "tollgate.logpush" }, logRecords }],
      },
    ],
  };
}
