/**
 * Cloudflare Logpush deliveries (already decompressed) parsed, in every output shape a job can
 * send, and mapped to an OTLP/JSON `ExportLogsServiceRequest` for the upstream's `/v1/logs`.
 * The pieces live in this folder; this module is their public face.
 *
 * Pure: no I/O, no mutable module state; Web-standard JavaScript only (runs in workerd).
 */
export { isValidationBody, isValidationRequest, parseLogpushBody } from "./parse.ts";
export { MAX_DEPTH, toJson } from "./json-text.ts";
export { readLogpushOptions, type LogpushOptions } from "./options.ts";
export {
  toAnyValue,
  toOtlpLogs,
  type AnyValueJson,
  type ExportLogsServiceRequestJson,
  type KeyValueJson,
  type LogpushContext,
  type LogRecordJson,
} from "./otlp-logs.ts";
export type { LogpushRecord, ParseResult } from "./records.ts";
export { parseTimestamp, unitByMagnitude, type TimeUnit } from "./timestamps.ts";
