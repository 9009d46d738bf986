import { gzipSync } from "node:zlib";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";

/** The bench's request bodies and its workerd memory probe, shared by run.ts and profile.ts. */

/** A realistic OTLP batch: 20 spans from the SDK, serialized as the proto exporter does, gzipped. */
export function traceBatch(): Uint8Array {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
  const tracer = provider.getTracer("bench");
  for (let i = 0; i < 20; i++) {
    const span = tracer.startSpan(`GET /api/items/${i}`, { attributes: { "http.request.method": "GET", "http.response.status_code": 200, "url.path": `/api/items/${i}` } });
    span.end();
  }
  const encoded = ProtobufTraceSerializer.serializeRequest(memory.getFinishedSpans())!;
  return process.env.BENCH_IDENTITY ? encoded : gzipSync(encoded);
}

/**
 * A Collector-sized batch: `spans` spans (8,192 is the batch processor's default
 * send_batch_size) in one ExportTraceServiceRequest, serialized by the OpenTelemetry JS proto
 * serializer and gzipped, as the Collector's `otlphttp` exporter sends it (protobuf, gzip by
 * default). Spans of a few services, with the attributes an HTTP server span carries, parents,
 * and distinct ids, so the body compresses like real traffic rather than like repeats.
 */
export function collectorBatch(spans = 8_192): { body: Uint8Array; spans: number; protobufBytes: number } {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
  const tracers = ["checkout", "cart", "payments", "inventory"].map((service) => provider.getTracer(service));
  const routes = ["/api/cart", "/api/checkout", "/api/items/{id}", "/api/payments", "/api/stock/{sku}"];
  for (let i = 0; i < spans; i++) {
    const route = routes[i % routes.length]!;
    const span = tracers[i % tracers.length]!.startSpan(`${i % 3 === 0 ? "POST" : "GET"} ${route}`, {
      attributes: {
        "http.request.method": i % 3 === 0 ? "POST" : "GET",
        "http.route": route,
        "url.path": route.replace(/\{\w+\}/, String(1000 + (i % 977))),
        "http.response.status_code": i % 50 === 0 ? 503 : 200,
        "server.address": "shop.example.com",
        "client.address": `10.0.${(i >> 8) & 255}.${i & 255}`,
        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
      },
    });
    span.end();
  }
  const finished = memory.getFinishedSpans();
  if (finished.length !== spans) throw new Error(`collector batch: ${finished.length} spans finished, ${spans} expected`);
  const encoded = ProtobufTraceSerializer.serializeRequest(finished)!;
  return { body: gzipSync(encoded), spans, protobufBytes: encoded.byteLength };
}

/** An OTLP-looking gzip body of about `target` bytes (span-like text with random ids: about 3:1), forwarded as it came. */
export function largeGzipBody(target: number): Uint8Array {
  const parts: string[] = [];
  let compressed = new Uint8Array(0);
  while (compressed.byteLength < target) {
    for (let i = 0; i < 2_000; i++) parts.push(`{"traceId":"${crypto.randomUUID().replaceAll("-", "")}","name":"GET /api/items/${i}","attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}]}`);
    compressed = gzipSync(parts.join(","));
  }
  return compressed;
}

/** Logpush http_requests NDJSON up to `limit` bytes, as a job sends it (before gzip). */
export function logpushNdjson(limit: number): { text: string; records: number } {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; ; i++) {
    const line = JSON.stringify({
      EdgeStartTimestamp: 1_741_964_966_000_000_000 + i * 1000,
      ClientIP: `203.0.${(i >> 8) & 255}.${i & 255}`,
      ClientRequestHost: "shop.example.com",
      ClientRequestMethod: i % 3 === 0 ? "POST" : "GET",
      ClientRequestURI: `/checkout?step=${i % 7}&item=${i}`,
      ClientRequestUserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
      EdgeResponseStatus: i % 50 === 0 ? 503 : 200,
      EdgeResponseBytes: 1000 + (i % 9000),
      RayID: `8f${i.toString(16).padStart(14, "0")}`,
    });
    if (size + line.length + 1 > limit) break;
    lines.push(line);
    size += line.length + 1;
  }
  return { text: `${lines.join("\n")}\n`, records: lines.length };
}

// workerd's memory and CPU, read from /proc (proc.ts), kept importable from here.
export { workerdCpuSeconds, workerdRssMib } from "./proc.ts";
