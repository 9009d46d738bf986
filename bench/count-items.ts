import { JsonLogsSerializer, JsonMetricsSerializer, JsonTraceSerializer, ProtobufLogsSerializer, ProtobufMetricsSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from "@opentelemetry/sdk-logs";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { countItems, itemCounter, type ItemSignal } from "../src/ingest/usage/count-items.ts";

/**
 * `node bench/count-items.ts` (Node 22, as the other bench scripts): what usage metering's item
 * counter costs. For each signal and encoding, a realistic ~1 MiB request body made by the
 * OpenTelemetry SDK and serialized by its exporters' serializers is counted whole and fed in
 * 16 KiB chunks (as a decompressed stream hands it over); the median of ROUNDS timed rounds is
 * printed in MB/s (10^6 bytes), beside JSON.parse of the same JSON body for scale. Also the
 * cost for the main bench's request body (20 spans), the per-request overhead metering adds.
 */
type Format = "protobuf" | "json";
const TARGET = 1024 * 1024;
const ROUND_MS = Number(process.env.COUNT_BENCH_ROUND_MS ?? 300);
const ROUNDS = Number(process.env.COUNT_BENCH_ROUNDS ?? 5);
const CHUNK = 16 * 1024;

const resource = resourceFromAttributes({ "service.name": "checkout", "service.version": "4.2.0", "deployment.environment.name": "prod", "host.name": "ip-10-0-3-17", "k8s.pod.name": "checkout-7d9f8b6c5-x2x9q" });
const ROUTES = ["/api/cart", "/api/items/{id}", "/api/checkout", "/api/users/{id}/orders", "/health"];

function spans(n: number) {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
  const tracers = [provider.getTracer("@opentelemetry/instrumentation-http", "0.57.0"), provider.getTracer("checkout-service", "4.2.0")];
  for (let i = 0; i < n; i++) {
    const route = ROUTES[i % ROUTES.length]!;
    const span = tracers[i % 2]!.startSpan(`GET ${route}`, {
      kind: 1,
      attributes: { "http.request.method": "GET", "http.route": route, "url.path": route.replace("{id}", String(i)), "http.response.status_code": i % 50 ? 200 : 500, "server.address": "shop.example.com", "network.protocol.version": "1.1", "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)", "client.address": `203.0.113.${i % 255}` },
    });
    if (i % 4 === 0) span.addEvent("cache miss", { "cache.key": `cart:${i}` });
    span.end();
  }
  return memory.getFinishedSpans();
}

function logRecords(n: number) {
  const memory = new InMemoryLogRecordExporter();
  const provider = new LoggerProvider({ resource, processors: [new SimpleLogRecordProcessor({ exporter: memory })] });
  const logger = provider.getLogger("checkout-service", "4.2.0");
  for (let i = 0; i < n; i++) {
    logger.emit({ severityNumber: 9, severityText: "INFO", body: `cart ${i} updated: ${i % 7} items, total ${(i * 13.37).toFixed(2)} EUR, coupon ${i % 3 ? "none" : "SPRING24"}`, attributes: { "cart.id": `c-${i}`, "cart.items": i % 7, "user.id": `u-${i % 1000}`, "http.route": ROUTES[i % ROUTES.length]!, "code.function": "updateCart" } });
  }
  return memory.getFinishedLogRecords();
}

class CollectOnDemand extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** `series` attribute sets on a counter, an up-down counter, a gauge and a histogram: 4 data points each. */
async function metrics(series: number) {
  const reader = new CollectOnDemand();
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter("checkout-service", "4.2.0");
  const requests = meter.createCounter("http.server.requests");
  const active = meter.createUpDownCounter("http.server.active_requests");
  const memory = meter.createGauge("process.memory.usage");
  const duration = meter.createHistogram("http.server.request.duration", { unit: "s" });
  for (let i = 0; i < series; i++) {
    const attributes = { "http.route": `${ROUTES[i % ROUTES.length]}#${i}`, "http.request.method": i % 3 ? "GET" : "POST", "http.response.status_code": i % 50 ? 200 : 500 };
    requests.add(1 + (i % 9), attributes);
    active.add(i % 4, attributes);
    memory.record(1e8 + i, attributes);
    duration.record(0.001 * (i % 400), attributes);
  }
  return (await reader.collect()).resourceMetrics;
}

/** The smallest multiple of a 100-item sample's size that reaches ~1 MiB. */
async function bodyOf(make: (n: number) => Uint8Array | Promise<Uint8Array>): Promise<{ body: Uint8Array; items: number }> {
  const perItem = (await make(100)).length / 100;
  const items = Math.ceil(TARGET / perItem);
  return { body: await make(items), items };
}

const makers: Record<ItemSignal, Record<Format, (n: number) => Uint8Array | Promise<Uint8Array>>> = {
  traces: { protobuf: (n) => ProtobufTraceSerializer.serializeRequest(spans(n))!, json: (n) => JsonTraceSerializer.serializeRequest(spans(n))! },
  logs: { protobuf: (n) => ProtobufLogsSerializer.serializeRequest(logRecords(n))!, json: (n) => JsonLogsSerializer.serializeRequest(logRecords(n))! },
  metrics: { protobuf: async (n) => ProtobufMetricsSerializer.serializeRequest(await metrics(Math.ceil(n / 4)))!, json: async (n) => JsonMetricsSerializer.serializeRequest(await metrics(Math.ceil(n / 4)))! },
};

/** Median MB/s over ROUNDS rounds of at least ROUND_MS each, after a warm-up round. */
function throughput(bytes: number, run: () => void): number {
  const rates: number[] = [];
  for (let round = -1; round < ROUNDS; round++) {
    let runs = 0;
    const started = performance.now();
    let elapsed = 0;
    do {
      run();
      runs++;
      elapsed = performance.now() - started;
    } while (elapsed < ROUND_MS);
    if (round >= 0) rates.push((bytes * runs) / 1e6 / (elapsed / 1000));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)]!;
}

function chunked(signal: ItemSignal, format: Format, body: Uint8Array): number | null {
  const counter = itemCounter(signal, format);
  for (let at = 0; at < body.length; at += CHUNK) counter.push(body.subarray(at, at + CHUNK));
  return counter.finish();
}

const fmt = (rate: number) => rate.toFixed(0).padStart(6);
console.log(`count-items bench: Node ${process.version}, ${ROUNDS} rounds of ≥ ${ROUND_MS} ms, median MB/s (10^6 bytes/s)\n`);
console.log("| signal | format | body | items | whole MB/s | 16 KiB chunks MB/s | JSON.parse MB/s |");
console.log("|---|---|---:|---:|---:|---:|---:|");
for (const signal of ["traces", "logs", "metrics"] as const) {
  for (const format of ["protobuf", "json"] as const) {
    const { body, items } = await bodyOf(makers[signal][format]);
    const counted = countItems(signal, format, body);
    if (counted !== items && !(signal === "metrics" && counted === 4 * Math.ceil(items / 4))) throw new Error(`${signal}/${format}: counted ${counted}, made ${items}`);
    if (chunked(signal, format, body) !== counted) throw new Error(`${signal}/${format}: chunked count differs`);
    const whole = throughput(body.length, () => countItems(signal, format, body));
    const pieces = throughput(body.length, () => chunked(signal, format, body));
    const parse = format === "json" ? fmt(throughput(body.length, () => JSON.parse(new TextDecoder().decode(body)))) : "—";
    console.log(`| ${signal} | ${format} | ${(body.length / 1024).toFixed(0)} KiB | ${counted} | ${fmt(whole)} | ${fmt(pieces)} | ${parse} |`);
  }
}

// The main bench's request (bench/bodies.ts traceBatch: 20 spans), decompressed.
const small = ProtobufTraceSerializer.serializeRequest(spans(20))!;
const smallJson = JsonTraceSerializer.serializeRequest(spans(20))!;
for (const [format, body] of [["protobuf", small], ["json", smallJson]] as const) {
  const rate = throughput(body.length, () => countItems("traces", format, body));
  console.log(`\n20-span request (${format}, ${body.length} bytes): ${((body.length / (rate * 1e6)) * 1e6).toFixed(2)} µs per request`);
}
