import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { gzip, ingest, mintKey, sink } from "../support/ingest.ts";
import { deeplyNested, DOCS_OUTPUTS, HTTP_REQUESTS_NDJSON } from "./fixtures/logpush-samples.ts";

// What Tollgate cannot read is refused with a final 400 naming what to fix, logged, and never
// forwarded (issue 14); a hostile nesting depth is one of those, not a crash (issue 10, item 2).

let org: string;
let key: string;

beforeEach(async () => {
  gate.reset();
  org = uniqueOrg("lp-refuse");
  key = (await mintKey(org)).key;
});
afterEach(deleteAllAlarms);

async function push(dataset: string, query: string, body: string | Uint8Array) {
  return ingest(`/v1/logpush/${dataset}${query === "" ? "" : `?${query}`}`, {
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-encoding": "gzip" },
    body: await gzip(body),
  });
}

describe("a record nested 5,000 deep (issue 10, item 2)", () => {
  it.each(["unix", "unixnano"] as const)("is refused with a final 400, not a retryable 5xx, and nothing is forwarded (%s timestamps)", async (time) => {
    const compressed = await gzip(deeplyNested(5000, time));
    expect(compressed.byteLength).toBeLessThan(2000);
    const response = await push("http_requests", "", deeplyNested(5000, time));
    expect(response.status).toBe(400);
    expect(response.headers.get("retry-after")).toBeNull();
    expect(await response.json()).toMatchObject({ error: "nesting_too_deep", message: expect.stringMatching(/64/) });
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it.each([
    ["a JSON array", (record: string) => `[${record}]`],
    ["a wrapped batch", (record: string) => `{"events":[${record}]}`],
    ["a second NDJSON line", (record: string) => `${HTTP_REQUESTS_NDJSON.unixnano}\n${record}`],
    ["CSV", (record: string) => `"x",${record.slice(record.indexOf('{"a"'), -1)}`],
  ])("is refused the same way inside %s", async (name, wrap) => {
    const query = name === "CSV" ? "format=csv&fields=RayID,Nested" : "";
    const response = await push("http_requests", query, wrap(deeplyNested(100_000)));
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "nesting_too_deep" });
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("keeps a record nested within the limit, its deep value as one JSON string attribute", async () => {
    const response = await push("http_requests", "", deeplyNested(60));
    expect(await response.json()).toEqual({ status: "accepted", records: 1 });
    const [forwarded] = await sink.requests(org);
    const otlp = JSON.parse(atob(forwarded!.body_base64));
    const nested = otlp.resourceLogs[0].scopeLogs[0].logRecords[0].attributes.find((a: { key: string }) => a.key === "Nested");
    expect(nested.value.stringValue).toBe(`${'{"a":'.repeat(60)}1${"}".repeat(60)}`);
  });
});

describe("validation requests", () => {
  it.each([
    ["the documented {\"content\":\"tests\"}", "", '{"content":"tests"}'],
    ["a bare test body", "", "test"],
    ["a bare test body with a newline", "", "test\n"],
    ["the documented body on a csv destination", "format=csv&fields=ClientIP", '{"content":"tests"}'],
  ])("answers %s with 200 and forwards nothing", async (_name, query, body) => {
    const response = await push("http_requests", query, body);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok", validation: true });
    expect(await sink.requests(org)).toHaveLength(0);
  });
});

describe("bodies that parse but cannot be read as a batch", () => {
  it.each([
    ["an empty JSON array", "", "[]", "no_records", /no records/],
    ["an empty wrapped batch", "", '{"events":[]}', "no_records", /no records/],
    ["records without fields", "", "{}\n{}\n", "no_records", /no records/],
    ["an object holding two arrays", "", '{"events":[{"a":1}],"more":[{"b":2}]}', "unrecognised_batch", /batch_prefix/],
    ["a wrapper around non-objects", "", '{"events":[1,2,3]}', "unrecognised_batch", /batch_prefix/],
    ["an array line among records", "", '{"a":1}\n[1,2]\n', "unrecognised_batch", /line 2/],
    ["a lone number", "", "42", "unrecognised_batch", /output_type/],
    ["text between records", "", '{"a":1}\nnot json\n{"b":2}\n', "invalid_payload", /line 2/],
    ["records separated inconsistently", "", '{"a":1};{"b":2}|{"c":3}', "invalid_payload", /record_delimiter/],
    ["a malformed record", "", '{"a":1}\n{"b":\n', "invalid_payload", /line 2/],
    ["csv without field names", "format=csv", DOCS_OUTPUTS.csv, "csv_fields_unknown", /fields=/],
    ["csv rows that do not match the fields", "format=csv&fields=ClientIP,RayID", DOCS_OUTPUTS.csv, "csv_fields_mismatch", /line 1 has 3 fields/],
    ["csv sent to a JSON destination", "", DOCS_OUTPUTS.csv, "invalid_payload", /format=csv/],
  ])("refuses %s with 400 %s, naming what to fix, and forwards nothing", async (_name, query, body, code, message) => {
    const response = await push("http_requests", query, body);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: code, message: expect.stringMatching(message) });
    expect(await sink.requests(org)).toHaveLength(0);
  });
});

describe("destination_conf query parameters", () => {
  it.each([
    ["an unknown format", "format=xml", "invalid_format"],
    ["an empty format", "format=", "invalid_format"],
    ["empty fields", "format=csv&fields=", "invalid_fields"],
    ["a blank field name", "format=csv&fields=ClientIP,,RayID", "invalid_fields"],
    ["a repeated field name", "format=csv&fields=RayID,RayID", "invalid_fields"],
    ["fields without format=csv", "fields=ClientIP,RayID", "invalid_fields"],
    ["an empty time_field", "time_field=", "invalid_time_field"],
    ["a repeated parameter", "format=csv&format=ndjson", "invalid_format"],
  ])("refuses %s with 400 %s before reading the body", async (_name, query, code) => {
    const response = await push("http_requests", query, HTTP_REQUESTS_NDJSON.unixnano);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: code, message: expect.any(String) });
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("ignores parameters it does not know (Cloudflare's own examples add tags=)", async () => {
    const response = await push("http_requests", "tags=host:example.com,dataset:http_requests", HTTP_REQUESTS_NDJSON.unixnano);
    expect(await response.json()).toEqual({ status: "accepted", records: 1 });
  });
});
