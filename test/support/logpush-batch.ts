// The Logpush batches of test/ingest-e2e/logpush-large.test.ts (and the bench's, bench/bodies.ts, which runs in Node without the test helpers).

/** One http_requests record, about 330 bytes, distinct per index. */
export function record(i: number): string {
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
export function batch(records: number, pause?: (i: number) => Promise<void>): ReadableStream<Uint8Array> {
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
