import { readdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";

/** The bench's request bodies and its workerd memory probe, shared by run.ts and profile.ts. */

/** A realistic OTLP batch: 20 spans from the SDK, serialized as the proto exporter does, gzipped. */
export function traceBatch(): Uint8Array {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
  const tracer = provider.getTracer("bench");
  for (let i = 0; i < 20; i++) {
    const span = tracer.startSpan(`GET /api/items/${i}`, { attributes: { "http.request.method": "GET", "http.response.status_code": 200, "url.path": `/api/items/${i}` } });
    span.end();
  }
  const encoded = ProtobufTraceSerializer.serializeRequest(memory.getFinishedSpans())!;
  return process.env.BENCH_IDENTITY ? encoded : gzipSync(encoded);
}

/** An OTLP-looking gzip body of about `target` bytes (span-like text with random ids: about 3:1), forwarded as it came. */
export function largeGzipBody(target: number): Uint8Array {
  const parts: string[] = [];
  let compressed = new Uint8Array(0);
  while (compressed.byteLength < target) {
    for (let i = 0; i < 2_000; i++) parts.push(`{"traceId":"${crypto.randomUUID().replaceAll("-", "")}","name":"GET /api/items/${i}","attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}]}`);
    compressed = gzipSync(parts.join(","));
  }
  return compressed;
}

/** Logpush http_requests NDJSON up to `limit` bytes, as a job sends it (before gzip). */
export function logpushNdjson(limit: number): { text: string; records: number } {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; ; i++) {
    const line = JSON.stringify({
      EdgeStartTimestamp: 1_741_964_966_000_000_000 + i * 1000,
      ClientIP: `203.0.${(i >> 8) & 255}.${i & 255}`,
      ClientRequestHost: "shop.example.com",
      ClientRequestMethod: i % 3 === 0 ? "POST" : "GET",
      ClientRequestURI: `/checkout?step=${i % 7}&item=${i}`,
      ClientRequestUserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
      EdgeResponseStatus: i % 50 === 0 ? 503 : 200,
      EdgeResponseBytes: 1000 + (i % 9000),
      RayID: `8f${i.toString(16).padStart(14, "0")}`,
    });
    if (size + line.length + 1 > limit) break;
    lines.push(line);
    size += line.length + 1;
  }
  return { text: `${lines.join("\n")}\n`, records: lines.length };
}

/** workerd's resident memory (the runtime Miniflare started under this process), in MiB. */
export function workerdRssMib(): number {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "workerd") continue;
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      if (!new RegExp(`^PPid:\\s+${process.pid}$`, "m").test(status)) continue;
      total += Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) / 1024;
    } catch {
      // the process went away
    }
  }
  return total;
}

/** CPU seconds (user + system) used so far by the workerd processes Miniflare started under this process. */
export function workerdCpuSeconds(): number {
  let ticks = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "workerd") continue;
      // Fields after the parenthesised command: state(3) ppid(4) ... utime(14) stime(15).
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      if (Number(fields[1]) !== process.pid) continue;
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process went away
    }
  }
  return ticks / 100;
}
