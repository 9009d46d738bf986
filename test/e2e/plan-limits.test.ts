import { OTLPTraceExporter as ProtoTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { describe, expect, it } from "vitest";
import { admin, autumnControl, json, mintKey, newCustomer, stack, waitFor } from "./stack.ts";

/**
 * Issue 13's limit lifecycle on the whole local stack (metering and ENFORCE_LIMITS are on in the
 * local defaults): an allowance of 100 spans, exports until the edge refuses them, the refusal,
 * then the two ways out: the balance's reset, and an upgrade.
 */
function spans(n: number) {
  const memory = new InMemorySpanExporter();
  const tracer = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] }).getTracer("limits");
  for (let i = 0; i < n; i++) tracer.startSpan(`op ${i}`).end();
  return memory.getFinishedSpans();
}

function exportSpans(key: string, n: number): Promise<{ code: number; error?: Error & { code?: number; data?: string } }> {
  const exporter = new ProtoTraceExporter({ url: `${stack.ingestUrl}/v1/traces`, headers: { Authorization: `Bearer ${key}` }, timeoutMillis: 10_000 });
  return new Promise((resolve) => exporter.export(spans(n), (result) => void exporter.shutdown().then(() => resolve(result as never))));
}

/** One JSON export, to read the refusal as a client sees it. */
async function postJson(key: string): Promise<Response> {
  const body = { resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: "5b8efff798038103d269b633813fc60c", spanId: "eee19b7ec3c1b174", name: "probe", startTimeUnixNano: "1", endTimeUnixNano: "2" }] }] }] };
  return fetch(`${stack.ingestUrl}/v1/traces`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
}

async function exportUntilRefused(key: string): Promise<number> {
  let accepted = 0;
  await waitFor(
    "the edge to refuse spans",
    async () => {
      const result = await exportSpans(key, 25);
      if (result.code === 0) accepted += 25;
      return result;
    },
    (result) => result.code !== 0,
    60_000,
  );
  return accepted;
}

describe("plan limits on the local stack", () => {
  it("an allowance of 100 spans: exports until refused 429 plan_limit_reached naming the reset; the reset lets them in again", { timeout: 120_000 }, async () => {
    const org = `limits_reset_${Date.now().toString(36)}`;
    await newCustomer(org);
    const key = await mintKey(org);
    const resetAt = Date.now() + 25_000;
    await autumnControl(`/customers/${org}/balances/spans`, { granted: 100, next_reset_at: resetAt, reset_interval_ms: 86_400_000 });

    const accepted = await exportUntilRefused(key);
    expect(accepted).toBeGreaterThanOrEqual(100);
    const refused = await postJson(key);
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(25);
    const body = await json<{ error: string; message: string; feature_id: string; reset_at: string; upgrade_url: string }>(refused);
    expect(body).toMatchObject({ error: "plan_limit_reached", feature_id: "spans", reset_at: new Date(resetAt).toISOString(), upgrade_url: `https://example.com/billing/upgrade?org=${org}` });
    expect(body.message).toMatch(/^The plan's allowance of spans is used up, .* It resets \S+ \(in \d+s\); retry then, or sooner after an upgrade\. Upgrade the plan at https:\/\/example\.com\//);
    // Other signals are not limited.
    expect((await fetch(`${stack.ingestUrl}/v1/logs`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" })).status).toBe(200);

    // The period rolls over: accepted again, and the object's read at the reset clears the limit.
    await waitFor("the reset to let spans in", () => exportSpans(key, 5), (result) => result.code === 0, 60_000);
    const view = await waitFor("the limit to be cleared", async () => (await admin<{ history: { kind: string; source: string }[] }>("GET", `/orgs/${org}`)).body, (v) => v.history.some((h) => h.kind === "limit_cleared"), 30_000);
    expect(view.history.find((h) => h.kind === "limit_reached")).toBeDefined();
  });

  it("an upgrade (Autumn's billing.updated) lifts the limit at once", { timeout: 120_000 }, async () => {
    const org = `limits_upgrade_${Date.now().toString(36)}`;
    await newCustomer(org);
    const key = await mintKey(org);
    await autumnControl(`/customers/${org}/balances/spans`, { granted: 50, next_reset_at: Date.now() + 86_400_000 });
    await exportUntilRefused(key);
    expect((await postJson(key)).status).toBe(429);
    const upgrade = await autumnControl(`/customers/${org}/balances/spans`, { granted: 100_000, webhook: "billing.updated" });
    expect(upgrade.webhook.delivered).toEqual({ status: 200 });
    await waitFor("the upgrade to reach the edge", () => postJson(key).then((r) => r.status), (status) => status === 200, 30_000);
    const usage = await json<{ features: Record<string, { value: number }> }>(await fetch(`${stack.autumnUrl}/_control/customers/${org}/usage`));
    expect(usage.features.spans!.value).toBeGreaterThanOrEqual(50);
  });
});
