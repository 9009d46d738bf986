import { describe, expect, it } from "vitest";
import { MAX_DEPTH, parseLogpushBody, readLogpushOptions, toJson, type LogpushOptions, type LogpushRecord } from "../../src/ingest/logpush/index.ts";
import { isValidationBody } from "../../src/ingest/logpush/index.ts";

// The pieces behind every output shape: framing, CSV, query options and the depth bound.

const CSV = (fields: string[] | null = null): LogpushOptions => ({ format: "csv", fields, timeField: null });

function records(text: string, options?: LogpushOptions): LogpushRecord[] {
  const parsed = parseLogpushBody(text, options);
  if (!parsed.ok) throw new Error(`${parsed.code}: ${parsed.message}`);
  return parsed.records;
}
function refusal(text: string, options?: LogpushOptions): { code: string; message: string } {
  const parsed = parseLogpushBody(text, options);
  if (parsed.ok) throw new Error(`expected a refusal, got ${parsed.records.length} records`);
  return { code: parsed.code, message: parsed.message };
}

describe("JSON framing", () => {
  it.each([
    ["no record_delimiter at all", '{"a":1}{"a":2}{"a":3}'],
    ["a comma and newline", '{"a":1},\n{"a":2},\n{"a":3}'],
    ["a semicolon after each record_suffix", '{"a":1}\n;{"a":2}\n;{"a":3}\n'],
    ["an RS control character (RFC 7464)", '\u001e{"a":1}\n\u001e{"a":2}\n\u001e{"a":3}\n'],
    ["a trailing delimiter", '{"a":1}|{"a":2}|{"a":3}|'],
    ["a pretty-printed JSON array", '[\n  {"a": 1},\n  {"a": 2},\n  {"a": 3}\n]\n'],
    ["a wrapper whose records are wrapped too", '{"records":[{"r":{"a":1}},{"r":{"a":2}},{"r":{"a":3}}]}'],
  ])("reads records separated by %s", (_name, body) => {
    expect(records(body)).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
  });

  it("keeps braces and brackets inside strings out of the framing", () => {
    expect(records('{"a":"}{][\\"{"}\n{"b":"\\\\"}')).toEqual([{ a: '}{]["{' }, { b: "\\" }]);
  });

  it("unwraps a one-record batch and a one-record wrapper, but not a record's own array fields", () => {
    expect(records('{"events":[{"a":1}]}')).toEqual([{ a: 1 }]);
    expect(records('{"info":{"a":1}}')).toEqual([{ a: 1 }]);
    // A workers_trace_events job exporting only Logs: one record, not a batch of log lines.
    expect(records('{"Logs":[{"level":"log","message":["x"]}]}')).toEqual([{ Logs: [{ level: "log", message: ["x"] }] }]);
    // A record with fields of its own and an array of objects stays one record.
    expect(records('{"ScriptName":"w","Exceptions":[{"name":"E"}]}')).toEqual([{ ScriptName: "w", Exceptions: [{ name: "E" }] }]);
  });

  it("does not unwrap records whose single keys differ", () => {
    expect(records('{"x":{"a":1}}\n{"y":{"a":2}}')).toEqual([{ x: { a: 1 } }, { y: { a: 2 } }]);
  });
});

describe("the nesting bound", () => {
  const nested = (depth: number) => `${'{"a":'.repeat(depth - 1)}{"leaf":1}${"}".repeat(depth - 1)}`;

  it(`accepts exactly ${MAX_DEPTH} levels and refuses ${MAX_DEPTH + 1}`, () => {
    expect(records(nested(MAX_DEPTH))).toHaveLength(1);
    expect(refusal(nested(MAX_DEPTH + 1))).toEqual({ code: "nesting_too_deep", message: expect.stringMatching(/^line 1 nests JSON more than 64 levels deep/) });
  });

  it("counts arrays, and never a bracket inside a string", () => {
    expect(refusal(`{"a":${"[".repeat(MAX_DEPTH)}${"]".repeat(MAX_DEPTH)}}`).code).toBe("nesting_too_deep");
    expect(records(`{"a":"${"[".repeat(1000)}"}`)).toEqual([{ a: "[".repeat(1000) }]);
  });

  it("refuses a million levels in linear time, without building anything", () => {
    const body = `{"a":${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}}`;
    expect(refusal(body).code).toBe("nesting_too_deep");
    expect(refusal(`a,${body}`, CSV(["A", "B"])).code).toBe("nesting_too_deep");
  });

  it("toJson cuts off values deeper than the bound instead of overflowing the stack", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    const text = toJson(deep);
    expect(text.startsWith('{"a":{"a":')).toBe(true);
    expect(text).toContain('"[too deep]"');
  });
});

describe("CSV", () => {
  it("reads fields from the URL, typed: strings quoted, integers exact, numbers, booleans, empty as absent", () => {
    const body = '"192.0.2.1",1795515330123456789,200,12.5,true,,"",null\n';
    expect(records(body, CSV(["ClientIP", "EdgeStartTimestamp", "Status", "Ms", "Bot", "Empty", "Blank", "Nil"]))).toEqual([
      { ClientIP: "192.0.2.1", EdgeStartTimestamp: 1795515330123456789n, Status: 200, Ms: 12.5, Bot: true, Blank: "", Nil: null },
    ]);
  });

  it("reads quoted fields with delimiters, newlines and both escape styles", () => {
    const body = '"a,b","say \\"hi\\"\\nbye"\r\n"x ""quoted""","multi\nline"\r\n';
    expect(records(body, CSV(["A", "B"]))).toEqual([
      { A: "a,b", B: 'say "hi"\nbye' },
      { A: 'x "quoted"', B: "multi\nline" },
    ]);
  });

  it("reads a bare JSON field whole, commas included", () => {
    expect(records('"w",{"Request":{"Method":"GET","URL":"https://x.test/a,b"}},["a","b"]\n', CSV(["ScriptName", "Event", "ScriptTags"]))).toEqual([
      { ScriptName: "w", Event: { Request: { Method: "GET", URL: "https://x.test/a,b" } }, ScriptTags: ["a", "b"] },
    ]);
  });

  it.each([
    ["a comma", ","],
    ["a tab", "\t"],
    ["a semicolon", ";"],
    ["a pipe", "|"],
  ])("infers %s as the field_delimiter, from a header line or from fields=", (_name, d) => {
    const rows = `"192.0.2.1"${d}1795515330${d}"8f2c"\n"192.0.2.2"${d}1795515331${d}"8f2d"\n`;
    const expected = [
      { ClientIP: "192.0.2.1", EdgeStartTimestamp: 1795515330, RayID: "8f2c" },
      { ClientIP: "192.0.2.2", EdgeStartTimestamp: 1795515331, RayID: "8f2d" },
    ];
    expect(records(`ClientIP${d}EdgeStartTimestamp${d}RayID\n${rows}`, CSV())).toEqual(expected);
    expect(records(rows, CSV(["ClientIP", "EdgeStartTimestamp", "RayID"]))).toEqual(expected);
    // fields= and a header line that repeats them: the header is not a record.
    expect(records(`ClientIP${d}EdgeStartTimestamp${d}RayID\n${rows}`, CSV(["ClientIP", "EdgeStartTimestamp", "RayID"]))).toEqual(expected);
  });

  it("refuses what it cannot read, naming the line", () => {
    expect(refusal('"a","b"\n"c"\n', CSV(["A", "B"]))).toEqual({ code: "csv_fields_mismatch", message: expect.stringMatching(/^line 2 has 1 fields/) });
    expect(refusal('"a"x,"b"\n', CSV(["A", "B"])).code).toBe("invalid_payload");
    expect(refusal('"never ends\n', CSV(["A"])).code).toBe("invalid_payload");
    expect(refusal("\n\n", CSV(["A"])).code).toBe("invalid_payload");
    expect(refusal("ClientIP,RayID\n", CSV()).code).toBe("no_records");
  });
});

describe("readLogpushOptions", () => {
  const read = (query: string) => readLogpushOptions(new URLSearchParams(query));

  it("defaults to JSON and reads format, fields and time_field", () => {
    expect(read("")).toEqual({ ok: true, options: { format: "json", fields: null, timeField: null } });
    expect(read("format=CSV&fields=ClientIP,%20EdgeStartTimestamp,RayID&time_field=timestamp&tags=a:b")).toEqual({
      ok: true,
      options: { format: "csv", fields: ["ClientIP", "EdgeStartTimestamp", "RayID"], timeField: "timestamp" },
    });
    expect(read("format=ndjson")).toMatchObject({ ok: true, options: { format: "json" } });
    expect(read("time_field=@timestamp")).toMatchObject({ ok: true, options: { timeField: "@timestamp" } });
  });

  it.each([
    ["format=tsv", "invalid_format"],
    ["format=csv&fields=a,b%3Bc", "invalid_fields"],
    ["format=csv&fields=a&fields=b", "invalid_fields"],
    ["time_field=a&time_field=b", "invalid_time_field"],
    ["time_field=%20", "invalid_time_field"],
  ])("refuses %s with %s", (query, code) => {
    expect(read(query)).toMatchObject({ ok: false, code, message: expect.any(String) });
  });
});

describe("isValidationBody", () => {
  it.each(["test", "tests", " test\r\n", '{"content":"tests"}', '{"content":"test"}\n', '[{"content":"tests"}]'])("recognises %j", (body) => {
    expect(isValidationBody(body)).toBe(true);
  });
  it.each(["testing", '{"content":"tests","RayID":"x"}', '{"content":1}', `{"content":"${"x".repeat(300)}"}`])("rejects %j", (body) => {
    expect(isValidationBody(body)).toBe(false);
  });
});
