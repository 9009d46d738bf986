/// <reference types="vite/client" />
import { describe, expect, it } from "vitest";
import {
  isValidationRequest,
  parseLogpushBody,
  parseTimestamp,
  toOtlpLogs,
  unitByMagnitude,
  type LogpushRecord,
  type LogRecordJson,
} from "../../src/ingest/logpush/index.ts";
import firewallEvents from "./fixtures/logpush/firewall_events.ndjson?raw";
import httpRfc3339 from "./fixtures/logpush/http_requests.rfc3339.ndjson?raw";
import httpUnix from "./fixtures/logpush/http_requests.unix.ndjson?raw";
import httpUnixMs from "./fixtures/logpush/http_requests.unixms.ndjson?raw";
import httpUnixNano from "./fixtures/logpush/http_requests.unixnano.ndjson?raw";
import workersTraceEvents from "./fixtures/logpush/workers_trace_events.ndjson?raw";

// 2025-03-14T15:09:26.535897932Z (1741964966 s checked with `date -u -d ... +%s`).
const INSTANT_NS = 1741964966535897932n;
const OBSERVED = 1741970000000000000n;
const CONTEXT = { orgId: "org_123", observedAtNs: OBSERVED };

function records(text: string): LogpushRecord[] {
  const parsed = parseLogpushBody(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.records;
}

function refusal(text: string): { code: string; message: string } {
  const parsed = parseLogpushBody(text);
  if (parsed.ok) throw new Error(`expected a parse failure, got ${parsed.records.length} records`);
  return { code: parsed.code, message: parsed.message };
}
const failure = (text: string): string => refusal(text).message;

function logRecords(dataset: string, input: LogpushRecord[]): LogRecordJson[] {
  return toOtlpLogs(input, { dataset, ...CONTEXT }).resourceLogs[0]!.scopeLogs[0]!.logRecords;
}

const one = (dataset: string, record: LogpushRecord): LogRecordJson => logRecords(dataset, [record])[0]!;
const attribute = (log: LogRecordJson, key: string) => log.attributes.find((a) => a.key === key)?.value;

describe("parseLogpushBody", () => {
  it("reads each NDJSON fixture, one record a line", () => {
    expect(records(httpUnixNano)).toHaveLength(3);
    expect(records(httpUnix)).toHaveLength(2);
    expect(records(httpRfc3339)).toHaveLength(3);
    expect(records(httpUnixMs)).toHaveLength(2);
    expect(records(workersTraceEvents)).toHaveLength(4);
    expect(records(firewallEvents)).toHaveLength(2);
    expect(records(httpUnixNano).map((r) => r.RayID)).toEqual(["8fd2c1a7b9d3e4f0", "8fd2c1a7c0a1b2c3", "8fd2c1a7d4e5f601"]);
  });

  it("keeps unixnano integers above 2^53 exact as bigint, and safe numbers as numbers", () => {
    const [first] = records(httpUnixNano);
    expect(first!.EdgeStartTimestamp).toBe(INSTANT_NS);
    expect(first!.EdgeEndTimestamp).toBe(1741964966587123456n);
    expect(first!.EdgeResponseStatus).toBe(200);
    // Through a JS number the last digits would be gone.
    expect(BigInt(Number(INSTANT_NS))).not.toBe(INSTANT_NS);
    const [nested] = records('{"a":{"b":[12345678901234567890,-9007199254740993,9007199254740991,1.5,1e20]},"s":"12345678901234567890"}');
    expect(nested).toEqual({ a: { b: [12345678901234567890n, -9007199254740993n, 9007199254740991, 1.5, 1e20] }, s: "12345678901234567890" });
  });

  it("keeps a flat record's integers above 2^53 exact without a reviver, and leaves everything else as JSON.parse reads it", () => {
    // The flat-record path (json-text.ts parseFlatExact): long digit runs inside strings, in
    // fractions and exponents, negative integers, duplicate keys (the last wins) and escaped keys.
    const text =
      '{"t":1741964966535897932,"n":-9007199254740993,"s":"x:12345678901234567890,","f":1234567890123456789.5,"e":1e1234567890123456,' +
      '"safe":9007199254740991,"d":12345678901234567891,"d":"later","k\\u0065y":12345678901234567892,"z":0.12345678901234567891}';
    const [flat] = records(text);
    expect(flat).toEqual({
      t: 1741964966535897932n,
      n: -9007199254740993n,
      s: "x:12345678901234567890,",
      f: 1234567890123456789.5,
      e: Infinity,
      safe: 9007199254740991,
      d: "later",
      key: 12345678901234567892n,
      z: 0.12345678901234567891,
    });
    const [twice] = records('{"d":12345678901234567891,"d":12345678901234567893}');
    expect(twice).toEqual({ d: 12345678901234567893n });
  });

  it("tolerates CRLF, blank lines, leading/trailing whitespace and a BOM", () => {
    const lines = httpUnix.trim().split("\n");
    const body = `\uFEFF\r\n${lines[0]}\r\n\r\n   \r\n${lines[1]}\r\n\r\n`;
    expect(records(body).map((r) => r.EdgeStartTimestamp)).toEqual([1741964966, 1741965002]);
    expect(records(body)[1]!.ZoneName).toBe("example.com");
  });

  it("reads a JSON array of objects, big integers included", () => {
    const parsed = records(`[\n  {"Datetime":1741964966535897932,"Action":"block"},\n  {"Datetime":1741964966535897933,"Action":"log"}\n]`);
    expect(parsed).toEqual([
      { Datetime: 1741964966535897932n, Action: "block" },
      { Datetime: 1741964966535897933n, Action: "log" },
    ]);
    // An empty batch is nothing Logpush sends: refused, not forwarded as nothing.
    expect(refusal("[]").code).toBe("no_records");
  });

  it("reads a single object, one line or pretty-printed", () => {
    const record = { EdgeStartTimestamp: 1741964966, ClientRequestHost: "example.com", Nested: { a: [1, 2] } };
    expect(records(JSON.stringify(record))).toEqual([record]);
    expect(records(`${JSON.stringify(record, null, 2)}\n`)).toEqual([record]);
    const pretty = '{\r\n  "EdgeStartTimestamp": 1741964966535897932,\r\n  "RayID": "x"\r\n}\r\n';
    expect(records(pretty)).toEqual([{ EdgeStartTimestamp: INSTANT_NS, RayID: "x" }]);
  });

  it.each([
    ["an empty body", "", /empty/],
    ["a whitespace-only body", " \r\n\n\t", /empty/],
  ])("refuses %s", (_name, body, message) => {
    expect(failure(body)).toMatch(message);
  });

  it("names the line of a malformed NDJSON line", () => {
    const lines = httpUnixNano.trim().split("\n");
    expect(failure(`${lines[0]}\n${lines[1]}\n{"EdgeStartTimestamp":17419649\n${lines[2]}`)).toMatch(/^line 3: a JSON object starts here but never ends/);
    expect(failure(`${lines[0]}\n{"EdgeStartTimestamp":17419649,}\n${lines[2]}`)).toMatch(/^line 2 is not valid JSON/);
    // Physical line numbers: blank lines and CRLF count as lines.
    expect(failure(`${lines[0]}\r\n\r\n${lines[1]}\r\nnot json\r\n`)).toMatch(/^line 4: text after the last record is not JSON/);
  });

  it.each([
    ["a number", "42", "invalid_payload", /^line 2: text between records is not JSON: "42"/],
    ["an array", "[1,2]", "unrecognised_batch", /^line 2 is an array, not a record/],
    ["null", "null", "invalid_payload", /^line 2: text between records is not JSON: "null"/],
    ["a string", '"hello"', "invalid_payload", /^line 2: text between records is not JSON/],
  ])("refuses an NDJSON line that is %s, naming the line", (_name, line, code, message) => {
    expect(refusal(`{"a":1}\n${line}\n{"b":2}`)).toEqual({ code, message: expect.stringMatching(message) });
  });

  it("refuses bodies that are a lone non-object, naming output_type", () => {
    expect(refusal('"hello"')).toEqual({ code: "unrecognised_batch", message: expect.stringMatching(/the body is a string, not Logpush records; check the job's output_options.output_type/) });
    expect(refusal("\n\n42\n")).toEqual({ code: "unrecognised_batch", message: expect.stringMatching(/the body is a number/) });
  });

  it("refuses a JSON array holding non-objects, naming the element", () => {
    expect(failure('[{"a":1},{"b":2},3]')).toMatch(/element 2 of the JSON array is a number, not a record \(a JSON object\)/);
    expect(failure('[{"a":1},[]]')).toMatch(/element 1 of the JSON array is an array/);
    expect(failure('[{"a":1},')).toMatch(/a JSON array starts here but never ends/);
  });

  it("refuses a broken pretty-printed object and plain text", () => {
    expect(failure('{\n  "a": 1,\n  "b": \n}')).toMatch(/^line 1 is not valid JSON/);
    expect(refusal("hello world")).toEqual({ code: "invalid_payload", message: expect.stringMatching(/^line 1 is not JSON; if the job's output_options.output_type is csv, add format=csv/) });
  });

  it("reads a 20,000-record batch (Cloudflare's upper max_upload_records setting scale), every record exact", () => {
    // No timing here (house rule): the framing is one linear scan plus one JSON.parse per record.
    const line = httpUnixNano.trim().split("\n")[0]!;
    const parsed = records(Array.from({ length: 20_000 }, () => line).join("\n"));
    expect(parsed).toHaveLength(20_000);
    expect(parsed[19_999]!.EdgeStartTimestamp).toBe(INSTANT_NS);
    const logs = toOtlpLogs(parsed, { dataset: "http_requests", ...CONTEXT }).resourceLogs[0]!.scopeLogs[0]!.logRecords;
    expect(logs).toHaveLength(20_000);
    expect(logs[19_999]!.timeUnixNano).toBe("1741964966535897932");
  });
});

describe("isValidationRequest", () => {
  it.each(['{"content":"tests"}', '{"content":"test"}', '{"content":"tests"}\n', '[{"content":"tests"}]'])("recognises %j", (body) => {
    expect(isValidationRequest(records(body))).toBe(true);
  });

  it.each([
    ["an extra key", [{ content: "tests", EdgeStartTimestamp: 1 }]],
    ["two records", [{ content: "tests" }, { content: "tests" }]],
    ["no records", []],
    ["a non-string content", [{ content: 1 }]],
    ["a null content", [{ content: null }]],
    ["an object content", [{ content: { a: 1 } }]],
    ["another key name", [{ Content: "tests" }]],
    ["a real record", [{ ClientRequestHost: "example.com" }]],
  ])("rejects %s", (_name, input) => {
    expect(isValidationRequest(input as LogpushRecord[])).toBe(false);
  });
});

describe("parseTimestamp", () => {
  it("reads RFC 3339 keeping every nanosecond digit", () => {
    expect(parseTimestamp("2025-03-14T15:09:26.535897932Z")).toBe(INSTANT_NS);
    expect(parseTimestamp("2025-03-14T15:09:26Z")).toBe(1741964966000000000n);
    expect(parseTimestamp("2025-03-14T15:09:26.5Z")).toBe(1741964966500000000n);
    expect(parseTimestamp("2025-03-14T15:09:26.535Z")).toBe(1741964966535000000n);
    expect(parseTimestamp("2025-03-14T15:09:26.535897Z")).toBe(1741964966535897000n);
    expect(parseTimestamp("2025-03-14T15:09:26.000000001Z")).toBe(1741964966000000001n);
    // Beyond nanoseconds: truncated, not rounded.
    expect(parseTimestamp("2025-03-14T15:09:26.535897932999Z")).toBe(INSTANT_NS);
    expect(parseTimestamp("2025-03-14t15:09:26.535897932z")).toBe(INSTANT_NS);
    expect(parseTimestamp("2025-03-14 15:09:26.535897932Z")).toBe(INSTANT_NS);
  });

  it("applies RFC 3339 offsets", () => {
    expect(parseTimestamp("2025-03-14T17:09:26.535897932+02:00")).toBe(INSTANT_NS);
    expect(parseTimestamp("2025-03-14T09:39:26.535897932-05:30")).toBe(INSTANT_NS);
    expect(parseTimestamp("2025-03-14T15:09:26.535897932+00:00")).toBe(INSTANT_NS);
    expect(parseTimestamp("2025-03-15T00:09:26.535897932+0900")).toBe(INSTANT_NS);
  });

  it("checks the calendar", () => {
    expect(parseTimestamp("2024-02-29T23:59:59Z")).toBe(1709251199000000000n);
    expect(parseTimestamp("1970-01-01T00:00:00Z")).toBe(0n);
    expect(parseTimestamp("2000-03-01T00:00:00Z")).toBe(951868800000000000n);
    for (const bad of [
      "2025-02-29T00:00:00Z",
      "2025-04-31T00:00:00Z",
      "2025-13-01T00:00:00Z",
      "2025-00-10T00:00:00Z",
      "2025-03-14T24:00:00Z",
      "2025-03-14T15:60:00Z",
      "2025-03-14T15:09:26",
      "2025-03-14",
      "2025-03-14T15:09:26.Z",
      "2025-03-14T15:09:26+25:00",
      "1969-12-31T23:59:59Z",
    ]) {
      expect(parseTimestamp(bad), bad).toBeNull();
    }
  });

  it("reads unix seconds, milliseconds, microseconds and nanoseconds by magnitude", () => {
    expect(parseTimestamp(1741964966)).toBe(1741964966000000000n);
    expect(parseTimestamp(1741964966535)).toBe(1741964966535000000n);
    expect(parseTimestamp(1741964966535897)).toBe(1741964966535897000n);
    expect(parseTimestamp(INSTANT_NS)).toBe(INSTANT_NS);
    expect(parseTimestamp("1741964966")).toBe(1741964966000000000n);
    expect(parseTimestamp("1741964966535")).toBe(1741964966535000000n);
    expect(parseTimestamp("1741964966535897932")).toBe(INSTANT_NS);
    expect(parseTimestamp(" 1741964966535897932 ")).toBe(INSTANT_NS);
    expect(parseTimestamp(1741964966n)).toBe(1741964966000000000n);
    expect(parseTimestamp(1741964966535n)).toBe(1741964966535000000n);
  });

  it("does not mistake milliseconds for seconds (the old gateway's bug)", () => {
    // Read as seconds this would be year ~57170 and out of range.
    expect(parseTimestamp(1741964966535)).not.toBe(1741964966535n * 1_000_000_000n);
    expect(parseTimestamp(1741964966535)! / 1_000_000_000n).toBe(1741964966n);
  });

  it("puts the unit boundaries at 1e11, 1e14 and 1e17", () => {
    expect(unitByMagnitude(99_999_999_999n)).toBe("s");
    expect(unitByMagnitude(100_000_000_000n)).toBe("ms");
    expect(unitByMagnitude(99_999_999_999_999n)).toBe("ms");
    expect(unitByMagnitude(100_000_000_000_000n)).toBe("us");
    expect(unitByMagnitude(99_999_999_999_999_999n)).toBe("us");
    expect(unitByMagnitude(100_000_000_000_000_000n)).toBe("ns");
    expect(parseTimestamp(100_000_000_000)).toBe(100_000_000_000_000_000n); // 1e11 ms = 1973-03-03T09:46:40Z
    expect(parseTimestamp(100_000_000_000_000)).toBe(100_000_000_000_000_000n); // 1e14 µs, same instant
    expect(parseTimestamp(100_000_000_000_000_000n)).toBe(100_000_000_000_000_000n);
    expect(parseTimestamp(100_000_000)).toBe(100_000_000_000_000_000n); // 1e8 s, same instant
  });

  it("keeps fractional digits of unix values", () => {
    expect(parseTimestamp(1741964966.5)).toBe(1741964966500000000n);
    expect(parseTimestamp(1741964966.535897)).toBe(1741964966535897000n);
    expect(parseTimestamp("1741964966.535897932")).toBe(INSTANT_NS);
    expect(parseTimestamp(1741964966535.25)).toBe(1741964966535250000n); // milliseconds with a fraction
    expect(parseTimestamp("1741964966535.897932")).toBe(INSTANT_NS);
  });

  it("honours a forced unit", () => {
    expect(parseTimestamp(86_400_000, "ms")).toBe(86_400_000_000_000n);
    expect(parseTimestamp(86_400_000)).toBe(86_400_000_000_000_000n); // by magnitude: seconds
    expect(parseTimestamp("1741964966535", "ms")).toBe(1741964966535000000n);
    expect(parseTimestamp(5n, "us")).toBe(5000n);
  });

  it.each([
    ["a negative number", -1],
    ["a negative bigint", -1n],
    ["a negative string", "-1741964966"],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["an empty string", ""],
    ["text", "yesterday"],
    ["an exponent string", "1.7e9"],
    ["a boolean", true],
    ["null", null],
    ["undefined", undefined],
    ["an object", { seconds: 1 }],
    ["a value past int64 nanoseconds", 99_999_999_999],
  ])("refuses %s", (_name, value) => {
    expect(parseTimestamp(value)).toBeNull();
  });
});

describe("toOtlpLogs", () => {
  it("builds one resource and one scope with the Cloudflare, dataset and org attributes", () => {
    const request = toOtlpLogs(records(httpUnixNano), { dataset: "http_requests", ...CONTEXT });
    expect(request.resourceLogs).toHaveLength(1);
    expect(request.resourceLogs[0]!.resource.attributes).toEqual([
      { key: "cloud.provider", value: { stringValue: "cloudflare" } },
      { key: "cloudflare.dataset", value: { stringValue: "http_requests" } },
      { key: "tollgate.org_id", value: { stringValue: "org_123" } },
    ]);
    expect(request.resourceLogs[0]!.scopeLogs).toHaveLength(1);
    expect(request.resourceLogs[0]!.scopeLogs[0]!.scope).toEqual({ name: "tollgate.logpush" });
    expect(request.resourceLogs[0]!.scopeLogs[0]!.logRecords).toHaveLength(3);
  });

  it("serialises to OTLP JSON: no bigints left, 64-bit times as strings", () => {
    const request = toOtlpLogs(records(`${httpUnixNano}${workersTraceEvents}${firewallEvents}`), { dataset: "http_requests", ...CONTEXT });
    const json = JSON.parse(JSON.stringify(request));
    expect(json).toEqual(request);
    expect(json.resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano).toBe("1741964966535897932");
    expect(json.resourceLogs[0].scopeLogs[0].logRecords[0].observedTimeUnixNano).toBe("1741970000000000000");
  });

  it.each([
    ["unixnano", httpUnixNano, ["1741964966535897932", "1741964967000000001", "1741965002999999999"]],
    ["unix", httpUnix, ["1741964966000000000", "1741965002000000000"]],
    ["rfc3339", httpRfc3339, ["1741964966535897932", "1741964966500000000", "1741965002000000000"]],
    ["unix milliseconds", httpUnixMs, ["1741964966535000000", "1741965002999000000"]],
  ])("times http_requests in %s from EdgeStartTimestamp exactly", (_format, body, expected) => {
    const logs = logRecords("http_requests", records(body));
    expect(logs.map((l) => l.timeUnixNano)).toEqual(expected);
    expect(logs.every((l) => l.observedTimeUnixNano === OBSERVED.toString())).toBe(true);
  });

  it("falls back to EdgeEndTimestamp, then to the observed time", () => {
    expect(one("http_requests", { EdgeEndTimestamp: INSTANT_NS, EdgeResponseStatus: 200 }).timeUnixNano).toBe("1741964966535897932");
    expect(one("http_requests", { EdgeStartTimestamp: 0, EdgeEndTimestamp: 1741964966 }).timeUnixNano).toBe("1741964966000000000");
    expect(one("http_requests", { EdgeStartTimestamp: "garbage", EdgeEndTimestamp: null }).timeUnixNano).toBe(OBSERVED.toString());
    expect(one("http_requests", { ClientRequestHost: "example.com" }).timeUnixNano).toBe(OBSERVED.toString());
    // Another dataset's field does not count for http_requests.
    expect(one("http_requests", { Datetime: 1741964966 }).timeUnixNano).toBe(OBSERVED.toString());
  });

  it("maps http_requests bodies and severities", () => {
    const logs = logRecords("http_requests", records(httpUnixNano));
    expect(logs.map((l) => l.body.stringValue)).toEqual([
      "GET shop.example.com/checkout?step=2 -> 200",
      "POST shop.example.com/api/cart -> 404",
      "GET api.example.com/v1/orders/42 -> 503",
    ]);
    expect(logs.map((l) => [l.severityNumber, l.severityText])).toEqual([
      [9, "INFO"],
      [13, "WARN"],
      [17, "ERROR"],
    ]);
  });

  it.each([
    [200, 9, "INFO"],
    [299, 9, "INFO"],
    [300, 10, "INFO2"],
    [399, 10, "INFO2"],
    [400, 13, "WARN"],
    [499, 13, "WARN"],
    [500, 17, "ERROR"],
    [599, 17, "ERROR"],
    [0, 9, "INFO"],
    ["503", 17, "ERROR"],
  ])("gives EdgeResponseStatus %j severity %i %s", (status, number, text) => {
    const log = one("http_requests", { EdgeResponseStatus: status });
    expect(log.severityNumber).toBe(number);
    expect(log.severityText).toBe(text);
  });

  it("leaves severity unspecified for an http_request without a status", () => {
    const log = one("http_requests", { ClientRequestMethod: "GET", ClientRequestHost: "example.com", ClientRequestURI: "/" });
    expect(log.severityNumber).toBe(0);
    expect(log).not.toHaveProperty("severityText");
    expect(log.body.stringValue).toBe("GET example.com/");
  });

  it("degrades http_requests bodies when fields are missing", () => {
    expect(one("http_requests", { ClientRequestHost: "example.com", EdgeResponseStatus: 301 }).body.stringValue).toBe("example.com -> 301");
    expect(one("http_requests", { EdgeResponseStatus: 502 }).body.stringValue).toBe("http_requests -> 502");
    expect(one("http_requests", { RayID: "abc" }).body.stringValue).toBe("http_requests: RayID=abc");
    expect(one("http_requests", {}).body.stringValue).toBe("http_requests record");
  });

  it("types attributes, skips nulls and keeps the time field", () => {
    const log = one("http_requests", {
      EdgeStartTimestamp: INSTANT_NS,
      EdgeEndTimestamp: 1741964966587123456n,
      ClientRequestHost: "example.com",
      EdgeResponseStatus: 200,
      ClientRequestBytes: 0,
      OriginResponseDurationMs: 12.5,
      WAFAttackScore: -1.25,
      BotScore: 9007199254740993n,
      ClientSSLProtocol: "",
      EdgeRequestIsHTTP3: true,
      WorkerSubrequest: false,
      RequestHeaders: { "x-id": "7", big: 12345678901234567890n, none: null },
      SecurityRuleIDs: ["a", 1, null],
      OriginIP: null,
      Missing: undefined,
    });
    expect(log.attributes).toEqual([
      { key: "EdgeStartTimestamp", value: { intValue: "1741964966535897932" } },
      { key: "EdgeEndTimestamp", value: { intValue: "1741964966587123456" } },
      { key: "ClientRequestHost", value: { stringValue: "example.com" } },
      { key: "EdgeResponseStatus", value: { intValue: "200" } },
      { key: "ClientRequestBytes", value: { intValue: "0" } },
      { key: "OriginResponseDurationMs", value: { doubleValue: 12.5 } },
      { key: "WAFAttackScore", value: { doubleValue: -1.25 } },
      { key: "BotScore", value: { intValue: "9007199254740993" } },
      { key: "ClientSSLProtocol", value: { stringValue: "" } },
      { key: "EdgeRequestIsHTTP3", value: { boolValue: true } },
      { key: "WorkerSubrequest", value: { boolValue: false } },
      { key: "RequestHeaders", value: { stringValue: '{"x-id":"7","big":12345678901234567890,"none":null}' } },
      { key: "SecurityRuleIDs", value: { stringValue: '["a",1,null]' } },
    ]);
  });

  it("keeps every time field as an attribute, the one that supplied the time included", () => {
    const log = one("http_requests", { EdgeStartTimestamp: "garbage", EdgeEndTimestamp: 1741964966 });
    expect(log.timeUnixNano).toBe("1741964966000000000");
    expect(attribute(log, "EdgeStartTimestamp")).toEqual({ stringValue: "garbage" });
    expect(attribute(log, "EdgeEndTimestamp")).toEqual({ intValue: "1741964966" });
  });

  it("reads the time from the configured time_field first, exactly", () => {
    const record = { timestamp: INSTANT_NS, EdgeStartTimestamp: 1741964000 };
    const configured = toOtlpLogs([record], { dataset: "http_requests", ...CONTEXT, timeField: "timestamp" }).resourceLogs[0]!.scopeLogs[0]!.logRecords[0]!;
    expect(configured.timeUnixNano).toBe("1741964966535897932");
    expect(attribute(configured, "timestamp")).toEqual({ intValue: "1741964966535897932" });
    // Unset, the dataset's own field wins; a configured field that is missing falls back to it.
    expect(one("http_requests", record).timeUnixNano).toBe("1741964000000000000");
    const missing = toOtlpLogs([{ EdgeStartTimestamp: 1741964000 }], { dataset: "http_requests", ...CONTEXT, timeField: "ts" }).resourceLogs[0]!.scopeLogs[0]!.logRecords[0]!;
    expect(missing.timeUnixNano).toBe("1741964000000000000");
    // A configured name ending in Ms is milliseconds, like Cloudflare's own.
    const ms = toOtlpLogs([{ StartMs: 86_400_000 }], { dataset: "x", ...CONTEXT, timeField: "StartMs" }).resourceLogs[0]!.scopeLogs[0]!.logRecords[0]!;
    expect(ms.timeUnixNano).toBe("86400000000000");
  });

  it("falls back to a commonly renamed time field when none is configured", () => {
    expect(one("http_requests", { "client-ip": "192.0.2.1", timestamp: INSTANT_NS }).timeUnixNano).toBe("1741964966535897932");
    expect(one("firewall_events", { "@timestamp": "2025-03-14T15:09:26.535897932Z" }).timeUnixNano).toBe("1741964966535897932");
  });

  it("maps workers_trace_events: millisecond time, body and outcome severity", () => {
    const logs = logRecords("workers_trace_events", records(workersTraceEvents));
    expect(logs.map((l) => l.timeUnixNano)).toEqual(["1741964966535000000", "1741964700004000000", "1741964967000000000", "1741965002999000000"]);
    expect(logs.map((l) => l.body.stringValue)).toEqual([
      "orders-api GET https://api.example.com/v1/orders/42 -> exception",
      "cart-sweeper cron */5 * * * * -> ok",
      "order-consumer queue order-events -> canceled",
      "orders-api HEAD https://api.example.com/health -> ok",
    ]);
    expect(logs.map((l) => l.severityText)).toEqual(["ERROR", "INFO", "WARN", "INFO"]);
    expect(logs.map((l) => l.severityNumber)).toEqual([17, 9, 13, 9]);
    const first = logs[0]!;
    expect(attribute(first, "EventTimestampMs")).toEqual({ intValue: "1741964966535" });
    expect(attribute(first, "CPUTimeMs")).toEqual({ intValue: "3" });
    expect(attribute(first, "Outcome")).toEqual({ stringValue: "exception" });
    expect(attribute(first, "ScriptTags")).toEqual({ stringValue: '["api","prod"]' });
    expect(JSON.parse((attribute(first, "Logs") as { stringValue: string }).stringValue)).toHaveLength(2);
    expect(JSON.parse((attribute(first, "Event") as { stringValue: string }).stringValue).Request.Method).toBe("GET");
    // A null ScriptTags is skipped.
    expect(attribute(logs[2]!, "ScriptTags")).toBeUndefined();
  });

  it("reads EventTimestampMs as milliseconds whatever its magnitude", () => {
    expect(one("workers_trace_events", { EventTimestampMs: 86_400_000, Outcome: "ok" }).timeUnixNano).toBe("86400000000000");
    expect(one("workers_trace_events", { Outcome: "ok" }).timeUnixNano).toBe(OBSERVED.toString());
  });

  it.each([
    ["ok", "INFO"],
    ["exception", "ERROR"],
    ["exceededCpu", "ERROR"],
    ["exceededMemory", "ERROR"],
    ["scriptThrewException", "ERROR"],
    ["scriptNotFound", "ERROR"],
    ["canceled", "WARN"],
    ["responseStreamDisconnected", "WARN"],
    ["unknown", "WARN"],
    ["somethingNew", "WARN"],
    [undefined, "WARN"],
  ])("gives Outcome %j severity %s", (outcome, text) => {
    expect(one("workers_trace_events", { ScriptName: "w", Outcome: outcome }).severityText).toBe(text);
  });

  it("degrades workers_trace_events bodies when fields are missing", () => {
    expect(one("workers_trace_events", { ScriptName: "w", EventType: "alarm", Outcome: "ok" }).body.stringValue).toBe("w alarm -> ok");
    expect(one("workers_trace_events", { ScriptName: "w", Event: { Request: { URL: "https://x.test/" } } }).body.stringValue).toBe("w https://x.test/");
    expect(one("workers_trace_events", { Outcome: "exceededCpu" }).body.stringValue).toBe("workers_trace_events -> exceededCpu");
    expect(one("workers_trace_events", { CPUTimeMs: 4 }).body.stringValue).toBe("workers_trace_events: CPUTimeMs=4");
  });

  it("maps other datasets generically: Datetime, unspecified severity, a readable summary", () => {
    const logs = logRecords("firewall_events", records(firewallEvents));
    expect(logs.map((l) => l.timeUnixNano)).toEqual(["1741964966535897932", "1741965002250000000"]);
    for (const log of logs) {
      expect(log.severityNumber).toBe(0);
      expect(log).not.toHaveProperty("severityText");
    }
    expect(logs[0]!.body.stringValue).toBe(
      "firewall_events: Action=block Source=firewallCustom ClientIP=192.0.2.44 ClientRequestMethod=POST ClientRequestHost=shop.example.com ClientRequestPath=/wp-login.php",
    );
    expect(logs[1]!.body.stringValue).toBe(
      "firewall_events: Action=managed_challenge Source=securityLevel ClientIP=198.51.100.77 ClientRequestMethod=GET ClientRequestHost=api.example.com ClientRequestPath=/v1/search",
    );
    const first = logs[0]!;
    expect(attribute(first, "Datetime")).toEqual({ intValue: "1741964966535897932" });
    expect(attribute(first, "ContentScanObjResults")).toBeUndefined();
    expect(attribute(first, "WAFAttackScore")).toEqual({ doubleValue: 12.5 });
    expect(attribute(first, "Verified")).toEqual({ boolValue: false });
    expect(attribute(first, "Metadata")).toEqual({ stringValue: '{"ruleset_version":"12"}' });
    expect(attribute(first, "ClientASN")).toEqual({ intValue: "64496" });
    expect(attribute(first, "ClientRefererHost")).toEqual({ stringValue: "" });
  });

  it.each([
    ["Timestamp (dns_logs)", "dns_logs", { Timestamp: "2025-03-14T15:09:26.535897932Z", QueryName: "example.com", QueryType: 1, ResponseCode: 0 }, "dns_logs: QueryName=example.com QueryType=1 ResponseCode=0"],
    ["When (audit_logs)", "audit_logs", { When: 1741964966, ActionType: "update", ResourceType: "zone", ActorEmail: "a@example.com" }, "audit_logs: ActionType=update ResourceType=zone ActorEmail=a@example.com"],
    ["EdgeStartTimestamp under another name", "my_dataset", { EdgeStartTimestamp: INSTANT_NS, Other: "x" }, "my_dataset: Other=x"],
  ])("times generic records from %s", (_name, dataset, record, body) => {
    const log = one(dataset, record as LogpushRecord);
    expect(BigInt(log.timeUnixNano) / 1_000_000_000n).toBe(1741964966n);
    expect(log.body.stringValue).toBe(body);
  });

  it("never leaves a generic body empty, and keeps it short", () => {
    expect(one("spectrum_events", {}).body.stringValue).toBe("spectrum_events record");
    expect(one("spectrum_events", { Nested: { a: 1 }, List: [1] }).body.stringValue).toBe("spectrum_events record");
    expect(one("", {}).body.stringValue).toBe("logpush record");
    const long = one("nel_reports", { Type: "x".repeat(500) }).body.stringValue;
    expect(long).toBe(`nel_reports: Type=${"x".repeat(120)}…`);
  });

  it("returns an empty log list for no records", () => {
    expect(logRecords("http_requests", [])).toEqual([]);
  });
});
