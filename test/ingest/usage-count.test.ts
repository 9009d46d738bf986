import { JsonLogsSerializer, JsonMetricsSerializer, JsonTraceSerializer, ProtobufLogsSerializer, ProtobufMetricsSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from "@opentelemetry/sdk-logs";
import { AggregationType, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { describe, expect, it } from "vitest";
import { countItems, itemCounter, type ItemSignal } from "../../src/ingest/usage/count-items.ts";
import { prng, type Rng } from "../support/prng.ts";
import { OTLP_JSON, OTLP_PROTOBUF } from "./fixtures/otlp.ts";

// Issue 13: counting spans, log records and metric data points as the body streams past.

type Format = "protobuf" | "json";
const FORMATS: Format[] = ["protobuf", "json"];
const SIGNALS: ItemSignal[] = ["traces", "logs", "metrics"];
const utf8 = new TextEncoder();
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

// ---- Real request bodies, made by the SDK and serialized by the exporters' own serializers ----

const SERVICES = [
  resourceFromAttributes({ "service.name": "checkout", "deployment.environment": "prod" }),
  resourceFromAttributes({ "service.name": "cart ☕ 购物车", "host.name": "node-7" }),
];

/** `perScope[r][s]` spans for resource r, scope s. */
function spanBody(format: Format, perScope: number[][]): Uint8Array {
  const spans = perScope.flatMap((scopes, r) => {
    const memory = new InMemorySpanExporter();
    const provider = new TracerProvider({ resource: SERVICES[r % SERVICES.length], spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
    scopes.forEach((count, s) => {
      const tracer = provider.getTracer(`scope-${s}`, "1.2.3");
      for (let i = 0; i < count; i++) {
        const span = tracer.startSpan(`GET /api/items/${i} “quoted” \\ "escaped"`, { attributes: { "http.response.status_code": 200, "url.path": `/api/items/${i}`, ratio: 0.25, ok: true, tags: ["a", "b"] } });
        span.addEvent("cache miss", { "cache.key": `k${i}` });
        span.end();
      }
    });
    return memory.getFinishedSpans();
  });
  return format === "protobuf" ? ProtobufTraceSerializer.serializeRequest(spans)! : JsonTraceSerializer.serializeRequest(spans)!;
}

function logBody(format: Format, perScope: number[][]): Uint8Array {
  const records = perScope.flatMap((scopes, r) => {
    const memory = new InMemoryLogRecordExporter();
    const provider = new LoggerProvider({ resource: SERVICES[r % SERVICES.length], processors: [new SimpleLogRecordProcessor({ exporter: memory })] });
    scopes.forEach((count, s) => {
      const logger = provider.getLogger(`scope-${s}`);
      for (let i = 0; i < count; i++) logger.emit({ body: i % 2 ? `cart updated {"items": ${i}}` : { nested: { list: [1, 2, { deep: "x" }] } }, severityText: "INFO", attributes: { "cart.items": i } });
    });
    return memory.getFinishedLogRecords();
  });
  return format === "protobuf" ? ProtobufLogsSerializer.serializeRequest(records)! : JsonLogsSerializer.serializeRequest(records)!;
}

class CollectOnDemand extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/**
 * One resource's metrics: every instrument kind, each recorded with `series` distinct attribute
 * sets (one data point each): counter and up-down counter (sum), gauge and observable gauge
 * (gauge), histogram, exponential histogram. So 6 × series data points.
 */
async function resourceMetrics(resource: number, series: number) {
  const reader = new CollectOnDemand();
  const provider = new MeterProvider({
    resource: SERVICES[resource % SERVICES.length],
    readers: [reader],
    views: [{ instrumentName: "latency.exp", aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM } }],
  });
  const meter = provider.getMeter("scope-a");
  const other = provider.getMeter("scope-b", "2.0.0");
  const counter = meter.createCounter("requests");
  const upDown = meter.createUpDownCounter("in.flight");
  const gauge = other.createGauge("temperature");
  const histogram = meter.createHistogram("latency");
  const exponential = other.createHistogram("latency.exp");
  other.createObservableGauge("queue.depth").addCallback((result) => {
    for (let i = 0; i < series; i++) result.observe(i * 3, { queue: `q${i}` });
  });
  for (let i = 0; i < series; i++) {
    const attributes = { route: `/r/${i}`, method: i % 2 ? "GET" : "POST" };
    counter.add(i + 1, attributes);
    upDown.add(-i, attributes);
    gauge.record(20.5 + i, attributes);
    histogram.record(i * 7.5, attributes);
    histogram.record(1000, attributes);
    exponential.record(0.001 * (i + 1), attributes);
    exponential.record(-5, attributes);
  }
  const { resourceMetrics: collected } = await reader.collect();
  return collected;
}

/** Metrics of several resources: the serializers take one resource, so their requests are joined (repeated fields concatenate on the wire). */
async function metricBody(format: Format, seriesPerResource: number[]): Promise<Uint8Array> {
  const parts = await Promise.all(seriesPerResource.map((series, r) => resourceMetrics(r, series)));
  if (format === "protobuf") return concat(parts.map((part) => ProtobufMetricsSerializer.serializeRequest(part)!));
  const requests = parts.map((part) => JSON.parse(text(JsonMetricsSerializer.serializeRequest(part)!)) as { resourceMetrics: unknown[] });
  return utf8.encode(JSON.stringify({ resourceMetrics: requests.flatMap((request) => request.resourceMetrics) }));
}

function concat(parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// ---- Hand-built protobuf (for unknown fields, summaries and malformed bodies) ----

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 128) {
    out.push((value % 128) | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}
const tag = (field: number, wire: number) => varint(field * 8 + wire);
const message = (field: number, ...parts: number[][]) => {
  const body = parts.flat();
  return [...tag(field, 2), ...varint(body.length), ...body];
};
/** Bytes that look like the path's own tags, to prove a skipped field is not read. */
const DECOY = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? 0x0a : i % 3 === 1 ? 0x12 : 0x02));

/** Unknown fields of every wire type, including numbers ≥ 32 whose bit in a 32-bit mask would alias 1 and 2, and the largest field number. */
function unknownFields(): number[] {
  return [
    ...tag(15, 0), ...varint(150),
    ...tag(16, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // a 10-byte varint
    ...tag(17, 1), 1, 2, 3, 4, 5, 6, 7, 8,
    ...tag(18, 5), 0x0a, 0x12, 0x0a, 0x12,
    ...message(19, DECOY),
    ...message(33, message(34, DECOY)),
    ...message(34, DECOY),
    ...message(536_870_911, DECOY),
    ...message(20), // empty
  ];
}

/** A request of `signal` shape: `perScope[r][s]` items, unknown fields at every level, wrong-wire-type path fields (skipped). */
function handBuilt(signal: ItemSignal, perScope: number[][], itemOf: (i: number) => number[]): Uint8Array {
  const resources = perScope.map((scopes) =>
    message(
      1,
      unknownFields(),
      message(1, message(1, utf8Bytes("service.name"))), // Resource { attributes }
      tag(2, 0), varint(7), // scope_* with the wrong wire type: not a scope
      ...scopes.map((count) => message(2, message(1, utf8Bytes("scope")), unknownFields(), tag(2, 5), [1, 2, 3, 4], ...Array.from({ length: count }, (_, i) => itemOf(i)))),
    ),
  );
  return concat([unknownFields(), tag(1, 1), [0, 0, 0, 0, 0, 0, 0, 0], ...resources, unknownFields()]);
}

function utf8Bytes(value: string): number[] {
  return [...utf8.encode(value)];
}

/** A span/log record: field 2 of the item level, with unknown and nested fields inside. */
const item = (i: number) => message(2, message(5, utf8Bytes(`item ${i}`)), unknownFields(), message(11, message(2, DECOY)));

/** A Metric (field 2 of ScopeMetrics) whose data field `kind` holds `points` data points. */
const metric = (kind: number, points: number) => message(2, message(1, utf8Bytes(`m${kind}`)), unknownFields(), message(kind, tag(2, 0), [2], ...Array.from({ length: points }, () => message(1, unknownFields())), unknownFields()));

// ---- Feeding ----

function countChunked(signal: ItemSignal, format: Format, body: Uint8Array, rng: Rng, maxChunk: number): number | null {
  const counter = itemCounter(signal, format);
  for (let at = 0; at < body.length; ) {
    if (rng.chance(0.05)) counter.push(new Uint8Array(0));
    const size = 1 + rng.int(maxChunk);
    // Some chunks are views into the body, some copies, as a stream may hand either.
    counter.push(rng.chance(0.5) ? body.subarray(at, at + size) : body.slice(at, at + size));
    at += size;
  }
  return counter.finish();
}

function countBytewise(signal: ItemSignal, format: Format, body: Uint8Array): number | null {
  const counter = itemCounter(signal, format);
  for (let at = 0; at < body.length; at++) counter.push(body.subarray(at, at + 1));
  return counter.finish();
}

/** Whole, byte by byte, and in random chunkings: all must agree. */
function expectCount(signal: ItemSignal, format: Format, body: Uint8Array, expected: number | null, seed = 1): void {
  expect(countItems(signal, format, body)).toBe(expected);
  expect(countBytewise(signal, format, body)).toBe(expected);
  const rng = prng(seed);
  for (let round = 0; round < 20; round++) expect(countChunked(signal, format, body, rng, rng.pick([2, 7, 64, 4096]))).toBe(expected);
}

// ---- Reference counters (whole body, written plainly) for the differential checks ----

function referenceProtobuf(signal: ItemSignal, buf: Uint8Array): number | null {
  const descend = signal === "metrics" ? [[1], [2], [2], [5, 7, 9, 10, 11], []] : [[1], [2], []];
  const countAt = descend.length - 1;
  const countField = signal === "metrics" ? 1 : 2;
  const readVarint = (pos: number, end: number): [number, number] | null => {
    let value = 0;
    for (let k = 0; k < 10; k++) {
      if (pos >= end) return null;
      const b = buf[pos++]!;
      value += (b & 0x7f) * 2 ** (7 * k);
      if (b < 0x80) return [value, pos];
    }
    return null;
  };
  const walk = (start: number, end: number, depth: number): number | null => {
    let total = 0;
    for (let pos = start; pos < end; ) {
      const t = readVarint(pos, end);
      if (!t || t[0] > 0xffffffff || t[0] < 8) return null;
      const wire = t[0] % 8;
      const field = (t[0] - wire) / 8;
      pos = t[1];
      if (wire === 0) {
        const v = readVarint(pos, end);
        if (!v) return null;
        pos = v[1];
      } else if (wire === 1 || wire === 5) {
        pos += wire === 1 ? 8 : 4;
        if (pos > end) return null;
      } else if (wire === 2) {
        const l = readVarint(pos, end);
        if (!l || l[0] > 0x7fffffff || l[1] + l[0] > end) return null;
        if (descend[depth]!.includes(field)) {
          const inner = walk(l[1], l[1] + l[0], depth + 1);
          if (inner === null) return null;
          total += inner;
        } else if (depth === countAt && field === countField) {
          total++;
        }
        pos = l[1] + l[0];
      } else {
        return null;
      }
    }
    return total;
  };
  return walk(0, buf.length, 0);
}

function referenceJson(signal: ItemSignal, body: Uint8Array): number | null {
  let root: unknown;
  try {
    root = JSON.parse(text(body));
  } catch {
    return null;
  }
  if (typeof root !== "object" || root === null || Array.isArray(root)) return null;
  const objects = (value: unknown): Record<string, unknown>[] => (Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)) : []);
  const either = (o: Record<string, unknown>, camel: string, snake: string) => [o[camel], ...(snake !== camel ? [o[snake]] : [])];
  const names = { traces: ["resourceSpans", "resource_spans", "scopeSpans", "scope_spans", "spans", "spans"], logs: ["resourceLogs", "resource_logs", "scopeLogs", "scope_logs", "logRecords", "log_records"], metrics: ["resourceMetrics", "resource_metrics", "scopeMetrics", "scope_metrics", "metrics", "metrics"] }[signal];
  let total = 0;
  for (const resource of either(root as Record<string, unknown>, names[0]!, names[1]!).flatMap(objects))
    for (const scope of either(resource, names[2]!, names[3]!).flatMap(objects))
      for (const entry of either(scope, names[4]!, names[5]!).flatMap(objects)) {
        if (signal !== "metrics") total++;
        else
          for (const kind of ["gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary"]) {
            const data = entry[kind];
            if (typeof data === "object" && data !== null && !Array.isArray(data)) total += either(data as Record<string, unknown>, "dataPoints", "data_points").flatMap(objects).length;
          }
      }
  return total;
}

/** A few random byte edits: overwrite, insert, delete, or a structural byte dropped in. */
function mutate(body: Uint8Array, rng: Rng): Uint8Array {
  let out: Uint8Array = body.slice();
  const edits = 1 + rng.int(3);
  for (let e = 0; e < edits && out.length > 0; e++) {
    const at = rng.int(out.length);
    const kind = rng.int(4);
    if (kind === 0) out[at] = rng.int(256);
    else if (kind === 1) out = concat([out.subarray(0, at), [rng.pick([0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x0a, 0x12, 0x08, 0x80, 0xff, rng.int(256)])], out.subarray(at)]);
    else if (kind === 2) out = concat([out.subarray(0, at), out.subarray(at + 1)]);
    else out[at] = out[at]! ^ (1 << rng.int(8));
  }
  return out;
}

// ---- Tests ----

describe("counting SDK-made requests", () => {
  for (const format of FORMATS) {
    it(`spans (${format}): several resources and scopes, any chunking`, () => {
      expectCount("traces", format, spanBody(format, [[3, 1], [2]]), 6);
      expectCount("traces", format, spanBody(format, [[1]]), 1, 2);
      expectCount("traces", format, spanBody(format, [[40, 0, 7], [5, 5], [1]]), 58, 3);
    });

    it(`log records (${format}): several resources and scopes, any chunking`, () => {
      expectCount("logs", format, logBody(format, [[2, 3], [4]]), 9);
      expectCount("logs", format, logBody(format, [[30], [1, 1, 1]]), 33, 2);
    });

    it(`metric data points (${format}): sum, gauge, histogram, exponential histogram, several resources`, async () => {
      const one = await metricBody(format, [1]);
      expectCount("metrics", format, one, 6);
      const body = await metricBody(format, [3, 5]);
      expectCount("metrics", format, body, 6 * 8, 2);
      if (format === "json") {
        const shown = text(body);
        for (const kind of ['"sum":', '"gauge":', '"histogram":', '"exponentialHistogram":']) expect(shown).toContain(kind);
      }
    });

    it(`empty requests count 0 (${format})`, async () => {
      expectCount("traces", format, spanBody(format, []), 0);
      expectCount("logs", format, logBody(format, []), 0);
      expectCount("metrics", format, await metricBody(format, [0]), 0);
    });
  }

  it("protobuf: the empty body is the empty request; JSON needs at least {}", () => {
    for (const signal of SIGNALS) {
      expectCount(signal, "protobuf", new Uint8Array(0), 0);
      expectCount(signal, "json", new Uint8Array(0), null);
      expectCount(signal, "json", utf8.encode(" {} \n"), 0);
    }
  });

  it("the project's small fixtures count one item each", () => {
    const signalOf = { "/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics" } as const;
    for (const [path, signal] of Object.entries(signalOf) as [keyof typeof signalOf, ItemSignal][]) {
      expectCount(signal, "json", utf8.encode(OTLP_JSON[path]), 1);
      // The protobuf fixture's Metric has a name and no data: no data points.
      expectCount(signal, "protobuf", OTLP_PROTOBUF[path], signal === "metrics" ? 0 : 1);
    }
  });

  it("a ~1 MiB body counts the same whole and in 1-byte, 3-byte and 16 KiB chunks", () => {
    const body = spanBody("protobuf", [[2000, 1500], [1000]]);
    const json = spanBody("json", [[2000, 1500], [1000]]);
    expect(body.length).toBeGreaterThan(500_000);
    for (const [format, bytes] of [["protobuf", body], ["json", json]] as const) {
      expect(countItems("traces", format, bytes)).toBe(4500);
      expect(countBytewise("traces", format, bytes)).toBe(4500);
      for (const size of [3, 16_384]) {
        const counter = itemCounter("traces", format);
        for (let at = 0; at < bytes.length; at += size) counter.push(bytes.subarray(at, at + size));
        expect(counter.finish()).toBe(4500);
      }
    }
  });
});

describe("protobuf wire format", () => {
  it("skips unknown fields of every wire type at every level, and path fields with the wrong wire type", () => {
    expectCount("traces", "protobuf", handBuilt("traces", [[2, 0, 3], [4]], item), 9);
    expectCount("logs", "protobuf", handBuilt("logs", [[1]], item), 1);
    expect(referenceProtobuf("traces", handBuilt("traces", [[2, 0, 3], [4]], item))).toBe(9);
  });

  it("counts data points of every Metric data kind, summary included (hand-built)", () => {
    const scope = (...metrics: number[][]) => message(2, message(1, utf8Bytes("scope")), unknownFields(), ...metrics);
    const body = concat([
      message(
        1,
        unknownFields(),
        scope(metric(5, 2), metric(7, 3), metric(9, 1), metric(10, 4), metric(11, 5), metric(6, 9), metric(8, 9)), // 6 and 8: not data fields
        scope(metric(11, 0), message(2, message(1, utf8Bytes("no data")))),
      ),
      message(1, scope(metric(11, 7))),
    ]);
    expectCount("metrics", "protobuf", body, 2 + 3 + 1 + 4 + 5 + 7);
    expect(referenceProtobuf("metrics", body)).toBe(22);
  });

  it("the signal picks the path: a span body read as metrics descends into Span fields 5 and 7 as data and finds them malformed", () => {
    // Logs share the traces path's field numbers, so the same bytes count the same.
    const body = spanBody("protobuf", [[3]]);
    expect(countItems("logs", "protobuf", body)).toBe(3);
    expect(countItems("metrics", "protobuf", body)).toBeNull();
  });

  it("unknown fields around a real SDK body are skipped", () => {
    const body = concat([unknownFields(), spanBody("protobuf", [[2], [3]]), unknownFields()]);
    expectCount("traces", "protobuf", body, 5);
  });

  const malformed: [string, number[]][] = [
    ["a start-group field", [...tag(9, 3), ...tag(9, 4)]],
    ["an end-group field", tag(9, 4)],
    ["a group on the path", message(1, tag(2, 3), tag(2, 4))],
    ["wire type 6", tag(9, 6)],
    ["wire type 7", tag(9, 7)],
    ["field number 0", [0x02, 0x00]],
    ["a field number above 2^29-1", [...varint(2 ** 29 * 8 + 2), 0]],
    ["an 11-byte varint", [...tag(9, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ["a length past the enclosing message", message(1, [...tag(2, 2), ...varint(10), 1, 2, 3])],
    ["a skipped field's length past the enclosing message", message(1, [...tag(7, 2), ...varint(3), 1, 2])],
    ["a fixed64 past the enclosing message", message(1, [...tag(7, 1), 1, 2, 3])],
    ["a fixed32 past the enclosing message", message(1, [...tag(7, 5), 1, 2])],
    ["a varint crossing the enclosing message's end", [...message(1, [...tag(7, 0), 0x80]), 0x01]],
    ["a tag crossing the enclosing message's end", [...message(1, [0x80]), 0x01]],
    ["a length above 2^31-1", [...tag(9, 2), ...varint(2 ** 31)]],
  ];
  for (const [name, bytes] of malformed) {
    it(`malformed: ${name} → null`, () => {
      for (const signal of SIGNALS) expectCount(signal, "protobuf", concat([spanBody("protobuf", [[1]]), bytes]), null);
    });
  }

  it("truncated anywhere inside a field → null (every prefix of a one-resource body)", () => {
    for (const [signal, body] of [["traces", spanBody("protobuf", [[2, 1]])], ["logs", logBody("protobuf", [[2]])]] as const) {
      expect(countItems(signal, "protobuf", body)).not.toBeNull();
      for (let cut = 1; cut < body.length; cut++) expect(countItems(signal, "protobuf", body.subarray(0, cut))).toBeNull();
    }
  });

  it("a prefix ending between top-level fields is itself a valid request (protobuf has no end marker)", () => {
    const first = spanBody("protobuf", [[2]]);
    const body = concat([first, spanBody("protobuf", [[3]])]);
    expect(countItems("traces", "protobuf", body)).toBe(5);
    expect(countItems("traces", "protobuf", body.subarray(0, first.length))).toBe(2);
  });
});

describe("OTLP/JSON", () => {
  it("accepts the snake_case proto field names", () => {
    const traces = { resource_spans: [{ scope_spans: [{ spans: [{}, { name: "x" }] }] }, { resourceSpans: [], scopeSpans: [{ spans: [{}] }] }] };
    const logs = { resource_logs: [{ scope_logs: [{ log_records: [{}, {}, {}] }, { logRecords: [{}] }] }] };
    const metrics = { resource_metrics: [{ scope_metrics: [{ metrics: [{ exponential_histogram: { data_points: [{}, {}] } }, { summary: { dataPoints: [{}] } }, { gauge: { data_points: [{}] } }] }] }] };
    expectCount("traces", "json", utf8.encode(JSON.stringify(traces)), 3);
    expectCount("logs", "json", utf8.encode(JSON.stringify(logs)), 4);
    expectCount("metrics", "json", utf8.encode(JSON.stringify(metrics)), 4);
  });

  it("counts a hand-built summary and skips look-alike keys off the path", () => {
    const decoys = { spans: [{}, {}], logRecords: [{}], dataPoints: [{}], resourceSpans: [{ scopeSpans: [{ spans: [{}] }] }] };
    const body = {
      extra: decoys,
      resourceMetrics: [
        {
          resource: { attributes: [{ key: "dataPoints", value: { kvlistValue: { values: [{ key: "summary", value: { stringValue: "{\"dataPoints\":[{}]}" } }] } } }], ...decoys },
          scopeMetrics: [
            {
              scope: { name: "s", ...decoys },
              metrics: [
                { name: "rpc", summary: { dataPoints: [{ count: "3", sum: 1.5e3, quantileValues: [{ quantile: 0.99, value: -2.5E-3 }] }, { count: "1" }] }, dataPoints: [{}] },
                { name: "g", gauge: { dataPoints: [{ asDouble: 1 }], summary: { dataPoints: [{}] } }, extra: decoys },
                { name: "null data", sum: null, histogram: { dataPoints: null } },
              ],
              ...decoys,
            },
          ],
        },
      ],
    };
    expectCount("metrics", "json", utf8.encode(JSON.stringify(body, null, 2)), 3);
    expect(referenceJson("metrics", utf8.encode(JSON.stringify(body)))).toBe(3);
  });

  it("strings may hold escaped quotes, backslashes, unicode escapes and any UTF-8", () => {
    const body = `{"resourceSpans":[{"resource":{"attributes":[{"key":"k\\"}]","value":{"stringValue":"\\\\\\" ] } \\u005d \\ud83d\\ude00 ☕ 😀 ü"}}]},"scopeSpans":[{"spans":[{"name":"\\"spans\\":[{}]","traceId":"5b8e"},{"name":"购物车 {[\\n\\t\\r\\b\\f\\/"}]}]}]}`;
    expect(JSON.parse(body)).toBeTruthy();
    expectCount("traces", "json", utf8.encode(body), 2);
  });

  it("numbers and literals in every JSON form; non-object elements are not counted", () => {
    const body = `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":9,"a":-0,"b":0.5e+10,"c":-12.75E-2,"d":true,"e":false,"f":null,"g":[1,[2,[]],{}]},null,7,"x",[{}]]}]}]}`;
    expect(JSON.parse(body)).toBeTruthy();
    expectCount("logs", "json", utf8.encode(body), 1);
  });

  it("every number form JSON allows, split anywhere", () => {
    const numbers = ["0", "-0", "7", "-12", "0.5", "-0.0e-0", "1E+2", "0e5", "123456789012345678901234567890", "1.5e308", "2.25E-10"];
    const asMembers = numbers.map((number, k) => `"k${k}":${number}`).join(",");
    const body = `{"resourceSpans":[{"scopeSpans":[{"spans":[{"n":[${numbers.join(",")}],"m":${numbers.at(-1)}},{${asMembers}}]}]}]}`;
    expect(JSON.parse(body)).toBeTruthy();
    expectCount("traces", "json", utf8.encode(body), 2);
  });

  it("an escaped key is an unknown key (documented): its items are not counted", () => {
    expectCount("traces", "json", utf8.encode(`{"resourceSpans":[{"scopeSpans":[{"sp\\u0061ns":[{},{}],"spans":[{}]}]}]}`), 1);
  });

  it("whitespace anywhere between tokens", () => {
    const body = spanBody("json", [[2], [1]]);
    const spaced = utf8.encode(` \n\t${JSON.stringify(JSON.parse(text(body)), null, "\t").replaceAll("\n", "\r\n")}\r\n `);
    expectCount("traces", "json", spaced, 3);
  });

  const invalid = [
    "",
    "   ",
    "{",
    "{} {}",
    "{}x",
    '{"resourceSpans":[}',
    '{"resourceSpans":[{}],}',
    '{"resourceSpans":[{},]}',
    '{"a" 1}',
    '{"a":1 "b":2}',
    "{'a':1}",
    '{"a":01}',
    '{"a":1.}',
    '{"a":.5}',
    '{"a":1e}',
    '{"a":-}',
    '{"a":+1}',
    '{"a":-01}',
    '{"a":1.e5}',
    '{"a":1e+}',
    '{"a":--1}',
    '{"a":0x1}',
    '{"a":1.5.5}',
    '{"a":Infinity}',
    '{"a":NaN}',
    '{"a":[1 2]}',
    '{"a":tru}',
    '{"a":nul}',
    '{"a":True}',
    '{"a":"\\q"}',
    '{"a":"\\u12G4"}',
    '{"a":"tab\there"}',
    '{"a":"new\nline"}',
    '{"a":[1,2}',
    '{"a":{"b":1]}',
    '{a:1}',
    '{"a":1,}',
    "\u00a0{}",
  ];
  for (const body of invalid) {
    it(`invalid JSON → null: ${JSON.stringify(body)}`, () => {
      expect(() => JSON.parse(body)).toThrow();
      for (const signal of SIGNALS) expectCount(signal, "json", utf8.encode(body), null);
    });
  }

  it("top-level values other than an object are refused even when valid JSON", () => {
    for (const body of ["[]", "7", "null", '"x"']) expect(countItems("traces", "json", utf8.encode(body))).toBeNull();
  });

  it("a byte ≥ 0x80 outside a string is invalid", () => {
    expectCount("traces", "json", concat([utf8.encode('{"a":'), [0xc3, 0xbc], utf8.encode("1}")]), null);
  });

  it("nesting up to the depth limit is fine; deeper is refused", () => {
    const nested = (depth: number) => utf8.encode(`{"a":${"[".repeat(depth - 2)}{}${"]".repeat(depth - 2)}}`);
    expect(countItems("traces", "json", nested(10_000))).toBe(0);
    expect(countItems("traces", "json", nested(10_001))).toBeNull();
  });

  it("truncated anywhere → null (every proper prefix)", () => {
    for (const [signal, body] of [["traces", spanBody("json", [[2, 1]])], ["logs", logBody("json", [[2]])]] as const) {
      expect(countItems(signal, "json", body)).toBe(signal === "traces" ? 3 : 2);
      for (let cut = 0; cut < body.length; cut++) expect(countItems(signal, "json", body.subarray(0, cut))).toBeNull();
    }
  });
});

describe("properties", () => {
  it("random chunking never changes the count, for valid and mutated bodies alike", async () => {
    const rng = prng(0x13_c0_57);
    const bodies: [ItemSignal, Format, Uint8Array][] = [];
    for (const format of FORMATS) {
      bodies.push(["traces", format, spanBody(format, [[3, 2], [1]])], ["logs", format, logBody(format, [[2], [2]])], ["metrics", format, await metricBody(format, [2])]);
    }
    bodies.push(["traces", "protobuf", handBuilt("traces", [[2, 1]], item)]);
    for (const [signal, format, body] of bodies) {
      for (let round = 0; round < 60; round++) {
        const sample = round === 0 ? body : mutate(body, rng);
        const whole = countItems(signal, format, sample);
        expect(countChunked(signal, format, sample, rng, rng.pick([1, 2, 5, 33, 1000]))).toBe(whole);
      }
    }
  });

  it("a body split in two at every position counts the same", async () => {
    for (const format of FORMATS) {
      const bodies: [ItemSignal, Uint8Array, number][] = [["traces", spanBody(format, [[2]]), 2], ["logs", logBody(format, [[1], [1]]), 2], ["metrics", await metricBody(format, [1]), 6]];
      for (const [signal, body, expected] of bodies) {
        for (let cut = 0; cut <= body.length; cut++) {
          const counter = itemCounter(signal, format);
          counter.push(body.subarray(0, cut));
          counter.push(body.subarray(cut));
          expect(counter.finish(), `${signal}/${format} cut at ${cut}`).toBe(expected);
        }
      }
    }
  });

  it("mutated bodies: the streaming counter agrees with a plain whole-body decoder", async () => {
    const rng = prng(0xc0_47);
    let nulls = 0;
    let counted = 0;
    for (const format of FORMATS) {
      const reference = format === "protobuf" ? referenceProtobuf : referenceJson;
      const bodies: [ItemSignal, Uint8Array][] = [["traces", spanBody(format, [[3], [2, 2]])], ["logs", logBody(format, [[4]])], ["metrics", await metricBody(format, [2, 1])]];
      for (const [signal, body] of bodies) {
        expect(countItems(signal, format, body)).toBe(reference(signal, body));
        for (let round = 0; round < 300; round++) {
          const sample = mutate(body, rng);
          const expected = reference(signal, sample);
          expect(countChunked(signal, format, sample, rng, rng.pick([1, 7, 100, 100_000])), `${signal}/${format} round ${round}`).toBe(expected);
          if (expected === null) nulls++;
          else counted++;
        }
      }
    }
    // Both outcomes are exercised.
    expect(nulls).toBeGreaterThan(100);
    expect(counted).toBeGreaterThan(100);
  });
});
