import { describe, expect, it } from "vitest";
import { isValidationRequest, parseLogpushBody, parseTimestamp, toOtlpLogs, type LogpushRecord } from "../../src/ingest/logpush-records.ts";
import { FIREWALL_EVENT, HTTP_REQUEST_FIELDS, HTTP_REQUESTS_NDJSON, INSTANT, WORKERS_TRACE_EVENT } from "./fixtures/logpush.ts";

const OBSERVED = 1795515400000000000n;

function records(text: string): LogpushRecord[] {
  const parsed = parseLogpushBody(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.records;
}

function mapOne(dataset: string, record: LogpushRecord) {
  const logs = toOtlpLogs([record], { dataset, orgId: "org_a", observedAtNs: OBSERVED });
  return logs.resourceLogs[0]!.scopeLogs[0]!.logRecords[0]!;
}

describe("parsing Logpush bodies", () => {
  it("reads NDJSON with blank lines and CRLF", () => {
    const body = `${HTTP_REQUESTS_NDJSON.unix}\r\n\r\n${HTTP_REQUESTS_NDJSON.rfc3339}\n\n`;
    expect(records(body)).toHaveLength(2);
  });

  it("reads a JSON array and a single pretty-printed object", () => {
    expect(records(JSON.stringify([FIREWALL_EVENT, FIREWALL_EVENT]))).toHaveLength(2);
    expect(records(JSON.stringify(FIREWALL_EVENT, null, 2))).toEqual([FIREWALL_EVENT]);
  });

  it("keeps unixnano integers above 2^53 exact", () => {
    expect(records(HTTP_REQUESTS_NDJSON.unixnano)[0]!.EdgeStartTimestamp).toBe(1795515330123456789n);
  });

  it.each([
    ["an empty body", "  \n ", /empty/],
    ["a malformed line", `${HTTP_REQUESTS_NDJSON.unix}\n{"broken":\n${HTTP_REQUESTS_NDJSON.unix}`, /line 2/],
    ["a line that is not an object", `${HTTP_REQUESTS_NDJSON.unix}\n42`, /line 2 is not a JSON object/],
    ["an array of non-objects", "[1,2]", /only objects/],
    ["a bare string", '"hello"', /NDJSON/],
  ])("refuses %s with a message", (_name, body, message) => {
    const parsed = parseLogpushBody(body);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toMatch(message);
  });
});

describe("the validation request", () => {
  it.each(['{"content":"tests"}', '{"content":"test"}', '[{"content":"tests"}]'])("recognises %s", (body) => {
    expect(isValidationRequest(records(body))).toBe(true);
  });

  it.each(['{"content":"tests","RayID":"x"}', '{"content":1}', '{"content":"tests"}\n{"content":"tests"}', '{"Content":"tests"}'])("does not mistake %s for one", (body) => {
    expect(isValidationRequest(records(body))).toBe(false);
  });
});

describe("timestamps to unix nanoseconds", () => {
  it.each([
    ["RFC 3339 with nanoseconds", "2026-11-24T10:15:30.123456789Z", INSTANT.ns],
    ["RFC 3339 with an offset", "2026-11-24T11:15:30.5+01:00", 1795515330500000000n],
    ["RFC 3339 without fraction", "2026-11-24T10:15:30Z", 1795515330000000000n],
    ["unix seconds", 1795515330, 1795515330000000000n],
    ["unix seconds as a string", "1795515330", 1795515330000000000n],
    ["fractional unix seconds", "1795515330.25", 1795515330250000000n],
    ["unix milliseconds (not mistaken for seconds)", 1795515330123, 1795515330123000000n],
    ["unix microseconds", 1795515330123456, 1795515330123456000n],
    ["unix nanoseconds as bigint", INSTANT.ns, INSTANT.ns],
    ["unix nanoseconds as a string", "1795515330123456789", INSTANT.ns],
  ])("%s", (_name, value, expected) => {
    expect(parseTimestamp(value)).toBe(expected);
  });

  it.each([-1, "yesterday", "2026-13-45T99:00:00Z", null, {}, Number.NaN])("refuses %s", (value) => {
    expect(parseTimestamp(value)).toBeNull();
  });
});

describe("mapping to OTLP logs", () => {
  it.each(Object.entries(HTTP_REQUESTS_NDJSON))("http_requests in %s keeps the event time", (format, line) => {
    const expected = { unixnano: INSTANT.ns, unix: 1795515330000000000n, rfc3339: INSTANT.ns, unixMillis: 1795515330123000000n }[format as keyof typeof HTTP_REQUESTS_NDJSON];
    expect(mapOne("http_requests", records(line)[0]!).timeUnixNano).toBe(expected.toString());
  });

  it("http_requests: a readable body, severity from the status, the other fields as typed attributes", () => {
    const log = mapOne("http_requests", records(HTTP_REQUESTS_NDJSON.unixnano)[0]!);
    expect(log).toMatchObject({ body: { stringValue: "GET example.com/checkout?step=2 -> 503" }, severityNumber: 17, severityText: "ERROR", observedTimeUnixNano: OBSERVED.toString() });
    expect(log.attributes).toContainEqual({ key: "EdgeResponseStatus", value: { intValue: "503" } });
    expect(log.attributes).toContainEqual({ key: "ClientIP", value: { stringValue: "203.0.113.7" } });
    expect(log.attributes).toContainEqual({ key: "EdgeEndTimestamp", value: { intValue: "1795515330223456789" } });
    expect(log.attributes.map((a) => a.key)).not.toContain("EdgeStartTimestamp");
  });

  it.each([
    [399, 9, "INFO"],
    [400, 13, "WARN"],
    [499, 13, "WARN"],
    [500, 17, "ERROR"],
  ])("status %i → severity %i", (status, number, text) => {
    expect(mapOne("http_requests", { ...HTTP_REQUEST_FIELDS, EdgeResponseStatus: status })).toMatchObject({ severityNumber: number, severityText: text });
  });

  it("workers_trace_events: millisecond time, severity from Outcome, nested fields as JSON", () => {
    const log = mapOne("workers_trace_events", WORKERS_TRACE_EVENT);
    expect(log).toMatchObject({ timeUnixNano: "1795515330123000000", severityNumber: 17, body: { stringValue: "checkout-api POST https://api.example.com/orders -> exception" } });
    expect(log.attributes).toContainEqual({ key: "Event", value: { stringValue: JSON.stringify(WORKERS_TRACE_EVENT.Event) } });
    expect(mapOne("workers_trace_events", { ...WORKERS_TRACE_EVENT, Outcome: "ok" })).toMatchObject({ severityNumber: 9, severityText: "INFO" });
    expect(mapOne("workers_trace_events", { ...WORKERS_TRACE_EVENT, Outcome: "canceled" })).toMatchObject({ severityNumber: 13 });
  });

  it("other datasets: generic records with their Datetime and a summary body", () => {
    const log = mapOne("firewall_events", FIREWALL_EVENT);
    expect(log).toMatchObject({ timeUnixNano: "1795515330000000000", severityNumber: 0, body: { stringValue: "firewall_events: Action=block ClientIP=198.51.100.9 RayID=8f2c1a7b9d3e4f03 Source=waf" } });
    expect(log).not.toHaveProperty("severityText");
  });

  it("falls back to the observed time when no timestamp parses", () => {
    expect(mapOne("dns_logs", { QueryName: "example.com" }).timeUnixNano).toBe(OBSERVED.toString());
  });

  it("names Cloudflare, the dataset and the org on the resource", () => {
    const logs = toOtlpLogs([FIREWALL_EVENT], { dataset: "firewall_events", orgId: "org_a", observedAtNs: OBSERVED });
    expect(logs.resourceLogs[0]!.resource.attributes).toEqual([
      { key: "cloud.provider", value: { stringValue: "cloudflare" } },
      { key: "cloudflare.dataset", value: { stringValue: "firewall_events" } },
      { key: "tollgate.org_id", value: { stringValue: "org_a" } },
    ]);
    expect(logs.resourceLogs[0]!.scopeLogs[0]!.scope).toEqual({ name: "tollgate.logpush" });
  });

  it("parses and maps a 1,000-record batch", () => {
    const body = Array.from({ length: 1_000 }, () => HTTP_REQUESTS_NDJSON.unixnano).join("\n");
    const logs = toOtlpLogs(records(body), { dataset: "http_requests", orgId: "org_a", observedAtNs: OBSERVED });
    expect(logs.resourceLogs[0]!.scopeLogs[0]!.logRecords).toHaveLength(1_000);
  });
});
