import { diag, DiagLogLevel, type DiagLogger } from "@opentelemetry/api";
import { OTLPTraceExporter as JsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { BatchSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { afterEach, describe, expect, it } from "vitest";
import { sendWith } from "./exporters.ts";
import { autumnControl, json, mintKey, newCustomer, orgState, stack, waitFor } from "./stack.ts";

/**
 * Issue 12 from real clients (the local stack runs with parking on): the warning in the
 * exporter's own diagnostic log while overdue, the pay link in the 402, batches sent while
 * suspended delivered after payment, and nothing lost through a 30 s upstream outage.
 */

const unique = (prefix: string) => `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
const SUCCESS = 0;

type SinkRecord = { path: string; tenant: string; body_base64: string; status: number | null };
const records = async (tenant: string) =>
  (await json<{ requests: SinkRecord[] }>(await fetch(`${stack.sinkUrl}/_control/requests?tenant=${encodeURIComponent(tenant)}`))).requests;
/** Span ids the sink accepted (200) from a tenant, from OTLP JSON bodies. */
async function spanIdsAt(tenant: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const record of await records(tenant)) {
    if (record.status !== 200) continue;
    const body = JSON.parse(Buffer.from(record.body_base64, "base64").toString("utf8")) as { resourceSpans?: { scopeSpans?: { spans?: { spanId: string }[] }[] }[] };
    for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) ids.add(span.spanId);
  }
  return ids;
}

/** The exporter's diagnostic log (what an application's OTel diag logger prints), captured. */
function captureDiag(): string[] {
  const lines: string[] = [];
  const keep = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
  const logger: DiagLogger = { error: keep, warn: keep, info: keep, debug: () => {}, verbose: () => {} };
  diag.setLogger(logger, { logLevel: DiagLogLevel.INFO, suppressOverrideMessage: true });
  return lines;
}

afterEach(async () => {
  diag.disable();
  await fetch(`${stack.sinkUrl}/_control/outage`, { method: "DELETE" });
});

describe("the customer's side of a suspension", () => {
  it("overdue: the warning in the exporter's log; suspended: the 402 names where to pay and the batches are kept; paid: they arrive", { timeout: 60_000 }, async () => {
    const org = unique("customer");
    await newCustomer(org);
    const key = await mintKey(org);
    const log = captureDiag();

    await autumnControl(`/customers/${org}/past-due`);
    expect(await orgState(org)).toMatchObject({ state: "overdue" });
    // The edge learns of the overdue state within its 5 s TTL; the grace period here is 4 s.
    const warned = await waitFor("the warning in the exporter's log", async () => (await sendWith("traces/json", key), log.join("\n")), (text) => text.includes("Received Partial Success response"), 8_000);
    expect(warned).toMatch(/ingestion will be suspended at \S+ unless it is paid: https:\/\/invoice\.stripe\.com\//);

    await waitFor("suspension", () => orgState(org), (s) => s.state === "suspended", stack.gracePeriodMs + 10_000);
    const refused = await waitFor("the edge to refuse", () => sendWith("traces/json", key), (o) => o.error?.code === 402, 8_000);
    const body = JSON.parse(refused.error!.data!) as { pay_url: string; message: string };
    expect(body.pay_url).toMatch(/^https:\/\/invoice\.stripe\.com\//);
    expect(body.message).toContain(`Pay the overdue invoice at ${body.pay_url}`);
    expect(body.message).toContain("This batch is kept for");
    for (let i = 0; i < 3; i++) expect((await sendWith("traces/json", key)).error?.code).toBe(402);
    const before = (await spanIdsAt(org)).size;

    await autumnControl(`/customers/${org}/pay`);
    // The 402'd batches (the first refusal and the three after it) are delivered by the queue.
    const after = await waitFor("the parked batches at the sink", () => spanIdsAt(org), (ids) => ids.size >= before + 4, 20_000);
    expect(after.size).toBe(before + 4);
    expect((await sendWith("traces/json", key)).code).toBe(SUCCESS);
  });
});

describe("an upstream outage", () => {
  it("200 spans exported with the SDK's default settings through a 30 s sink outage all arrive", { timeout: 120_000 }, async () => {
    const org = unique("outage");
    await newCustomer(org);
    const key = await mintKey(org);
    await fetch(`${stack.sinkUrl}/_control/outage`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ seconds: 30 }) });

    // Defaults everywhere: BatchSpanProcessor's queue, batch size and delays, the exporter's 10 s timeout and retries.
    const exporter = new JsonTraceExporter({ url: `${stack.ingestUrl}/v1/traces`, headers: { Authorization: `Bearer ${key}` } });
    const provider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter })] });
    const tracer = provider.getTracer("tollgate-e2e-outage");
    const sent = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const span = tracer.startSpan(`work ${i}`);
      sent.add(span.spanContext().spanId);
      span.end();
      if (i % 50 === 49) await provider.forceFlush();
    }
    await provider.shutdown();

    // Delivered by the queue once the sink is back (first try 5 s after the park, then backoff).
    const arrived = await waitFor("every span at the sink", () => spanIdsAt(org), (ids) => [...sent].every((id) => ids.has(id)), 90_000);
    expect([...sent].filter((id) => !arrived.has(id))).toEqual([]);
  });
});
