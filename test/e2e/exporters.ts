import { OTLPLogExporter as JsonLogExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPLogExporter as ProtoLogExporter } from "@opentelemetry/exporter-logs-otlp-proto";
import { OTLPMetricExporter as ProtoMetricExporter } from "@opentelemetry/exporter-metrics-otlp-proto";
import { OTLPTraceExporter as JsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from "@opentelemetry/sdk-logs";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { stack } from "./stack.ts";

/**
 * The OpenTelemetry JS SDK's own OTLP exporters, pointed at the ingest Worker. Telemetry is
 * produced by the SDK (real spans, log records and metrics), then handed to each exporter.
 */
export type ExportOutcome = { code: number; error?: Error & { code?: number; data?: string }; ms: number };

type Exporter<T> = { export(items: T, callback: (result: { code: number; error?: Error }) => void): void; shutdown(): Promise<void> };

function exportWith<T>(exporter: Exporter<T>, items: T): Promise<ExportOutcome> {
  const started = performance.now();
  return new Promise((resolve) =>
    exporter.export(items, (result) => {
      void exporter.shutdown();
      resolve({ code: result.code, ...(result.error ? { error: result.error } : {}), ms: performance.now() - started });
    }),
  );
}

function spans() {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
  const span = provider.getTracer("tollgate-e2e").startSpan("GET /checkout");
  span.setAttribute("http.response.status_code", 200);
  span.end();
  return memory.getFinishedSpans();
}

function logRecords() {
  const memory = new InMemoryLogRecordExporter();
  const provider = new LoggerProvider({ processors: [new SimpleLogRecordProcessor({ exporter: memory })] });
  provider.getLogger("tollgate-e2e").emit({ body: "cart updated", severityText: "INFO", attributes: { "cart.items": 3 } });
  return memory.getFinishedLogRecords();
}

class CollectOnDemand extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

async function metrics() {
  const reader = new CollectOnDemand();
  const provider = new MeterProvider({ readers: [reader] });
  provider.getMeter("tollgate-e2e").createCounter("checkout.requests").add(5, { route: "/checkout" });
  const { resourceMetrics } = await reader.collect();
  return resourceMetrics;
}

export type Signal = "traces/proto" | "traces/json" | "logs/proto" | "logs/json" | "metrics/proto";
export const SIGNALS: Signal[] = ["traces/proto", "traces/json", "logs/proto", "logs/json", "metrics/proto"];

export async function sendWith(signal: Signal, key: string, options: { gzip?: boolean } = {}): Promise<ExportOutcome> {
  const path = signal.split("/")[0];
  const config = { url: `${stack.ingestUrl}/v1/${path}`, headers: { Authorization: `Bearer ${key}` }, compression: (options.gzip ? "gzip" : "none") as never, timeoutMillis: 10_000 };
  switch (signal) {
    case "traces/proto":
      return exportWith(new ProtoTraceExporter(config), spans());
    case "traces/json":
      return exportWith(new JsonTraceExporter(config), spans());
    case "logs/proto":
      return exportWith(new ProtoLogExporter(config), logRecords());
    case "logs/json":
      return exportWith(new JsonLogExporter(config), logRecords());
    case "metrics/proto":
      return exportWith(new ProtoMetricExporter(config), await metrics());
  }
}
