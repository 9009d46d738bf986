/**
 * Logpush records mapped to an OTLP/JSON `ExportLogsServiceRequest` for the upstream's `/v1/logs`:
 * the event time (exact to the nanosecond), a severity, a one-line body and every field as an
 * attribute. Pure: no I/O, no mutable module state.
 */
import { toJson } from "./json-text.ts";
import { isRecord, isScalar, type LogpushRecord } from "./records.ts";
import { parseTimestamp, type TimeUnit } from "./timestamps.ts";

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

export type TimeField = { name: string; unit?: TimeUnit };

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

/**
 * Names a record_template commonly gives the time field, tried after the dataset's own fields
 * when `time_field=` is not set.
 */
const RENAMED_TIME_FIELDS: TimeField[] = [{ name: "timestamp" }, { name: "@timestamp" }, { name: "time" }];

/** The configured time field first (a name ending in `Ms` is milliseconds, like Cloudflare's), then the dataset's, then common renamed ones. */
export function timeFields(dataset: string, configured: string | null): TimeField[] {
  const known = [...(TIME_FIELDS[dataset] ?? GENERIC_TIME_FIELDS), ...RENAMED_TIME_FIELDS];
  return configured === null ? known : [{ name: configured, ...(configured.endsWith("Ms") ? { unit: "ms" as const } : {}) }, ...known];
}

/** The record's event time and the field it came from. A zero time is a placeholder ("not set"), not 1970. */
export function eventTime(record: LogpushRecord, fields: readonly TimeField[]): { ns: bigint; field: string } | null {
  for (const { name, unit } of fields) {
    const ns = parseTimestamp(record[name], unit);
    if (ns !== null && ns > 0n) return { ns, field: name };
  }
  return null;
}

// OTLP SeverityNumber values.
const INFO = { severityNumber: 9, severityText: "INFO" } as const;
/** Redirects: INFO2, as the OpenTelemetry Collector's Cloudflare receiver maps 3xx. */
const INFO2 = { severityNumber: 10, severityText: "INFO2" } as const;
const WARN = { severityNumber: 13, severityText: "WARN" } as const;
const ERROR = { severityNumber: 17, severityText: "ERROR" } as const;
export type Severity = { severityNumber: number; severityText?: string };
const UNSPECIFIED: Severity = { severityNumber: 0 };

function httpStatusSeverity(status: unknown): Severity {
  const code = typeof status === "number" ? status : typeof status === "bigint" ? Number(status) : typeof status === "string" && /^\d+$/.test(status.trim()) ? Number(status) : NaN;
  if (!Number.isFinite(code)) return UNSPECIFIED;
  if (code >= 500) return ERROR;
  if (code >= 400) return WARN;
  if (code >= 300) return INFO2;
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

export function severityOf(dataset: string, record: LogpushRecord): Severity {
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

const joinPresent = (a: string, b: string): string => (a === "" ? b : b === "" ? a : `${a} ${b}`);
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

export function bodyOf(dataset: string, record: LogpushRecord, timeField: string | null): string {
  const body = dataset === "http_requests" ? httpRequestBody(record) : dataset === "workers_trace_events" ? workersTraceBody(record) : "";
  return body !== "" ? body : genericBody(dataset, record, timeField);
}

/** The top-level fields severityOf and the dataset's own body read (beside the time fields and SUMMARY_FIELDS). */
const DATASET_FIELDS: Record<string, string[]> = {
  http_requests: ["EdgeResponseStatus", "ClientRequestMethod", "ClientRequestHost", "ClientRequestURI"],
  workers_trace_events: ["Outcome", "ScriptName", "EventType"],
};

/**
 * Every field eventTime, severityOf and bodyOf read of a record with no object inside
 * (flat-records.ts hands them only these): the time fields, the severity and body fields, and the
 * first `leading` fields holding a non-empty scalar, which a generic body may summarise
 * (SUMMARY_LIMIT of them, one more in case one is the time field it leaves out). A null field
 * reads as an absent one everywhere in them.
 */
export function headFields(dataset: string, fields: readonly TimeField[]): { names: Set<string>; leading: number } {
  return { names: new Set([...fields.map((field) => field.name), ...(DATASET_FIELDS[dataset] ?? []), ...SUMMARY_FIELDS]), leading: SUMMARY_LIMIT + 1 };
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

export type LogpushContext = {
  dataset: string;
  orgId: string;
  observedAtNs: bigint;
  /** The time field named by destination_conf's `time_field=`, tried before the dataset's own. */
  timeField?: string | null;
};

/**
 * One OTLP log record per Logpush record, under one resource (`cloud.provider`,
 * `cloudflare.dataset`, `tollgate.org_id`) and one scope (`tollgate.logpush`).
 *
 * - `timeUnixNano`: the configured `timeField`, else the dataset's time field (see TIME_FIELDS),
 *   else a commonly renamed one (RENAMED_TIME_FIELDS), else `observedAtNs`.
 * - severity: http_requests by `EdgeResponseStatus`, workers_trace_events by `Outcome`,
 *   other datasets unspecified (0, no text).
 * - body: a one-line summary (see httpRequestBody / workersTraceBody / genericBody).
 * - attributes: every non-null field under its Logpush name, typed (see toAnyValue), the time
 *   field included (queries and dashboards built on the Collector's or Maple's output filter on
 *   it). Fields shown in the body stay attributes too, so they remain queryable.
 */
export function toOtlpLogs(records: readonly LogpushRecord[], context: LogpushContext): ExportLogsServiceRequestJson {
  const observed = context.observedAtNs.toString();
  const fields = timeFields(context.dataset, context.timeField ?? null);
  const logRecords = records.map((record): LogRecordJson => {
    const time = eventTime(record, fields);
    const attributes: KeyValueJson[] = [];
    for (const key in record) {
      if (!Object.hasOwn(record, key)) continue;
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
