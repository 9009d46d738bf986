import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { parseLogpushBody } from "../../src/ingest/logpush/index.ts";
import { freshOrgPerTest, ingestWithEnv, sink } from "../support/ingest.ts";
import { record as httpRecord } from "../support/logpush-batch.ts";
import { expected, push, received } from "../support/logpush-compare.ts";

// A breaker review of the Logpush fast path (flat-records.ts, byte pieces in two reused buffers,
// 64 KiB segments decoded 32 KiB at a time) through the Worker: what reaches the upstream must be
// what the general path gives for the whole body. The slow checks (random batches over many
// segments, 150,000 keys, several pieces and parking) are in test/ingest-e2e/logpush-fast-break.test.ts.

let org: string;
let key: string;
freshOrgPerTest("lp-fast-brk", (o, k) => {
  org = o;
  key = k;
});

describe("the fast path through the route converts as the general path does", () => {
  it.each([
    ["a JSON array", "firewall_events", `[${'{"Action":"block","Datetime":"2025-03-14T15:09:26Z","k":1},'.repeat(3)}{"Action":"allow"}]`],
    ["one pretty-printed object", "dns_logs", '{\n  "Timestamp": 1741964966535897932,\n  "QueryName": "é.example",\n  "n": -0.0\n}\n'],
    ["a wrapped batch", "http_requests", '{"events":[{"EdgeStartTimestamp":1741964966,"ClientIP":"x"},{"RayID":"r"}]}'],
    ["wrapped records", "http_requests", '{"info":{"RayID":"a","ClientIP":"1"}}\n{"info":{"RayID":"b"}}\n'],
    ["non-ASCII, numeric, __proto__ and duplicate keys", "x", '{"é":1,"日本":"v","😀":true}\n{"7":1,"b":2}\n{"__proto__":"p","a":1}\n{"a":1,"a":2}\n{"b":"z"}\n'],
    ["escapes and odd numbers", "x", '{"s":"\\u0000\\ud800\\udc00\\ud800x","t":"\\u2028é","n":1E5,"m":-0.0,"e":1e-7,"b":9007199254740993,"z":-0,"i":1e400}\n'],
    ["a BOM and CRLF", "http_requests", '\ufeff{"RayID":"a"}\r\n\r\n{"RayID":"b"}\r\n'],
    ["a trailing comma record_delimiter", "http_requests", '{"RayID":"a"},{"RayID":"b"},'],
    ["time_field=", "x", '{"when":"2025-03-14T15:09:26.123456789+01:00","Timestamp":1}\n{"when":0,"Timestamp":1741964966}\n', "when"],
    ["time_field= in ms", "x", '{"whenMs":1741964966123,"a":"b"}\n{"whenMs":"1741964966123.5"}\n', "whenMs"],
  ])("%s", async (_name, dataset, text, timeField?: string) => {
    const response = await push(key, `/v1/logpush/${dataset}${timeField === undefined ? "" : `?time_field=${timeField}`}`, text);
    expect(response.status, await response.clone().text()).toBe(200);
    const got = await received(org);
    expect(got.inner).toBe(expected(text, dataset, org, got.observed, timeField ?? null));
  });

  it("a record longer than a segment, and characters split across the 32 KiB decode slices of an identity body", async () => {
    const lines = Array.from({ length: 400 }, (_, i) => JSON.stringify({ RayID: `r${i}`, ClientIP: "x".repeat(i % 5), V: "😀é日".repeat(20 + (i % 7)) }));
    lines.splice(200, 0, JSON.stringify({ RayID: "long", V: `${"ü".repeat(50_000)}😀${"a".repeat(40_000)}` }));
    const text = lines.join("\n");
    const bytes = new TextEncoder().encode(text);
    // A 32 KiB slice boundary falls inside a character.
    expect([1, 2, 3, 4, 5, 6].some((k) => (bytes[k * 32768]! & 0xc0) === 0x80)).toBe(true);
    const response = await ingestWithEnv(env, "/v1/logpush/http_requests", { key, body: bytes });
    expect(response.status, await response.clone().text()).toBe(200);
    const got = await received(org);
    expect(got.inner === expected(text, "http_requests", org, got.observed)).toBe(true);
  });
});

describe("refusals are worded and numbered as the general path words them for the whole body", () => {
  it.each([
    ["a missing value", '{"a":1,"b":}'],
    ["a bad literal", '{"a":tru}'],
    ["a raw control character", '{"a":"x\u0001y"}'],
    ["text between records", '{"a":1} oops'],
    ["an array line", "[1,2]"],
    ["a leading zero", '{"a":01}'],
    ["a lone minus", '{"a":-}'],
  ])("%s in a later segment", async (_name, bad) => {
    for (const eol of ["\n", "\r\n\n"]) {
      const lines = Array.from({ length: 3000 }, (_, i) => httpRecord(i));
      lines[1234] = bad;
      const text = lines.join(eol);
      const whole = parseLogpushBody(text);
      if (whole.ok) throw new Error("expected a refusal");
      const response = await push(key, "/v1/logpush/http_requests", text);
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: whole.code, message: whole.message });
    }
    expect(await sink.requests(org)).toHaveLength(0);
  });
});
