/**
 * Cloudflare Logpush deliveries (already decompressed) parsed, in every output shape a job can
 * send, and mapped to an OTLP/JSON `ExportLogsServiceRequest` for the upstream's `/v1/logs`.
 * The pieces live in ./logpush/; this module is their public face.
 *
 * Pure: no I/O, no mutable module state; Web-standard JavaScript only (runs in workerd).
 */
export { isValidationBody, isValidationRequest, parseLogpushBody } from "./logpush/body.ts";
export { MAX_DEPTH, toJson } from "./logpush/json-text.ts";
export { readLogpushOptions, type LogpushOptions } from "./logpush/options.ts";
export {
  toAnyValue,
  toOtlpLogs,
  type AnyValueJson,
  type ExportLogsServiceRequestJson,
  type KeyValueJson,
  type LogpushContext,
  type LogRecordJson,
} from "./logpush/otlp-logs.ts";
export type { LogpushRecord, ParseResult } from "./logpush/records.ts";
export { parseTimestamp, unitByMagnitude, type TimeUnit } from "./logpush/timestamps.ts";
