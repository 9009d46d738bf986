import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { parseLogpushBody, toOtlpLogs } from "../../src/ingest/logpush/index.ts";
import { bodyOf, gzip, ingestWithEnv, sink } from "./ingest.ts";
import { record as httpRecord } from "./logpush-batch.ts";
import { prng, type Rng } from "./prng.ts";

/**
 * The Logpush fast path (src/ingest/logpush/flat-records.ts) checked through the Worker: what reaches the upstream or
 * parking against what the general path (parseLogpushBody, toOtlpLogs) gives for the whole body. Shared by
 * test/ingest/logpush-fast-break.test.ts and its slow half in test/ingest-e2e.
 */

export const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const HEAD = '"logRecords":[';
const TAIL = "]}]}]}";

/** Pieces' log records joined (each piece checked to be one whole envelope), and the observed time they carry. */
export function joined(pieces: string[]): { inner: string; observed: bigint } {
  const inners = pieces.map((text) => {
    expect(JSON.parse(text).resourceLogs[0].scopeLogs[0].logRecords.length).toBeGreaterThan(0);
    expect(text.endsWith(TAIL)).toBe(true);
    return text.slice(text.indexOf(HEAD) + HEAD.length, -TAIL.length);
  });
  const first = pieces.length === 0 ? null : JSON.parse(pieces[0]!).resourceLogs[0].scopeLogs[0].logRecords[0];
  return { inner: inners.join(","), observed: first === null ? 0n : BigInt(first.observedTimeUnixNano) };
}

/** What the upstream received for the org, in order. */
export async function received(org: string): Promise<{ inner: string; observed: bigint; pieces: string[] }> {
  const pieces = (await sink.requests(org)).filter((r) => r.path === "/v1/logs").map((r) => utf8.decode(bodyOf(r)));
  return { ...joined(pieces), pieces };
}

/** The general path's log records for the whole body. */
export function expected(text: string, dataset: string, org: string, observed: bigint, timeField: string | null = null): string {
  const parsed = parseLogpushBody(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return JSON.stringify(toOtlpLogs(parsed.records, { dataset, orgId: org, observedAtNs: observed, timeField }).resourceLogs[0]!.scopeLogs[0]!.logRecords).slice(1, -1);
}

/** A Logpush batch gzipped as a job sends it, to the ingest Worker (its env with `extra`). */
export const push = async (key: string, path: string, text: string | Uint8Array, extra: Record<string, unknown> = {}) =>
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

export function randomBatch(seed: number, records: number, nested: number[]): string {
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
export function bigBatch(records: number): string {
  const lines = Array.from({ length: records }, (_, i) => (i % 97 === 0 ? httpRecord(i).replace('"shop.example.com"', '"shöp.例え.com\\u00e9\\ud800"') : httpRecord(i)));
  return `${lines.join("\n")}\n`;
}
