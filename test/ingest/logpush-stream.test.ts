import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { UPSTREAM_BATCH_BYTES } from "../../src/ingest/logpush/route.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { bodyOf, ingestWithEnv, mintKey, sink } from "../support/ingest.ts";

// Issue 11: Logpush batches are decompressed, split, converted and forwarded as a stream.

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

/** One http_requests record, about 330 bytes, distinct per index. */
function record(i: number): string {
  return JSON.stringify({
    EdgeStartTimestamp: 1_741_964_966_000 + i, // unix milliseconds
    ClientIP: `203.0.${(i >> 8) & 255}.${i & 255}`,
    ClientRequestHost: "shop.example.com",
    ClientRequestMethod: i % 3 === 0 ? "POST" : "GET",
    ClientRequestURI: `/checkout?step=${i % 7}&item=${i}`,
    ClientRequestUserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    EdgeResponseStatus: i % 50 === 0 ? 503 : 200,
    EdgeResponseBytes: 1000 + (i % 9000),
    RayID: `8f${i.toString(16).padStart(14, "0")}`,
  });
}

/**
 * A gzip NDJSON batch of `records` records generated as it is sent (no declared length): the
 * test holds neither the batch nor its compressed form. `pause(i)` may hold the sender before record i.
 */
function batch(records: number, pause?: (i: number) => Promise<void>): ReadableStream<Uint8Array> {
  let i = 0;
  const encoder = new TextEncoder();
  const text = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i >= records) return controller.close();
      if (pause) await pause(i);
      const lines: string[] = [];
      for (const end = Math.min(records, i + 2_000); i < end; i++) lines.push(record(i));
      controller.enqueue(encoder.encode(`${lines.join("\n")}\n`));
    },
  });
  return text.pipeThrough(new CompressionStream("gzip"));
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
});
