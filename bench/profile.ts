import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { REPO_ROOT } from "../tools/paths.ts";
import { largeGzipBody, logpushNdjson, traceBatch, workerdCpuSeconds, workerdRssMib } from "./bodies.ts";
import { benchSetup, runLoadGenerator, startBenchRuntime, type LoadResult } from "./runtime.ts";

/**
 * `npm run bench:profile`: where a request's time goes. The same bundled runtime as `npm run
 * bench` (runtime.ts) with workerd's inspector on; for each load below, a V8 CPU profile of the
 * Worker's isolate is taken over the Chrome DevTools Protocol while the load runs, and its self
 * time is summed by function and by source file (the bundle's `// path` module comments map a
 * line to its file). Written to bench/results/profile.md and profile.json.
 *
 * The profile sees JavaScript on the isolate's thread, plus "(program)" (V8 and workerd native
 * work on that thread outside any JS frame) and "(garbage collector)"; workerd's work on other
 * threads (sockets, KV storage) is not in it. workerd's whole CPU time over the same window is
 * read from /proc beside it, so the share the isolate explains is visible.
 */
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const DISTINCT_ORGS = Number(process.env.BENCH_ORGS ?? 10_000);
const BASE_PORT = Number(process.env.BENCH_BASE_PORT ?? 28787);
const INSPECTOR_PORT = BASE_PORT + 9;
/** Microseconds between samples: fine enough for a 1-2 ms request, light enough not to dominate it. */
const SAMPLING_US = 200;

const { settings, persistDir } = benchSetup(BASE_PORT, "bench-profile");
const log = (message: string) => console.log(`[profile ${new Date().toISOString().slice(11, 19)}] ${message}`);

/** A minimal CDP client over Node's global WebSocket. */
class Inspector {
  private next = 0;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private readonly socket: WebSocket;
  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
      if (message.id === undefined) return;
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result);
    });
  }
  static async attach(workerName: string): Promise<Inspector> {
    const targets = (await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json`)).json()) as { title: string; webSocketDebuggerUrl: string }[];
    const target = targets.find((t) => t.title.endsWith(`:${workerName}`)) ?? targets.find((t) => t.title.includes(workerName));
    if (!target) throw new Error(`no inspector target for ${workerName}: ${targets.map((t) => t.title).join(", ")}`);
    const socket = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((done, fail) => {
      socket.addEventListener("open", done, { once: true });
      socket.addEventListener("error", () => fail(new Error(`inspector ${target.webSocketDebuggerUrl}: connection failed`)), { once: true });
    });
    return new Inspector(socket);
  }
  send<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.next;
    this.socket.send(JSON.stringify({ id, method, params }));
    return new Promise<T>((resolve, reject) => this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject }));
  }
  close(): void {
    this.socket.close();
  }
}

type CallFrame = { functionName: string; url: string; lineNumber: number; columnNumber: number };
type CpuProfile = { nodes: { id: number; callFrame: CallFrame }[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };

/** Line (0-based) → source file of a wrangler/esbuild bundle, from its `// path` module comments. */
function bundleFiles(bundlePath: string, entryDir: string): (line: number) => string {
  const starts: { line: number; file: string }[] = [];
  readFileSync(bundlePath, "utf8")
    .split("\n")
    .forEach((text, line) => {
      const match = /^\/\/ (\S+\.(?:m?[jt]s|json))$/.exec(text);
      if (match) starts.push({ line, file: relative(REPO_ROOT, resolve(REPO_ROOT, entryDir, match[1]!)).replace(/^.*node_modules\//, "node_modules/") });
    });
  return (line) => {
    let file = "(bundle prelude)";
    for (const start of starts) {
      if (start.line > line) break;
      file = start.file;
    }
    return file;
  };
}

/** The group a file's time is reported under: our modules by file, a dependency by package. */
function groupOf(frame: CallFrame, file: string | null): string {
  if (frame.functionName === "(idle)") return "idle";
  if (frame.functionName === "(garbage collector)") return "runtime: garbage collector";
  if (frame.functionName === "(program)") return "runtime: (program), native outside JS frames";
  if (frame.functionName === "(root)") return "runtime: (root)";
  if (file === null) return "runtime/native: built-ins and workerd APIs";
  const dependency = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  return dependency ? dependency[1]! : file;
}

type Row = { name: string; self_ms: number; share: number; us_per_request: number | null };
type Phase = {
  name: string;
  worker: string;
  requests: number;
  rps: number | null;
  wall_s: number;
  profiled_ms: number;
  busy_ms: number;
  workerd_cpu_ms: number;
  busy_us_per_request: number | null;
  workerd_cpu_us_per_request: number | null;
  peak_js_heap_mib?: number;
  peak_rss_increase_mib?: number;
  by_group: Row[];
  by_function: (Row & { file: string })[];
};

function summarize(name: string, worker: string, profile: CpuProfile, fileOf: (line: number) => string, requests: number, wallS: number, workerdCpuMs: number, rps: number | null): Phase {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const groups = new Map<string, number>();
  const functions = new Map<string, { name: string; file: string; ms: number }>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    // A sample stands for the time until the next one (DevTools' convention); the last for the profile's end.
    const us = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1]! : Math.max(0, profile.endTime - (profile.startTime + profile.timeDeltas.slice(0, i + 1).reduce((a, b) => a + b, 0)));
    const frame = byId.get(profile.samples[i]!)!.callFrame;
    const file = frame.url.endsWith("worker.js") ? fileOf(frame.lineNumber) : null;
    const group = groupOf(frame, file);
    const ms = us / 1000;
    total += ms;
    groups.set(group, (groups.get(group) ?? 0) + ms);
    const where = file === null ? frame.url || "(native)" : `${file}:${frame.lineNumber + 1}`;
    const key = `${frame.functionName || "(anonymous)"} ${where}`;
    const entry = functions.get(key) ?? { name: frame.functionName || "(anonymous)", file: where, ms: 0 };
    entry.ms += ms;
    functions.set(key, entry);
  }
  const busy = total - (groups.get("idle") ?? 0);
  const perRequest = (ms: number) => (requests > 0 ? (ms * 1000) / requests : null);
  const row = (label: string, ms: number): Row => ({ name: label, self_ms: ms, share: ms / total, us_per_request: perRequest(ms) });
  return {
    name,
    worker,
    requests,
    rps,
    wall_s: wallS,
    profiled_ms: total,
    busy_ms: busy,
    workerd_cpu_ms: workerdCpuMs,
    busy_us_per_request: perRequest(busy),
    workerd_cpu_us_per_request: perRequest(workerdCpuMs),
    by_group: [...groups].map(([label, ms]) => row(label, ms)).sort((a, b) => b.self_ms - a.self_ms),
    by_function: [...functions.values()]
      .filter((f) => f.name !== "(idle)")
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 20)
      .map((f) => ({ ...row(f.name, f.ms), file: f.file })),
  };
}

async function autocannonLoad(url: string, options: { headers: Record<string, string>; body: Uint8Array; keys?: string[]; connections?: number; duration?: number; expect: number }): Promise<LoadResult> {
  const result = await runLoadGenerator(persistDir, { url, headers: options.headers, body: options.body, keys: options.keys, connections: options.connections ?? CONNECTIONS, duration: options.duration ?? DURATION_S, warmup: 0 });
  const unexpected = Object.entries(result.statusCodeStats ?? {}).filter(([code]) => Number(code) !== options.expect);
  if (unexpected.length > 0 || result.errors > 0) throw new Error(`${url}: unexpected statuses ${JSON.stringify(unexpected)}, errors ${result.errors}`);
  return result;
}

type Bundle = { path: string; entryDir: string };

/** Profiles `worker` while `work` runs; `work` returns how many requests it made and their rate. */
async function profiled(name: string, worker: string, bundle: Bundle, work: (inspector: Inspector) => Promise<{ requests: number; rps: number | null; extra?: Partial<Phase> }>): Promise<Phase> {
  const inspector = await Inspector.attach(worker);
  try {
    await inspector.send("Profiler.enable");
    await inspector.send("Profiler.setSamplingInterval", { interval: SAMPLING_US });
    const cpuBefore = workerdCpuSeconds();
    const started = performance.now();
    await inspector.send("Profiler.start");
    const { requests, rps, extra } = await work(inspector);
    const { profile } = await inspector.send<{ profile: CpuProfile }>("Profiler.stop");
    const wallS = (performance.now() - started) / 1000;
    const cpuMs = (workerdCpuSeconds() - cpuBefore) * 1000;
    await inspector.send("Profiler.disable");
    const phase = { ...summarize(name, worker, profile, bundleFiles(bundle.path, bundle.entryDir), requests, wallS, cpuMs, rps), ...extra };
    log(`${name}: ${requests} requests, isolate busy ${phase.busy_ms.toFixed(0)} ms of ${phase.profiled_ms.toFixed(0)} ms profiled, workerd CPU ${cpuMs.toFixed(0)} ms`);
    return phase;
  } finally {
    inspector.close();
  }
}

log("bundling the Workers and starting the runtime (inspector on) ...");
const stack = await startBenchRuntime(settings, persistDir, { inspectorPort: INSPECTOR_PORT });
const ingestBundle = { path: join(persistDir, "dist", "ingest", "worker.js"), entryDir: "src/ingest" };
const passthroughBundle = { path: join(persistDir, "dist", "passthrough", "worker.js"), entryDir: "bench/passthrough" };
try {
  const admin = (method: string, path: string, body?: unknown) =>
    fetch(`${stack.billingUrl}/admin${path}`, { method, headers: { authorization: `Bearer ${settings.ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const paying = "profile_paying";
  const created = await fetch(`${stack.autumnUrl}/_control/customers?deliver=0`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: paying }) });
  if (!created.ok) throw new Error(`stand-in: ${created.status}`);
  const minted = await admin("POST", `/orgs/${paying}/ingest-keys`);
  if (minted.status !== 201) throw new Error(`mint: ${minted.status}`);
  const payingKey = ((await minted.json()) as { key: string }).key;
  const orgs = Array.from({ length: DISTINCT_ORGS }, (_, i) => `profile_org_${i}`);
  const chunk = Math.ceil(orgs.length / 4);
  const manyKeys = (
    await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const response = await fetch(`${stack.gateBenchUrl}/mint`, { method: "POST", body: JSON.stringify({ orgs: orgs.slice(i * chunk, (i + 1) * chunk), concurrency: 8 }) });
        if (!response.ok) throw new Error(`bulk mint: ${response.status}`);
        return ((await response.json()) as { keys: string[] }).keys;
      }),
    )
  ).flat();
  log(`minted ${manyKeys.length} keys`);

  const body = traceBatch();
  const otlp = { "content-type": "application/x-protobuf", "content-encoding": "gzip" };
  const paid = { ...otlp, authorization: `Bearer ${payingKey}` };
  const steady = async (url: string, options: Parameters<typeof autocannonLoad>[1]) => {
    const result = await autocannonLoad(url, options);
    return { requests: result.requests.total, rps: result.requests.average };
  };
  // Warm both isolates and the paying org's caches first: the warm phases must see none of that.
  await autocannonLoad(`${stack.passthroughUrl}/v1/traces`, { headers: otlp, body, duration: 2, expect: 200 });
  await autocannonLoad(`${stack.ingestUrl}/v1/traces`, { headers: paid, body, duration: 2, expect: 200 });
  await autocannonLoad(`${stack.meteredIngestUrl}/v1/traces`, { headers: paid, body, duration: 2, expect: 200 });

  const phases: Phase[] = [];
  phases.push(await profiled("pass-through Worker, small OTLP batches (the runtime hop alone)", "tollgate-passthrough-bench", passthroughBundle, () => steady(`${stack.passthroughUrl}/v1/traces`, { headers: otlp, body, expect: 200 })));
  phases.push(await profiled("ingest Worker, paying org, warm caches", "tollgate-ingest", ingestBundle, () => steady(`${stack.ingestUrl}/v1/traces`, { headers: paid, body, expect: 200 })));
  phases.push(await profiled("ingest Worker with usage metering on, paying org, warm caches", "tollgate-ingest-metered", ingestBundle, () => steady(`${stack.meteredIngestUrl}/v1/traces`, { headers: paid, body, expect: 200 })));
  phases.push(await profiled(`ingest Worker, ${DISTINCT_ORGS.toLocaleString("en")} distinct paying orgs (cold keys)`, "tollgate-ingest", ingestBundle, () => steady(`${stack.ingestUrl}/v1/traces`, { headers: otlp, body, keys: manyKeys, expect: 200 })));
  const large = largeGzipBody(1024 * 1024);
  phases.push(await profiled("pass-through Worker, 1 MiB gzip OTLP bodies (8 connections)", "tollgate-passthrough-bench", passthroughBundle, () => steady(`${stack.passthroughUrl}/v1/traces`, { headers: otlp, body: large, connections: 8, expect: 200 })));
  phases.push(await profiled("ingest Worker, 1 MiB gzip OTLP bodies (8 connections)", "tollgate-ingest", ingestBundle, () => steady(`${stack.ingestUrl}/v1/traces`, { headers: paid, body: large, connections: 8, expect: 200 })));
  const batch = logpushNdjson(64 * 2 ** 20 - 4096);
  const batchGzip = gzipSync(batch.text);
  phases.push(
    await profiled(`ingest Worker, one Logpush batch of 64 MiB decompressed NDJSON (${batch.records.toLocaleString("en")} records)`, "tollgate-ingest", ingestBundle, async (inspector) => {
      // The isolate's JS heap beside workerd's RSS: how much of the peak is JavaScript objects.
      await new Promise((done) => setTimeout(done, 500));
      const rssBefore = workerdRssMib();
      let peakRss = rssBefore;
      let peakHeap = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peakRss = Math.max(peakRss, workerdRssMib());
          const heap = await inspector.send<{ usedSize: number }>("Runtime.getHeapUsage").catch(() => ({ usedSize: 0 }));
          peakHeap = Math.max(peakHeap, heap.usedSize / 2 ** 20);
          await new Promise((done) => setTimeout(done, 20));
        }
      })();
      const started = performance.now();
      const response = await fetch(`${stack.ingestUrl}/v1/logpush/http_requests`, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "gzip", authorization: `Bearer ${payingKey}` }, body: batchGzip as Uint8Array<ArrayBuffer> });
      await response.arrayBuffer();
      const seconds = (performance.now() - started) / 1000;
      sampling = false;
      await sampler;
      if (response.status !== 200) throw new Error(`logpush batch: ${response.status}`);
      log(`logpush batch: ${(batch.text.length / 2 ** 20 / seconds).toFixed(1)} MiB/s, peak RSS +${(peakRss - rssBefore).toFixed(0)} MiB, peak JS heap ${peakHeap.toFixed(0)} MiB`);
      return { requests: 1, rps: null, extra: { peak_js_heap_mib: peakHeap, peak_rss_increase_mib: peakRss - rssBefore } };
    }),
  );

  // The same batch again, unprofiled, with a full GC forced every 250 ms before reading the heap:
  // the live heap at its peak, against the heap used above (which counts garbage not yet collected).
  const live = await (async () => {
    const inspector = await Inspector.attach("tollgate-ingest");
    try {
      await inspector.send("HeapProfiler.enable");
      await new Promise((done) => setTimeout(done, 500));
      let peakLive = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          await inspector.send("HeapProfiler.collectGarbage");
          peakLive = Math.max(peakLive, (await inspector.send<{ usedSize: number }>("Runtime.getHeapUsage")).usedSize / 2 ** 20);
          await new Promise((done) => setTimeout(done, 250));
        }
      })();
      const response = await fetch(`${stack.ingestUrl}/v1/logpush/http_requests`, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "gzip", authorization: `Bearer ${payingKey}` }, body: batchGzip as Uint8Array<ArrayBuffer> });
      await response.arrayBuffer();
      sampling = false;
      await sampler;
      if (response.status !== 200) throw new Error(`logpush batch: ${response.status}`);
      log(`logpush batch with forced GCs: peak live JS heap ${peakLive.toFixed(0)} MiB`);
      return peakLive;
    } finally {
      inspector.close();
    }
  })();

  const f = (n: number | null, digits = 0) => (n === null ? "—" : n.toFixed(digits));
  const pct = (n: number) => `${(n * 100).toFixed(1)} %`;
  const sections = phases.map((phase) =>
    [
      `### ${phase.name}`,
      "",
      `${phase.requests.toLocaleString("en")} request${phase.requests === 1 ? "" : "s"} in ${f(phase.wall_s, 1)} s${phase.rps === null ? "" : ` (${f(phase.rps)} req/s)`}; the ${phase.worker} isolate busy ${f(phase.busy_ms)} ms of ${f(phase.profiled_ms)} ms profiled` +
        `${phase.busy_us_per_request === null ? "" : ` (${f(phase.busy_us_per_request)} µs per request)`}; all of workerd used ${f(phase.workerd_cpu_ms)} ms of CPU${phase.workerd_cpu_us_per_request === null ? "" : ` (${f(phase.workerd_cpu_us_per_request)} µs per request)`}` +
        `${phase.peak_rss_increase_mib === undefined ? "" : `; peak workerd RSS +${f(phase.peak_rss_increase_mib)} MiB, peak JS heap of the isolate ${f(phase.peak_js_heap_mib ?? null)} MiB`}.`,
      "",
      "| self time by source | ms | share of profile | µs per request |",
      "|---|---:|---:|---:|",
      ...phase.by_group.map((row) => `| ${row.name} | ${f(row.self_ms, 1)} | ${pct(row.share)} | ${f(row.us_per_request)} |`),
      "",
      "| top functions by self time (idle left out) | where | ms | share |",
      "|---|---|---:|---:|",
      ...phase.by_function.slice(0, 12).map((row) => `| ${row.name} | ${row.file} | ${f(row.self_ms, 1)} | ${pct(row.share)} |`),
    ].join("\n"),
  );
  const header = `CPU profiles of workerd's isolates through the inspector (V8 sampling every ${SAMPLING_US} µs), ${new Date().toISOString().slice(0, 10)}, ${DURATION_S} s per load, ${CONNECTIONS} connections unless said; the same bundled runtime as \`npm run bench\` with the inspector on (which costs some throughput: compare ratios, not req/s, with the benchmark). "idle" is the isolate's thread waiting (for the network, KV, the upstream); "(program)" is native work on that thread outside any JS frame (workerd's stream and socket plumbing, V8 itself); built-ins and workerd APIs (JSON, crypto.subtle, fetch, streams) are frames without a source file.`;
  const liveLine = `The Logpush batch once more, unprofiled, with a full garbage collection forced every 250 ms before reading the heap: peak live JS heap ${f(live)} MiB (the ${f(phases.at(-1)!.peak_js_heap_mib ?? null)} MiB above counts garbage not yet collected).`;
  const markdown = `# Where the time goes (\`npm run bench:profile\`)\n\n${header}\n\n${sections.join("\n\n")}\n\n${liveLine}\n`;
  const outDir = join(REPO_ROOT, "bench", "results");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "profile.md"), markdown);
  writeFileSync(join(outDir, "profile.json"), `${JSON.stringify({ date: new Date().toISOString(), sampling_us: SAMPLING_US, duration_s: DURATION_S, connections: CONNECTIONS, phases, logpush_peak_live_heap_mib: live }, null, 2)}\n`);
  console.log(`\n${markdown}\nWritten to bench/results/profile.md and profile.json.`);
} finally {
  await stack.stop();
}
