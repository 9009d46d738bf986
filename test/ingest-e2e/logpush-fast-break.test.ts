import { describe, expect, it } from "vitest";
import { orgPrefix } from "../../src/ingest/parking/store.ts";
import { freshOrgPerTest, gzip, sink } from "../support/ingest.ts";
import { bigBatch, expected, joined, push, randomBatch, received, utf8 } from "../support/logpush-compare.ts";
import { parkingBucket, parkingEnv, send } from "../support/parking.ts";

// The slow half of test/ingest/logpush-fast-break.test.ts (a breaker review of the Logpush fast path), in
// `npm run test:e2e`: batches over many segments and several 4 MiB pieces, through the Worker.

let org: string;
let key: string;
freshOrgPerTest("lp-fast-brk", (o, k) => {
  org = o;
  key = k;
});

describe("the fast path through the route converts as the general path does", () => {
  it.each([
    [1, []],
    [3, [700, 1300]],
  ])("a random gzip NDJSON batch over many segments (seed %i, nested records at %j)", async (seed, nested) => {
    const text = randomBatch(seed, 2500, nested);
    const response = await push(key, "/v1/logpush/http_requests", text);
    expect(response.status, await response.clone().text()).toBe(200);
    const got = await received(org);
    expect(got.inner === expected(text, "http_requests", org, got.observed)).toBe(true);
  });

  // No timed assertion: the record is sized so that only a quadratic key check fails, by the test's own timeout. Linear,
  // as now and as the general path, it takes about 2 s; quadratic (each new key compared with every earlier one of
  // the record, as before the fix: 9-10 s at 50,000 keys) it would take over a minute.
  it("a record with 150,000 distinct keys converts as the general path does, in linear time", { timeout: 30_000 }, async () => {
    const text = `{${Array.from({ length: 150_000 }, (_, i) => `"k${i}":${i}`).join(",")}}\n{"RayID":"r"}\n`;
    const response = await push(key, "/v1/logpush/firewall_events", text);
    expect(response.status).toBe(200);
    const got = await received(org);
    expect(got.inner === expected(text, "firewall_events", org, got.observed)).toBe(true);
  });
});

describe("pieces", () => {
  it("a non-UTF-8 byte after the first piece: that piece stays delivered, the batch is refused as not UTF-8", async () => {
    const text = bigBatch(14_000);
    const bytes = new TextEncoder().encode(text);
    bytes[Math.floor(bytes.length * 0.6)] = 0xff;
    const response = await push(key, "/v1/logpush/http_requests", bytes, { MAX_DECOMPRESSED_BYTES: "16MiB" });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_payload", message: "the body is not UTF-8" });
    const got = await received(org);
    expect(got.pieces.length).toBeGreaterThanOrEqual(1);
    expect(expected(text, "http_requests", org, got.observed).startsWith(`${got.inner},`)).toBe(true);
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
    const seen = (await received(org)).pieces;
    const parked: string[] = [];
    for (const object of (await parkingBucket.list({ prefix: orgPrefix(org) })).objects) {
      parked.push(utf8.decode(new Uint8Array(await (await parkingBucket.get(object.key))!.arrayBuffer())));
    }
    // Piece 1 delivered, piece 2 failed (the sink recorded it) and parked, piece 3 on (built in piece 1's buffer) parked.
    expect(seen).toHaveLength(2);
    expect(parked.length).toBeGreaterThanOrEqual(2);
    expect(parked[0] === seen[1]).toBe(true);
    const all = joined([seen[0]!, ...parked]);
    expect(all.inner === expected(text, "http_requests", org, all.observed)).toBe(true);
  });
});
