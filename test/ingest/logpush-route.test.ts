import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { bodyOf, gzip, ingest, mintKey, override, sink } from "../support/ingest.ts";
import { FIREWALL_EVENT, HTTP_REQUESTS_NDJSON } from "./fixtures/logpush-samples.ts";

let org: string;
let key: string;

beforeEach(async () => {
  gate.reset();
  org = uniqueOrg("logpush");
  key = (await mintKey(org)).key;
});
afterEach(deleteAllAlarms);

/** As Logpush sends it: gzip, with the header set through destination_conf's header_Authorization. */
async function push(dataset: string, body: string | Uint8Array, headers: Record<string, string> = {}) {
  return ingest(`/v1/logpush/${dataset}`, { headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-encoding": "gzip", ...headers }, body: await gzip(body) });
}

async function forwardedLogs() {
  const requests = await sink.requests(org);
  return requests.map((r) => ({ record: r, otlp: JSON.parse(new TextDecoder().decode(bodyOf(r))) }));
}

describe("POST /v1/logpush/{dataset}", () => {
  it("maps a gzip NDJSON batch to OTLP JSON logs on the upstream's /v1/logs, with the tenant header", async () => {
    const batch = [HTTP_REQUESTS_NDJSON.unixnano, "", HTTP_REQUESTS_NDJSON.rfc3339, HTTP_REQUESTS_NDJSON.unix].join("\n");
    const response = await push("http_requests", batch);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "accepted", records: 3 });
    const [forwarded] = await forwardedLogs();
    expect(forwarded!.record).toMatchObject({ path: "/v1/logs", tenant: org, content_type: "application/json" });
    const logRecords = forwarded!.otlp.resourceLogs[0].scopeLogs[0].logRecords;
    expect(logRecords.map((l: { timeUnixNano: string }) => l.timeUnixNano)).toEqual(["1795515330123456789", "1795515330123456789", "1795515330000000000"]);
    expect(forwarded!.otlp.resourceLogs[0].resource.attributes).toContainEqual({ key: "tollgate.org_id", value: { stringValue: org } });
  });

  it("accepts a JSON array and a plain (not gzipped) body", async () => {
    const response = await ingest("/v1/logpush/firewall_events", { key, headers: { "content-type": "application/json" }, body: JSON.stringify([FIREWALL_EVENT, FIREWALL_EVENT]) });
    expect(await response.json()).toEqual({ status: "accepted", records: 2 });
  });

  it("answers the job's validation request with 200 and forwards nothing", async () => {
    const response = await push("http_requests", '{"content":"tests"}');
    expect(response.status).toBe(200);
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("refuses a suspended org with 402 and a message Logpush shows in the job's error", async () => {
    await override(org, "suspend");
    const response = await push("http_requests", '{"content":"tests"}');
    expect(response.status).toBe(402);
    expect(await response.json()).toMatchObject({ error: "billing_suspended", org_id: org, message: expect.stringMatching(/pay the overdue invoice/i) });
  });

  it.each([
    ["malformed NDJSON", () => push("http_requests", `${HTTP_REQUESTS_NDJSON.unix}\n{oops`), 400, "invalid_payload"],
    ["bad gzip", () => ingest("/v1/logpush/http_requests", { key, headers: { "content-encoding": "gzip" }, body: "not gzip" }), 400, "invalid_gzip"],
    ["a gzip bomb", async () => push("http_requests", new Uint8Array(8 * 1024 * 1024)), 413, "payload_too_large"],
    ["an invalid dataset", () => push("HTTP.Requests", "{}"), 400, "invalid_dataset"],
    ["an unsupported encoding", () => ingest("/v1/logpush/http_requests", { key, headers: { "content-encoding": "br" }, body: "x" }), 415, "unsupported_encoding"],
    ["no key", () => ingest("/v1/logpush/http_requests", { body: "x" }), 401, "missing_ingest_key"],
  ] as const)("%s", async (_name, send, status, error) => {
    const response = await send();
    expect(response.status).toBe(status);
    expect(await response.json()).toMatchObject({ error, message: expect.any(String) });
    expect(await sink.requests(org)).toHaveLength(0);
  });
});
