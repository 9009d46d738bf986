import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FlatRecords } from "../../src/ingest/logpush/flat-records.ts";
import { parseLogpushBody, toOtlpLogs, type LogpushContext } from "../../src/ingest/logpush/index.ts";
import { Utf8Builder } from "../../src/ingest/logpush/utf8-builder.ts";

// The fast path for flat NDJSON records (flat-records.ts) against the general one it stands in
// for: parseLogpushBody, toOtlpLogs, JSON.stringify. Equal text whenever it answers, and it never
// answers for a body the general path refuses.

const OBSERVED = 1741970000000000000n;
/** Batches per property in npm test (about a second in all); `FUZZ_REQUESTS=5000 npm test` runs more. */
const RUNS = Number((env as unknown as Record<string, string | undefined>).FUZZ_REQUESTS || 400);
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** The fast path's log records for a segment, its bytes read back as text (fatal: they must be UTF-8), or null when it declines. */
function fast(converter: FlatRecords, text: string): { json: string; records: number } | null {
  const out = new Utf8Builder(16);
  const records = converter.write(text, out);
  if (records === null) {
    expect(out.length).toBe(0);
    return null;
  }
  return { json: utf8.decode(out.bytes.subarray(0, out.length)), records };
}

/** The general path's log records for a segment, as the route writes them, or null when it refuses the text. */
function general(text: string, context: LogpushContext): { json: string; records: number } | null {
  const parsed = parseLogpushBody(text);
  if (!parsed.ok) return null;
  return { json: JSON.stringify(toOtlpLogs(parsed.records, context).resourceLogs[0]!.scopeLogs[0]!.logRecords).slice(1, -1), records: parsed.records.length };
}

const CONTEXTS: LogpushContext[] = [
  { dataset: "http_requests", orgId: "org_1", observedAtNs: OBSERVED },
  { dataset: "http_requests", orgId: "org_1", observedAtNs: OBSERVED, timeField: "when" },
  { dataset: "workers_trace_events", orgId: "org_1", observedAtNs: OBSERVED },
  { dataset: "firewall_events", orgId: "org_1", observedAtNs: OBSERVED },
  { dataset: "dns_logs", orgId: "org_1", observedAtNs: OBSERVED, timeField: "WhenMs" },
];

/** Fields the time, severity and body read, and others. */
const KEYS = [
  "EdgeStartTimestamp", "EdgeEndTimestamp", "EventTimestampMs", "EventTimestamp", "Datetime", "Timestamp", "When", "CreatedAt",
  "timestamp", "@timestamp", "time", "when", "WhenMs",
  "EdgeResponseStatus", "ClientRequestMethod", "ClientRequestHost", "ClientRequestURI", "Outcome", "ScriptName", "EventType",
  "Action", "Source", "ClientIP", "RayID", "QueryName", "ResponseCode",
  "ClientRequestUserAgent", "EdgeResponseBytes", "Zone", "x", "", "a b", "é", "日本", "client-ip", "$ref", "x0",
];

/** How a string may be written in JSON: raw where allowed, else (or by choice) escaped. */
function jsonString(value: string, escapes: number[]): string {
  let out = '"';
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    const how = escapes[i % escapes.length]!;
    const mustEscape = c === 0x22 || c === 0x5c || c < 0x20;
    if (how === 1 || (mustEscape && how === 0)) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else if (how === 2 || mustEscape) out += `\\u${c.toString(16).toUpperCase().padStart(4, "0")}`;
    else if (how === 3 && c === 0x2f) out += "\\/";
    else out += value[i];
  }
  return `${out}"`;
}

const anyChar = fc.oneof(
  fc.constantFrom("a", "Z", "0", " ", "/", "\\", '"', "\n", "\t", "\u0000", "\u001f", "\u007f", "é", "\u2028", "😀", "\ud800", "\udfff", "%", "-", ":", "T", "Z", "."),
  fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
);
const strings = fc.oneof(
  fc.string({ unit: anyChar, maxLength: 12 }),
  fc.constantFrom(
    "", "GET", "POST", "ok", "exception", "canceled", "200", " 503 ", "404", "1741964966", "1741964966.5", "1741964966535897932",
    "2025-03-14T15:09:26.535897932Z", "2025-03-14T16:09:26+01:00", "2025-02-30T00:00:00Z", "0", "-1", "shop.example.com", "/a?b=c",
  ),
);
const stringToken = fc.tuple(strings, fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 5 })).map(([value, escapes]) =>
  escapes.every((how) => how === 4) ? JSON.stringify(value) : jsonString(value, escapes),
);

const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: min, maxLength: max });
const integerLiteral = fc.tuple(fc.boolean(), fc.oneof(fc.constant("0"), fc.tuple(fc.constantFrom(..."123456789"), digits(0, 24)).map(([a, b]) => a + b))).map(
  ([negative, value]) => `${negative ? "-" : ""}${value}`,
);
const numberToken = fc.oneof(
  integerLiteral,
  fc.tuple(integerLiteral, fc.option(digits(1, 20), { nil: undefined }), fc.option(fc.tuple(fc.constantFrom("e", "E"), fc.constantFrom("", "+", "-"), digits(1, 4)), { nil: undefined })).map(
    ([int, fraction, exponent]) => `${int}${fraction === undefined ? "" : `.${fraction}`}${exponent === undefined ? "" : exponent.join("")}`,
  ),
  fc.constantFrom(
    "9007199254740991", "9007199254740992", "9007199254740993", "-9007199254740993", "1741964966535897932", "1741964966535", "1741964966",
    "-0", "-0.0", "0.0", "1.0", "1e3", "1E+21", "1e21", "1e400", "-1e400", "5e-324", "1e-400", "200", "503", "302", "99.5",
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
);
const valueToken = fc.oneof({ arbitrary: stringToken, weight: 4 }, { arbitrary: numberToken, weight: 3 }, fc.constantFrom("true", "false", "null"));
const space = fc.constantFrom("", "", "", " ", "\t", "\r\n", "  ");

/** One flat record: distinct keys, any scalar values, JSON whitespace here and there. */
const flatRecord = fc
  .tuple(fc.uniqueArray(fc.constantFrom(...KEYS), { maxLength: 14 }), fc.array(valueToken, { minLength: 14, maxLength: 14 }), fc.array(space, { minLength: 60, maxLength: 60 }))
  .map(([keys, values, spaces]) => {
    const members = keys.map((key, i) => `${spaces[i * 4]}${JSON.stringify(key)}${spaces[i * 4 + 1]}:${spaces[i * 4 + 2]}${values[i]}${spaces[i * 4 + 3]}`);
    return `{${members.join(",")}${spaces[59]}}`;
  });
const ndjson = fc.tuple(fc.array(flatRecord, { minLength: 1, maxLength: 8 }), fc.constantFrom("\n", "\r\n", "\n\n", " \n")).map(([records, delimiter]) => records.join(delimiter) + delimiter);

describe("flat records straight to OTLP JSON text", () => {
  it.each(CONTEXTS)("writes what the general path writes, for every flat NDJSON batch ($dataset, time_field $timeField)", (context) => {
    // One converter for every batch, as for a batch's segments: its key cache carries over.
    const converter = new FlatRecords(context);
    let taken = 0;
    fc.assert(
      fc.property(ndjson, (text) => {
        const expected = general(text, context);
        const written = fast(converter, text);
        if (written === null) return;
        taken++;
        expect(expected).not.toBeNull();
        expect(written).toEqual(expected);
      }),
      { numRuns: RUNS },
    );
    // It declines only for a batch with no non-null field, or a `__proto__` key, neither generated often.
    expect(taken).toBeGreaterThan(RUNS * 0.75);
  });

  it("keeps records its schema cache saw in another order, and declines a key given twice", () => {
    const converter = new FlatRecords(CONTEXTS[0]!);
    const text = '{"a":1,"b":"x"}\n{"b":"y","a":2}\n{"a":3,"b":"z","c":true}\n{"a":4}\n';
    expect(fast(converter, text)).toEqual(general(text, CONTEXTS[0]!));
    expect(fast(converter, '{"a":1,"b":2}\n{"a":1,"b":2,"a":3}\n')).toBeNull();
    expect(fast(converter, '{"a":1,"b":2,"b":3}\n')).toBeNull();
  });

  it("appends to what the buffer holds, and leaves it as it was when it declines", () => {
    const converter = new FlatRecords(CONTEXTS[0]!);
    const out = new Utf8Builder(4);
    out.text("[");
    expect(converter.write('{"a":"é😀","b":1}', out)).toBe(1);
    const written = out.length;
    expect(converter.write('{"a":"x"}\n{"a":{"b":1}}', out)).toBeNull();
    expect(out.length).toBe(written);
    expect(utf8.decode(out.bytes.subarray(0, out.length))).toBe(`[${general('{"a":"é😀","b":1}', CONTEXTS[0]!)!.json}`);
  });

  it.each([
    ["an object inside", '{"a":1,"Event":{"x":1}}'],
    ["an array inside", '{"a":[1]}'],
    ["an array-index key (for-in lists it first)", '{"b":1,"7":2}'],
    ["a key with an escape", '{"\\u0061":1}'],
    ["a __proto__ key", '{"__proto__":"x","a":1}'],
    ["a BOM", '\ufeff{"a":1}'],
    ["a record_delimiter", '{"a":1},{"a":2}'],
    ["a JSON array", '[{"a":1}]'],
    ["a trailing comma", '{"a":1,}'],
    ["a control character in a string", '{"a":"x\u0001y"}'],
    ["a bad escape", '{"a":"\\x"}'],
    ["a leading zero", '{"a":01}'],
    ["an unfinished record", '{"a":1'],
    ["text after a record", '{"a":1} x'],
    ["only nulls", '{"a":null}\n{}'],
    ["nothing", " \n "],
  ])("hands %s to the general path", (_what, text) => {
    expect(fast(new FlatRecords(CONTEXTS[0]!), text)).toBeNull();
  });

  it("never answers for text the general path refuses, nor differs from it, on mangled batches", () => {
    const converter = new FlatRecords(CONTEXTS[2]!);
    const mangled = fc.tuple(ndjson, fc.nat(), fc.constantFrom("", "{", "}", "[", "]", '"', "\\", ",", ":", "\u0000", "1", "e", "-", "n", " ")).map(
      ([text, at, insert]) => text.slice(0, at % (text.length + 1)) + insert + text.slice(at % (text.length + 1) + (insert === "" ? 1 : 0)),
    );
    fc.assert(
      fc.property(mangled, (text) => {
        const written = fast(converter, text);
        if (written !== null) expect(written).toEqual(general(text, CONTEXTS[2]!));
      }),
      { numRuns: RUNS * 2 },
    );
  });
});
