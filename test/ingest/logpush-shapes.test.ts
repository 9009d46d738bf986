import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { toAnyValue } from "../../src/ingest/logpush/index.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { bodyOf, gzip, ingest, mintKey, sink } from "../support/ingest.ts";
import { DATASET_SAMPLES, DOCS_EXPECTED_NS, DOCS_FIELDS, DOCS_OUTPUTS, DOCUMENTED_SHAPES, renderBatch } from "./fixtures/logpush-samples.ts";

// Every output shape a Logpush job can be configured to send (issue 14), driven through the
// ingest Worker as Logpush sends it (gzip, key in a header) and read back at the sink.

let org: string;
let key: string;

beforeEach(async () => {
  gate.reset();
  org = uniqueOrg("lp-shape");
  key = (await mintKey(org)).key;
});
afterEach(deleteAllAlarms);

async function push(dataset: string, query: string, body: string) {
  return ingest(`/v1/logpush/${dataset}${query === "" ? "" : `?${query}`}`, {
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-encoding": "gzip" },
    body: await gzip(body),
  });
}

type Attribute = { key: string; value: Record<string, unknown> };
type ForwardedLog = { timeUnixNano: string; severityNumber: number; attributes: Attribute[] };

async function forwardedLogs(): Promise<ForwardedLog[]> {
  const requests = await sink.requests(org);
  expect(requests).toHaveLength(1);
  const otlp = JSON.parse(new TextDecoder().decode(bodyOf(requests[0]!)));
  return otlp.resourceLogs[0].scopeLogs[0].logRecords;
}

describe.each(DOCUMENTED_SHAPES)("Logpush output shape: $name", (shape) => {
  it.each(DATASET_SAMPLES)("$dataset: one OTLP record per source record, exact time, severity, every field an attribute", async (sample) => {
    const fields = [...new Set(sample.records.flatMap((record) => Object.keys(record)))];
    const body = renderBatch(sample.records, shape.options(fields, sample.timeField));
    const query = shape.query.replace("{fields}", fields.join(","));
    const response = await push(sample.dataset, query, body);
    expect(await response.json()).toEqual({ status: "accepted", records: sample.records.length });
    expect(response.status).toBe(200);

    const logs = await forwardedLogs();
    expect(logs).toHaveLength(sample.records.length);
    expect(logs.map((log) => log.timeUnixNano)).toEqual(sample.expectedNs);
    expect(logs.map((log) => log.severityNumber)).toEqual(sample.severities);
    logs.forEach((log, i) => {
      const record = sample.records[i]!;
      for (const [name, value] of Object.entries(record)) {
        if (value === null) continue;
        const attributeName = name === sample.timeField && shape.renamedTime ? shape.renamedTime : name;
        const attribute = log.attributes.find((a) => a.key === attributeName);
        expect(attribute, `${attributeName} of record ${i}`).toBeDefined();
        // Types survive every shape: CSV quotes strings and leaves numbers and booleans bare.
        expect(attribute!.value, `${attributeName} of record ${i}`).toEqual(toAnyValue(value));
      }
    });
  });
});

describe("Cloudflare's documented example outputs", () => {
  it.each([
    ["ndjson", "", DOCS_OUTPUTS.ndjson, "EdgeStartTimestamp"],
    ["a record_template renaming the fields", "time_field=timestamp", DOCS_OUTPUTS.renamed, "timestamp"],
    ["csv", `format=csv&fields=${DOCS_FIELDS.join(",")}`, DOCS_OUTPUTS.csv, "EdgeStartTimestamp"],
    ["csv with a header", "format=csv", DOCS_OUTPUTS.csvHeader, "EdgeStartTimestamp"],
    ["tsv with a header", "format=csv", DOCS_OUTPUTS.tsvHeader, "EdgeStartTimestamp"],
    ["json with nested object", "", DOCS_OUTPUTS.nestedEvents, "EdgeStartTimestamp"],
  ])("%s: three records at their own nanosecond, the time field kept as an attribute", async (_name, query, body, timeField) => {
    const response = await push("http_requests", query, body);
    expect(await response.json()).toEqual({ status: "accepted", records: 3 });
    const logs = await forwardedLogs();
    expect(logs.map((log) => log.timeUnixNano)).toEqual(DOCS_EXPECTED_NS);
    expect(logs.map((log) => log.attributes.find((a) => a.key === timeField)?.value)).toEqual(DOCS_EXPECTED_NS.map((ns) => ({ intValue: ns })));
    expect(logs[2]!.attributes.map((a) => a.key)).toHaveLength(3);
  });
});
