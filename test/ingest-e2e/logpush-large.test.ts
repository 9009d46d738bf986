import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { UPSTREAM_BATCH_BYTES } from "../../src/ingest/logpush/route.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { ingestWithEnv, mintKey, sink } from "../support/ingest.ts";
import { batch, record } from "../support/logpush-batch.ts";

// Issue 11: Logpush batches are decompressed, split, converted and forwarded as a stream. The slowest check
// (about 20 s of CPU: 80 MiB decompressed, converted and received), run by `npm run test:e2e`; the rest is in
// test/ingest/logpush-stream.test.ts.

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
});
