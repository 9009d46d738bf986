import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { UPSTREAM_BATCH_BYTES } from "../../src/ingest/logpush/route.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { bodyOf, gzip, ingestWithEnv, mintKey, sink } from "../support/ingest.ts";
import { batch, record } from "../support/logpush-batch.ts";

// Issue 11: Logpush batches are decompressed, split, converted and forwarded as a stream. The three slowest
// checks (about 20 s, 10 s and 5 s of CPU: 80 MiB, 13 MiB and 5 MiB decompressed, converted and received), run by
// `npm run test:e2e`; the shapes and refusals are in test/ingest/logpush-*.test.ts.

let org: string;
let key: string;

beforeEach(async () => {
  gate.reset();
  org = uniqueOrg("lpstream");
  key = (await mintKey(org)).key;
});
afterEach(async () => {
  await sink.clearFaults();
  await deleteAllAlarms();
});

const MiB = 1024 * 1024;

async function forwardedLogs() {
  const requests = await sink.requests(org);
  return requests.map((r) => ({ record: r, otlp: JSON.parse(new TextDecoder().decode(bodyOf(r))) }));
}

const push = (workerEnv: object, body: ReadableStream<Uint8Array>) =>
  ingestWithEnv(workerEnv, "/v1/logpush/http_requests", { key, headers: { "content-type": "application/json", "content-encoding": "gzip" }, body });

describe("Logpush in bounded memory", () => {
  it(
    "a batch larger than the isolate could hold twice (80 MiB decompressed) goes upstream in bounded pieces, every record delivered",
    { timeout: 240_000 },
    async () => {
      const records = Math.ceil((80 * MiB) / record(0).length);
      const big = { ...env, MAX_BODY_BYTES: "64MiB", MAX_DECOMPRESSED_BYTES: "100MiB" };
      const response = await push(big, batch(records));
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: "accepted", records });
      const requests = await sink.accepted(org);
      // OTLP JSON is larger than the input, so at least 80 MiB / 4 MiB requests; each one bounded.
      expect(requests).toBeGreaterThanOrEqual(20);
      const last = await sink.requests(org);
      for (const request of last) expect(request.bytes).toBeLessThan(UPSTREAM_BATCH_BYTES + 4 * MiB);
    },
  );
  it("an upstream failure after part of the batch was delivered is a retryable 503; the retry delivers all of it", { timeout: 60_000 }, async () => {
    const roomy = { ...env, MAX_DECOMPRESSED_BYTES: "64MiB" };
    const records = 40_000; // about 13 MiB of NDJSON: several upstream requests
    const sender = batch(records, async (i) => {
      // After the first upstream request is in, the backend starts failing.
      if (i === 20_000) {
        while ((await sink.accepted(org)) === 0) await new Promise((resolve) => setTimeout(resolve, 20));
        await sink.fault({ mode: "status", status: 503, tenant: org, count: 1 });
      }
    });
    const failed = await push(roomy, sender);
    expect(failed.status).toBe(503);
    expect(failed.headers.get("retry-after")).toBe("5");
    expect(await failed.json()).toMatchObject({ error: "upstream_unavailable", message: expect.stringContaining("retry the whole batch") });
    const deliveredBefore = await sink.requests(org);
    const partial = deliveredBefore.filter((r) => r.bytes > 0).length;
    expect(partial).toBeGreaterThanOrEqual(1);

    const retried = await push(roomy, batch(records));
    expect(retried.status).toBe(200);
    expect(await retried.json()).toEqual({ status: "accepted", records });
    // Every record arrived with the retry; the first part was seen twice (as the README says).
    const bodies = (await sink.requests(org)).map((r) => JSON.parse(new TextDecoder().decode(bodyOf(r))));
    const rays = bodies.flatMap((b) => b.resourceLogs[0].scopeLogs[0].logRecords.map((l: { attributes: { key: string; value: { stringValue?: string } }[] }) => l.attributes.find((a) => a.key === "RayID")?.value.stringValue));
    expect(new Set(rays).size).toBe(records);
    expect(rays.length).toBeGreaterThan(records);
  });
  it("MAX_DECOMPRESSED_BYTES=0: a batch past the 4 MiB cap is converted whole; broken gzip is still refused", async () => {
    const off = { ...env, MAX_DECOMPRESSED_BYTES: "0" };
    const lines = Array.from({ length: 60_000 }, (_, i) => `{"EdgeStartTimestamp":${1_741_964_966_000_000_000n + BigInt(i)},"ClientIP":"192.0.2.1","EdgeResponseStatus":200}`).join("\n");
    expect(lines.length).toBeGreaterThan(4 * 1024 * 1024);
    const body = await gzip(lines);
    const headers = { authorization: `Bearer ${key}`, "content-type": "application/json", "content-encoding": "gzip" };
    const response = await ingestWithEnv(off, "/v1/logpush/http_requests", { headers, body });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "accepted", records: 60_000 });
    const times = (await forwardedLogs()).flatMap(({ otlp }) => otlp.resourceLogs[0].scopeLogs[0].logRecords.map((l: { timeUnixNano: string }) => l.timeUnixNano));
    // Every timestamp exact to the nanosecond, in order.
    expect(times).toEqual(Array.from({ length: 60_000 }, (_, i) => String(1_741_964_966_000_000_000n + BigInt(i))));
    const truncated = await ingestWithEnv(off, "/v1/logpush/http_requests", { headers, body: body.slice(0, body.byteLength - 100) });
    expect(truncated.status).toBe(400);
    expect(await truncated.json()).toMatchObject({ error: "invalid_gzip" });
  });
});
