import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { SIGNALS, sendWith } from "./exporters.ts";
import { admin, autumnControl, ingestAnswers, mintKey, newCustomer, orgState, sinkRequests, sleep, stack, waitFor } from "./stack.ts";

const unique = (prefix: string) => `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
const SUCCESS = 0;
const FAILED = 1;

async function payingOrg(prefix: string): Promise<{ org: string; key: string }> {
  const org = unique(prefix);
  await newCustomer(org);
  return { org, key: await mintKey(org) };
}

function logpush(key: string, dataset: string, body: string): Promise<Response> {
  return fetch(`${stack.ingestUrl}/v1/logpush/${dataset}`, {
    method: "POST",
    // What a job with destination_conf `...?header_Authorization=Bearer%20<key>` sends.
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-encoding": "gzip" },
    body: gzipSync(body),
  });
}

const HTTP_REQUEST = (i: number) =>
  JSON.stringify({ EdgeStartTimestamp: `17955153301234567${String(i).padStart(2, "0")}`, ClientRequestMethod: "GET", ClientRequestHost: "example.com", ClientRequestURI: `/p/${i}`, EdgeResponseStatus: 200 + i, RayID: `ray${i}` }).replace(/"(\d{19})"/, "$1");

describe("the OpenTelemetry SDK's exporters deliver through the ingest Worker", () => {
  it.each(SIGNALS.flatMap((signal) => [[signal, false] as const, [signal, true] as const]))("%s (gzip: %s)", async (signal, gzip) => {
    const { org, key } = await payingOrg("exporter");
    const outcome = await sendWith(signal, key, { gzip });
    expect(outcome.error?.message).toBeUndefined();
    expect(outcome.code).toBe(SUCCESS);
    const [received] = await sinkRequests(org);
    expect(received).toMatchObject({ path: `/v1/${signal.split("/")[0]}`, tenant: org, content_encoding: gzip ? "gzip" : null });
    expect(received!.content_type).toContain(signal.endsWith("json") ? "json" : "protobuf");
  });
});

describe("Cloudflare Logpush", () => {
  it("answers the validation request without forwarding, then maps a gzip NDJSON batch to OTLP logs", async () => {
    const { org, key } = await payingOrg("logpush");
    const validation = await logpush(key, "http_requests", '{"content":"tests"}');
    expect(validation.status).toBe(200);
    expect(await sinkRequests(org)).toHaveLength(0);

    const batch = Array.from({ length: 25 }, (_, i) => HTTP_REQUEST(i)).join("\n");
    const response = await logpush(key, "http_requests", batch);
    expect(await response.json()).toEqual({ status: "accepted", records: 25 });
    expect(await sinkRequests(org)).toMatchObject([{ path: "/v1/logs", tenant: org, content_type: "application/json" }]);
  });
});

describe("the whole life of an org that never pays", () => {
  it("paying → past due (overdue) → grace elapses (suspended, 402, no retries) → pays (accepted again)", { timeout: 60_000 }, async () => {
    const { org, key } = await payingOrg("lifecycle");
    expect((await sendWith("traces/proto", key)).code).toBe(SUCCESS);

    const pastDue = await autumnControl(`/customers/${org}/past-due`);
    expect(pastDue.webhook.delivered).toEqual({ status: 200 });
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "in_grace_period" });
    expect((await sendWith("traces/proto", key)).code).toBe(SUCCESS);

    // The object's alarm fires at the deadline, re-reads Autumn and suspends.
    await waitFor("suspension", () => orgState(org), (s) => s.state === "suspended", stack.gracePeriodMs + 10_000);

    // The edge learns of it within the isolate's state TTL (5 s; plus KV propagation in production).
    const suspendedAt = Date.now();
    await waitFor("the edge to refuse", () => sendWith("traces/proto", key), (o) => o.code === FAILED, 8_000);
    expect(Date.now() - suspendedAt).toBeLessThan(6_000);

    await sleep(1_500); // wrangler dev prints each request's line a moment after answering it (longer on a loaded machine)
    const before = ingestAnswers(402);
    const refused = await sendWith("traces/proto", key);
    expect(refused.code).toBe(FAILED);
    expect(refused.error?.code).toBe(402);
    expect(refused.error?.data).toContain("Pay the overdue invoice");
    // Final, not retryable: the exporter gave up after exactly one request.
    await sleep(1_500);
    expect(ingestAnswers(402) - before).toBe(1);
    expect((await sendWith("logs/json", key)).error?.code).toBe(402);
    expect((await logpush(key, "http_requests", HTTP_REQUEST(1))).status).toBe(402);

    const paid = await autumnControl(`/customers/${org}/pay`);
    expect(paid.webhook.delivered).toEqual({ status: 200 });
    expect(await orgState(org)).toMatchObject({ state: "ok" });
    // The gate re-asks the org's object about a suspension at most once a second.
    await sleep(1_000);
    expect((await sendWith("traces/proto", key)).code).toBe(SUCCESS);
  });

  it("an org whose only paid invoice is a $0 trial is suspended once the grace period is over", async () => {
    const { org, key } = await payingOrg("trial");
    await autumnControl(`/customers/${org}/trial-invoice`, { at: Date.now() - 20 * 86_400_000 });
    await autumnControl(`/customers/${org}/past-due`, { at: Date.now() - stack.gracePeriodMs - 1_000 });
    // First seen past the grace period: overdue for the minimum notice (1 s here), then suspended by the alarm.
    expect(await orgState(org)).toMatchObject({ state: "overdue", deadline_terms: { notice_ends_at: expect.any(String) } });
    await waitFor("suspension after the minimum notice", () => orgState(org), (s) => s.state === "suspended", 10_000);
    expect(await orgState(org)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid" });
    expect((await sendWith("metrics/proto", key)).error?.code).toBe(402);
  });

  it("a lapsed customer who paid before is never suspended by this policy", async () => {
    const { org, key } = await payingOrg("lapsed");
    await autumnControl(`/customers/${org}/invoices`, { status: "paid", total: 49, created_at: Date.now() - 60 * 86_400_000 });
    await autumnControl(`/customers/${org}/past-due`, { at: Date.now() - 10 * stack.gracePeriodMs });
    expect(await orgState(org)).toMatchObject({ state: "overdue", reason: "lapsed_customer" });
    expect((await sendWith("logs/proto", key)).code).toBe(SUCCESS);
  });
});

describe("what must change nothing", () => {
  it("a tampered webhook is refused and leaves every org as it was", async () => {
    const victim = unique("victim");
    await newCustomer(victim);
    await autumnControl(`/customers/${victim}/past-due?deliver=0`, { at: Date.now() - 10 * stack.gracePeriodMs });
    const other = unique("other");
    await newCustomer(other);
    const { webhook } = await autumnControl(`/customers/${other}/pay?deliver=0`);
    const response = await fetch(`${stack.billingUrl}/api/billing/autumn/webhook`, { method: "POST", headers: webhook.headers, body: webhook.body.replace(other, victim) });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: "invalid_signature" });
    // Had the forged event been processed, the victim (past due for ten grace periods) would be suspended.
    expect(await orgState(victim)).toMatchObject({ state: "ok", history: [] });
  });

  it("a revoked key is refused within a minute", { timeout: 90_000 }, async () => {
    const { org, key } = await payingOrg("revoked");
    expect((await sendWith("logs/json", key)).code).toBe(SUCCESS);
    const { body } = await admin<{ keys: { key_id: string }[] }>("GET", `/orgs/${org}/ingest-keys`);
    expect((await admin("DELETE", `/orgs/${org}/ingest-keys/${body.keys[0]!.key_id}`)).status).toBe(200);
    const revokedAt = Date.now();
    const outcome = await waitFor("the revocation to reach the edge", () => sendWith("logs/json", key), (o) => o.error?.code === 401, 65_000);
    expect(outcome.code).toBe(FAILED);
    expect(Date.now() - revokedAt).toBeLessThan(61_000);
  });
});
