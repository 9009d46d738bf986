import { OTLPLogExporter as JsonLogExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPLogExporter as ProtoLogExporter } from "@opentelemetry/exporter-logs-otlp-proto";
import { OTLPMetricExporter as ProtoMetricExporter } from "@opentelemetry/exporter-metrics-otlp-proto";
import { OTLPTraceExporter as JsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from "@opentelemetry/sdk-logs";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { afterAll, describe, expect, it } from "vitest";
import { otlpItems } from "./otlp-items.ts";
import { json, mintKey, newCustomer, stack, waitFor } from "./stack.ts";

/**
 * Issue 13's soak: 50 orgs export traces, logs and metrics with the OpenTelemetry JS exporters
 * (protobuf and JSON, gzip and plain) while the Autumn stand-in fails a fifth of the
 * balances.track calls with 503 and times out 5 % more (half of those after applying the usage,
 * the case idempotency keys exist for). Once the faults stop, Autumn's totals per org and
 * feature must equal what the upstream sink received, exactly.
 */
const ORGS = 50;
const ROUNDS = 3;
const TRACK = ["/v1/balances.track"];

type Outcome = { code: number; error?: Error };
type Exporter<T> = { export(items: T, callback: (result: Outcome) => void): void; shutdown(): Promise<void> };

function exportWith<T>(exporter: Exporter<T>, items: T): Promise<Outcome> {
  return new Promise((resolve) => exporter.export(items, (result) => void exporter.shutdown().then(() => resolve(result))));
}

function spans(n: number) {
  const memory = new InMemorySpanExporter();
  const tracer = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] }).getTracer("soak");
  for (let i = 0; i < n; i++) tracer.startSpan(`op ${i}`).end();
  return memory.getFinishedSpans();
}

function logs(n: number) {
  const memory = new InMemoryLogRecordExporter();
  const logger = new LoggerProvider({ processors: [new SimpleLogRecordProcessor({ exporter: memory })] }).getLogger("soak");
  for (let i = 0; i < n; i++) logger.emit({ body: `line ${i}`, severityText: "INFO" });
  return memory.getFinishedLogRecords();
}

class OnDemand extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

async function metrics(n: number) {
  const reader = new OnDemand();
  const counter = new MeterProvider({ readers: [reader] }).getMeter("soak").createCounter("requests");
  for (let i = 0; i < n; i++) counter.add(1, { route: `/r${i}` });
  return (await reader.collect()).resourceMetrics;
}

async function control(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`${stack.autumnUrl}/_control${path}`, { method, headers: { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  if (!response.ok) throw new Error(`stand-in ${method} ${path} answered ${response.status}: ${await response.text()}`);
  return response.json();
}

/** What the sink received per org: items per feature and bytes, decoded independently (otlp-items.ts). */
async function sinkTotals(org: string): Promise<Record<string, number>> {
  const { requests } = await json<{ requests: { path: string; content_type: string | null; content_encoding: string | null; bytes: number; body_base64: string; status: number }[] }>(
    await fetch(`${stack.sinkUrl}/_control/requests?tenant=${encodeURIComponent(org)}`),
  );
  const totals: Record<string, number> = { spans: 0, log_records: 0, data_points: 0, ingest_bytes: 0 };
  const feature = { "/v1/traces": "spans", "/v1/logs": "log_records", "/v1/metrics": "data_points" } as const;
  for (const r of requests.filter((r) => r.status === 200)) {
    totals[feature[r.path as keyof typeof feature]]! += otlpItems(r.path, r.content_type, r.content_encoding, Buffer.from(r.body_base64, "base64"));
    totals.ingest_bytes! += r.bytes;
  }
  return totals;
}

afterAll(async () => {
  await control("DELETE", "/faults");
});

describe("usage soak: exporters for 50 orgs, Autumn failing a quarter of the reports", () => {
  it("Autumn's totals per org and feature equal the sink's counts exactly", { timeout: 300_000 }, async () => {
    const run = `soak${Date.now().toString(36)}`;
    const orgs = Array.from({ length: ORGS }, (_, i) => `${run}_${String(i).padStart(2, "0")}`);
    const keys = new Map<string, string>();
    for (const org of orgs) {
      await newCustomer(org);
      keys.set(org, await mintKey(org));
    }
    // Rates apply in order to what the earlier faults let through: 20 %, then 2.5 % and 2.5 % of all calls.
    await control("DELETE", "/faults");
    await control("POST", "/faults", { mode: "http_503", rate: 0.2, seed: 13, paths: TRACK });
    await control("POST", "/faults", { mode: "timeout_after_apply", rate: 0.025 / 0.8, seed: 17, delay_ms: 5_000, paths: TRACK });
    await control("POST", "/faults", { mode: "timeout", rate: 0.025 / 0.775, seed: 19, delay_ms: 5_000, paths: TRACK });
    const before = await control("GET", "/stats");

    const outcomes: Outcome[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(
        orgs.map(async (org, i) => {
          const headers = { Authorization: `Bearer ${keys.get(org)}` };
          const config = (path: string, gzip: boolean) => ({ url: `${stack.ingestUrl}/v1/${path}`, headers, compression: (gzip ? "gzip" : "none") as never, timeoutMillis: 20_000 });
          const n = 1 + ((i * 7 + round * 3) % 25);
          const gzip = (i + round) % 2 === 0;
          outcomes.push(
            ...(await Promise.all([
              exportWith(i % 3 === 0 ? new JsonTraceExporter(config("traces", gzip)) : new ProtoTraceExporter(config("traces", gzip)), spans(n)),
              exportWith(i % 2 === 0 ? new JsonLogExporter(config("logs", !gzip)) : new ProtoLogExporter(config("logs", !gzip)), logs(n + 3)),
              exportWith(new ProtoMetricExporter(config("metrics", gzip)), await metrics((n % 6) + 1)),
            ])),
          );
        }),
      );
    }
    expect(outcomes.filter((o) => o.code !== 0).map((o) => o.error?.message)).toEqual([]);
    expect(outcomes).toHaveLength(ORGS * ROUNDS * 3);

    // Let the faults do their work for a while, then stop them: every report still owed must land.
    await waitFor("faults to hit reports", () => control("GET", "/stats"), (s) => (s.paths["/v1/balances.track"]?.faults ?? 0) - (before.paths["/v1/balances.track"]?.faults ?? 0) >= 40, 120_000);
    await control("DELETE", "/faults");

    const expected = new Map<string, Record<string, number>>();
    for (const org of orgs) expected.set(org, await sinkTotals(org));
    const autumnTotals = async () => {
      const usage = await control("GET", "/usage");
      return new Map(orgs.map((org) => [org, Object.fromEntries(Object.entries(usage.customers[org] ?? {}).map(([feature, u]: [string, any]) => [feature, u.value]))]));
    };
    const agree = (actual: Map<string, Record<string, number>>) => orgs.every((org) => JSON.stringify(sorted(actual.get(org)!)) === JSON.stringify(sorted(expected.get(org)!)));
    const final = await waitFor("Autumn's totals to match the sink's", autumnTotals, agree, 180_000);
    for (const org of orgs) expect(sorted(final.get(org)!), org).toEqual(sorted(expected.get(org)!));

    // The faults really happened, and the reports that timed out after being applied were refused as duplicates on retry, not counted twice.
    const usage = await control("GET", "/usage");
    const duplicates = orgs.reduce((n, org) => n + Object.values(usage.customers[org] ?? {}).reduce((m: number, u: any) => m + u.duplicates, 0), 0);
    expect(duplicates).toBeGreaterThan(0);
    const items = orgs.reduce((n, org) => n + expected.get(org)!.spans! + expected.get(org)!.log_records! + expected.get(org)!.data_points!, 0);
    expect(items).toBeGreaterThan(ORGS * ROUNDS * 10);
  });
});

function sorted(record: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v > 0).sort(([a], [b]) => a.localeCompare(b)));
}
