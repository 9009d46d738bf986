import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { parseLogpushBody, toOtlpLogs } from "../../src/ingest/logpush/index.ts";
import { orgPrefix } from "../../src/ingest/parking/store.ts";
import { bodyOf, freshOrgPerTest, gzip, ingestWithEnv, sink } from "../support/ingest.ts";
import { record as httpRecord } from "../support/logpush-batch.ts";
import { parkingBucket, parkingEnv, send } from "../support/parking.ts";
import { prng, type Rng } from "../support/prng.ts";

// A breaker review of the Logpush fast path (flat-records.ts, byte pieces in two reused buffers,
// 64 KiB segments decoded 32 KiB at a time) through the Worker: what reaches the upstream or
// parking must be what the general path (parseLogpushBody, toOtlpLogs) gives for the whole body.

let org: string;
let key: string;
freshOrgPerTest("lp-fast-brk", (o, k) => {
  org = o;
  key = k;
});

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const HEAD = '"logRecords":[';
const TAIL = "]}]}]}";

/** Pieces' log records joined (each piece checked to be one whole envelope), and the observed time they carry. */
function joined(pieces: string[]): { inner: string; observed: bigint } {
  const inners = pieces.map((text) => {
    expect(JSON.parse(text).resourceLogs[0].scopeLogs[0].logRecords.length).toBeGreaterThan(0);
    expect(text.endsWith(TAIL)).toBe(true);
    return text.slice(text.indexOf(HEAD) + HEAD.length, -TAIL.length);
  });
  const first = pieces.length === 0 ? null : JSON.parse(pieces[0]!).resourceLogs[0].scopeLogs[0].logRecords[0];
  return { inner: inners.join(","), observed: first === null ? 0n : BigInt(first.observedTimeUnixNano) };
}

/** What the upstream received for the org, in order. */
async function received(): Promise<{ inner: string; observed: bigint; pieces: string[] }> {
  const pieces = (await sink.requests(org)).filter((r) => r.path === "/v1/logs").map((r) => utf8.decode(bodyOf(r)));
  return { ...joined(pieces), pieces };
}

/** The general path's log records for the whole body. */
function expected(text: string, dataset: string, observed: bigint, timeField: string | null = null): string {
  const parsed = parseLogpushBody(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return JSON.stringify(toOtlpLogs(parsed.records, { dataset, orgId: org, observedAtNs: observed, timeField }).resourceLogs[0]!.scopeLogs[0]!.logRecords).slice(1, -1);
}

const push = async (path: string, text: string | Uint8Array, extra: Record<string, unknown> = {}) =>
  ingestWithEnv({ ...env, ...extra }, path, { key, headers: { "content-encoding": "gzip" }, body: await gzip(text) });

/** String content: multi-byte characters, escapes (lone surrogates, NUL, quotes) and ASCII. */
const PARTS = ["é", "日本", "😀", "\u2028", "€", "𝄞", "a", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "\\u0000", '\\"', "\\n", "\\/"];
const NUMBERS = ["0", "-0", "-0.0", "1E5", "1e-7", "9007199254740993", "-9007199254740993", "1741964966535897932", "1.5", "1e400", "200", "503", "12345678901234567890123"];

function str(rng: Rng, max: number): string {
  let out = "";
  for (let n = rng.int(max); n > 0; n--) out += rng.chance(0.5) ? rng.pick(PARTS) : String.fromCharCode(0x20 + rng.int(90)).replace(/["\\]/, "x");
  return `"${out}"`;
}

/** A flat http_requests record in JSON whitespace, keys in varying order and number; now and then a string longer than a segment. */
function flatRecord(rng: Rng, i: number): string {
  const fields = [`"EdgeStartTimestamp":${rng.pick(["1741964966535897932", "1741964966", '"2025-03-14T15:09:26.535897932Z"', "0", "null", String(1_741_964_966_000 + i)])}`];
  fields.push(`"ClientRequestHost":${str(rng, 20)}`);
  if (rng.chance(0.7)) fields.push(`"EdgeResponseStatus":${rng.pick(["200", "503", "302", "404", '"500"', "null"])}`);
  fields.push(`"ClientRequestURI":${str(rng, 40)}`);
  for (let k = rng.int(10); k > 0; k--) fields.push(`"f${rng.int(12)}x":${rng.chance(0.5) ? str(rng, 30) : rng.pick([...NUMBERS, "true", "false", "null"])}`);
  if (rng.chance(0.002)) fields.push(`"Big":"${"ü".repeat(40_000)}😀${"x".repeat(30_000)}"`);
  const distinct = [...new Map(fields.map((field) => [field.slice(0, field.indexOf(":")), field])).values()];
  const ws = () => rng.pick(["", "", " ", "\t"]);
  return `{${ws()}${distinct.map((field) => field.replace(":", `${ws()}:${ws()}`)).join(`,${ws()}`)}${ws()}}`;
}

function randomBatch(seed: number, records: number, nested: number[]): string {
  const rng = prng(seed);
  const lines: string[] = [];
  for (let i = 0; i < records; i++) {
    lines.push(nested.includes(i) ? `{"RayID":"n${i}","ClientRequestHost":"é","Event":{"a":[1,{"b":"😀"}]}}` : flatRecord(rng, i));
    if (rng.chance(0.05)) lines.push("");
  }
  const eol = rng.pick(["\n", "\r\n"]);
  return lines.join(eol) + (rng.chance(0.5) ? eol : "");
}

/** Several 4 MiB pieces of http_requests records, some with non-ASCII and escapes. */
function bigBatch(records: number): string {
  const lines = Array.from({ length: records }, (_, i) => (i % 97 === 0 ? httpRecord(i).replace('"shop.example.com"', '"shöp.例え.com\\u00e9\\ud800"') : httpRecord(i)));
  return `${lines.join("\n")}\n`;
}

describe("the fast path through the route converts as the general path does", () => {
  it.each([
    [1, []],
    [3, [700, 1300]],
  ])("a random gzip NDJSON batch over many segments (seed %i, nested records at %j)", async (seed, nested) => {
    const text = randomBatch(seed, 2500, nested);
    const response = await push("/v1/logpush/http_requests", text);
    expect(response.status, await response.clone().text()).toBe(200);
    const got = await received();
    expect(got.inner === expected(text, "http_requests", got.observed)).toBe(true);
  });

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
    const response = await push(`/v1/logpush/${dataset}${timeField === undefined ? "" : `?time_field=${timeField}`}`, text);
    expect(response.status, await response.clone().text()).toBe(200);
    const got = await received();
    expect(got.inner).toBe(expected(text, dataset, got.observed, timeField ?? null));
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
    const got = await received();
    expect(got.inner === expected(text, "http_requests", got.observed)).toBe(true);
  });

  // No timed assertion: the record is sized so that only a quadratic key check fails, by the test's own timeout. Linear,
  // as now and as the general path, it takes about 2 s; quadratic (each new key compared with every earlier one of
  // the record, as before the fix: 9-10 s at 50,000 keys) it would take over a minute.
  it("a record with 150,000 distinct keys converts as the general path does, in linear time", { timeout: 30_000 }, async () => {
    const text = `{${Array.from({ length: 150_000 }, (_, i) => `"k${i}":${i}`).join(",")}}\n{"RayID":"r"}\n`;
    const response = await push("/v1/logpush/firewall_events", text);
    expect(response.status).toBe(200);
    const got = await received();
    expect(got.inner === expected(text, "firewall_events", got.observed)).toBe(true);
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
      const response = await push("/v1/logpush/http_requests", text);
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: whole.code, message: whole.message });
    }
    expect(await sink.requests(org)).toHaveLength(0);
  });

  it("a non-UTF-8 byte after the first piece: that piece stays delivered, the batch is refused as not UTF-8", async () => {
    const text = bigBatch(14_000);
    const bytes = new TextEncoder().encode(text);
    bytes[Math.floor(bytes.length * 0.6)] = 0xff;
    const response = await push("/v1/logpush/http_requests", bytes, { MAX_DECOMPRESSED_BYTES: "16MiB" });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_payload", message: "the body is not UTF-8" });
    const got = await received();
    expect(got.pieces.length).toBeGreaterThanOrEqual(1);
    expect(expected(text, "http_requests", got.observed).startsWith(`${got.inner},`)).toBe(true);
  });
});

describe("pieces in reused buffers", () => {
  it("an outage from the second piece on parks that piece and every later one, each byte for byte as built", async () => {
    const text = bigBatch(14_000);
    await sink.fault({ mode: "slow", delay_ms: 1, count: 1, tenant: org });
    await sink.fault({ mode: "status", status: 503, count: 20, tenant: org });
    const workerEnv = parkingEnv({ PARK_MAX_BYTES: "64MiB", MAX_DECOMPRESSED_BYTES: "16MiB" });
    const response = await send(workerEnv, "/v1/logpush/http_requests", key, { headers: { "content-encoding": "gzip" }, body: await gzip(text) });
    expect(response.status, response.text).toBe(200);
    const seen = (await received()).pieces;
    const parked: string[] = [];
    for (const object of (await parkingBucket.list({ prefix: orgPrefix(org) })).objects) {
      parked.push(utf8.decode(new Uint8Array(await (await parkingBucket.get(object.key))!.arrayBuffer())));
    }
    // Piece 1 delivered, piece 2 failed (the sink recorded it) and parked, piece 3 on (built in piece 1's buffer) parked.
    expect(seen).toHaveLength(2);
    expect(parked.length).toBeGreaterThanOrEqual(2);
    expect(parked[0] === seen[1]).toBe(true);
    const all = joined([seen[0]!, ...parked]);
    expect(all.inner === expected(text, "http_requests", all.observed)).toBe(true);
  });
});
