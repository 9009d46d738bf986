import type { ItemCounter, ItemSignal } from "./item-counter.ts";

/**
 * Counts the items of a protobuf Export*ServiceRequest as a push parser over the wire format:
 * it descends only into the fields on the signal's path, counts the length-delimited fields at
 * its end and skips every other field's bytes without reading them, across chunk boundaries.
 *
 * Field numbers, from opentelemetry-proto (checked at commit ac2c4b5, and against the
 * field comments of @opentelemetry/otlp-transformer's serializers):
 *   collector/trace/v1  ExportTraceServiceRequest.resource_spans = 1
 *   trace/v1            ResourceSpans.scope_spans = 2, ScopeSpans.spans = 2
 *   collector/logs/v1   ExportLogsServiceRequest.resource_logs = 1
 *   logs/v1             ResourceLogs.scope_logs = 2, ScopeLogs.log_records = 2
 *   collector/metrics/v1 ExportMetricsServiceRequest.resource_metrics = 1
 *   metrics/v1          ResourceMetrics.scope_metrics = 2, ScopeMetrics.metrics = 2,
 *                       Metric.{gauge = 5, sum = 7, histogram = 9, exponential_histogram = 10, summary = 11},
 *                       {Gauge,Sum,Histogram,ExponentialHistogram,Summary}.data_points = 1
 *
 * Decisions, each matching what a protobuf decoder does with the same bytes:
 * - A field on the path with a wire type other than 2 is skipped as an unknown field, as Go's
 *   protobuf (the Collector's) does; it holds no items.
 * - Every occurrence of a message field is counted (protobuf merges repeated occurrences of a
 *   singular message, so two `gauge` fields' data points add up). Two different members of the
 *   Metric `data` oneof in one Metric would keep only the last in a decoder; here both count.
 * - Malformed (finish() gives null): wire types 3, 4 (groups), 6, 7; field number 0 or above
 *   2^29-1; a varint longer than 10 bytes; a length above 2^31-1 or past the end of the enclosing
 *   message; a tag or varint crossing the enclosing message's end; a body ending mid-field or
 *   inside an unfinished message.
 */

/** Per depth on the path: a bitmask of the field numbers to descend into, and of those to count. */
type WirePath = { readonly descend: readonly number[]; readonly count: readonly number[] };

const bits = (...fields: number[]) => fields.reduce((mask, field) => mask | (1 << field), 0);

const RESOURCE_SCOPE_ITEM: WirePath = { descend: [bits(1), bits(2), 0], count: [0, 0, bits(2)] };
const PATHS: Record<ItemSignal, WirePath> = {
  traces: RESOURCE_SCOPE_ITEM,
  logs: RESOURCE_SCOPE_ITEM,
  metrics: { descend: [bits(1), bits(2), bits(2), bits(5, 7, 9, 10, 11), 0], count: [0, 0, 0, 0, bits(1)] },
};

const TAG = 0;
const LENGTH = 1;
const VARINT = 2;
const SKIP = 3;
const BROKEN = 4;

/** What the length-delimited field being read is for. */
const FIELD_SKIP = 0;
const FIELD_DESCEND = 1;
const FIELD_COUNT = 2;

const MAX_LENGTH = 0x7fff_ffff;
const MAX_TAG = 0xffff_ffff;

class ProtobufItemCounter implements ItemCounter {
  private readonly descend: Int32Array;
  private readonly countMask: Int32Array;
  /** Absolute end offset of each message we are inside, outermost first. */
  private readonly ends: Float64Array;
  private depth = 0;
  /** Absolute offset of the next chunk's first byte. */
  private offset = 0;
  private state = TAG;
  /** The varint being read: its value so far, the weight of its next 7 bits, its byte count. */
  private value = 0;
  private weight = 1;
  private bytes = 0;
  private action = FIELD_SKIP;
  private skipEnd = 0;
  private count = 0;

  constructor(path: WirePath) {
    this.descend = Int32Array.from(path.descend);
    this.countMask = Int32Array.from(path.count);
    this.ends = new Float64Array(path.descend.length);
  }

  push(chunk: Uint8Array): void {
    let state = this.state;
    if (state === BROKEN) return;
    const n = chunk.length;
    const base = this.offset;
    const ends = this.ends;
    let depth = this.depth;
    let value = this.value;
    let weight = this.weight;
    let bytes = this.bytes;
    let action = this.action;
    let skipEnd = this.skipEnd;
    let count = this.count;
    let i = 0;
    while (i < n) {
      if (state === SKIP) {
        const stop = skipEnd - base;
        if (stop > n) {
          i = n;
          break;
        }
        i = stop;
        state = TAG;
        continue;
      }
      if (state === TAG && bytes === 0) {
        // A field starts here: first leave every message that ended exactly here.
        const at = base + i;
        while (depth > 0 && ends[depth - 1] === at) depth--;
      }
      const b = chunk[i++]!;
      value += (b & 0x7f) * weight;
      if (b >= 0x80) {
        weight *= 128;
        if (++bytes === 10) {
          state = BROKEN;
          break;
        }
        continue;
      }
      // A varint is complete.
      const at = base + i;
      const end = depth > 0 ? ends[depth - 1]! : Infinity;
      const v = value;
      value = 0;
      weight = 1;
      bytes = 0;
      if (at > end) {
        state = BROKEN;
        break;
      }
      if (state === TAG) {
        if (v > MAX_TAG || v < 8) {
          state = BROKEN;
          break;
        }
        const wire = v % 8;
        const field = (v - wire) / 8;
        if (wire === 2) {
          state = LENGTH;
          if (field < 32 && (this.descend[depth]! >>> field) & 1) action = FIELD_DESCEND;
          else if (field < 32 && (this.countMask[depth]! >>> field) & 1) action = FIELD_COUNT;
          else action = FIELD_SKIP;
        } else if (wire === 0) {
          state = VARINT;
        } else if (wire === 1 || wire === 5) {
          skipEnd = at + (wire === 1 ? 8 : 4);
          if (skipEnd > end) {
            state = BROKEN;
            break;
          }
          state = SKIP;
        } else {
          state = BROKEN;
          break;
        }
      } else if (state === LENGTH) {
        const fieldEnd = at + v;
        if (v > MAX_LENGTH || fieldEnd > end) {
          state = BROKEN;
          break;
        }
        if (action === FIELD_DESCEND) {
          ends[depth++] = fieldEnd;
          state = TAG;
        } else {
          if (action === FIELD_COUNT) count++;
          skipEnd = fieldEnd;
          state = SKIP;
        }
      } else {
        state = TAG; // the end of a wire-type-0 value
      }
    }
    this.offset = base + n;
    this.state = state;
    this.depth = depth;
    this.value = value;
    this.weight = weight;
    this.bytes = bytes;
    this.action = action;
    this.skipEnd = skipEnd;
    this.count = count;
  }

  finish(): number | null {
    const at = this.offset;
    const between = (this.state === TAG && this.bytes === 0) || (this.state === SKIP && this.skipEnd === at);
    if (!between) return null;
    let depth = this.depth;
    while (depth > 0 && this.ends[depth - 1] === at) depth--;
    return depth === 0 ? this.count : null;
  }
}

export function protobufItemCounter(signal: ItemSignal): ItemCounter {
  return new ProtobufItemCounter(PATHS[signal]);
}
