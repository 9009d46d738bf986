import type { Result } from "autocannon";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { Webhook } from "standardwebhooks";
import { IngestGate, type GateSources } from "../src/ingest/gate.ts";
import { loadLocalSettings } from "../tools/dev/settings.ts";
import { REPO_ROOT } from "../tools/paths.ts";
import { startBenchRuntime } from "./runtime.ts";

/**
 * `npm run bench`: every scenario in one run against the local stack (see runtime.ts), so
 * they share the machine's conditions; results are reported as ratios to the
 * direct-to-sink ceiling and to a pass-through Worker that does everything but the gate.
 */
/** Seconds per round; the steady scenarios run ROUNDS interleaved rounds each. */
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const DISTINCT_ORGS = Number(process.env.BENCH_ORGS ?? 10_000);
const BASE_PORT = Number(process.env.BENCH_BASE_PORT ?? 28787);

const persistDir = join(REPO_ROOT, ".wrangler", "bench");
rmSync(persistDir, { recursive: true, force: true });
mkdirSync(persistDir, { recursive: true });
const settings = loadLocalSettings({
  root: null,
  env: {},
  overrides: { BILLING_PORT: String(BASE_PORT), INGEST_PORT: String(BASE_PORT + 1), AUTUMN_PORT: String(BASE_PORT + 2), SINK_PORT: String(BASE_PORT + 3), GRACE_PERIOD: "3d", RESYNC_INTERVAL: "6h" },
});
const run = promisify(execFile);
const log = (message: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

log("bundling the Workers and starting the runtime ...");
const stack = await startBenchRuntime(settings, persistDir);
const gateUrl = stack.gateBenchUrl;

async function admin(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${stack.billingUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${settings.ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}
async function control(path: string, body: unknown = {}): Promise<void> {
  const response = await fetch(`${stack.autumnUrl}/_control${path}${path.includes("?") ? "&" : "?"}deliver=0`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`stand-in ${path}: ${response.status} ${await response.text()}`);
}
async function mint(orgId: string): Promise<string> {
  const response = await admin("POST", `/orgs/${orgId}/ingest-keys`);
  if (response.status !== 201) throw new Error(`mint ${orgId}: ${response.status}`);
  return ((await response.json()) as { key: string }).key;
}
async function pool<T>(items: T[], concurrency: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index]!, index);
    }
  }));
}

/** A realistic OTLP batch: 20 spans from the SDK, serialized as the proto exporter does, gzipped. */
function traceBatch(): Uint8Array {
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

type Scenario = { name: string; rps: number; p50_ms: number; p99_ms: number; requests: number; errors: number; unexpected_status: number; statuses: Record<string, number> };

/** One measured run of the load generator (load.ts, in a child process), with its statuses checked. */
async function load(name: string, url: string, options: { headers: Record<string, string>; body: Uint8Array; expect: number; keys?: string[] }): Promise<Scenario> {
  const bodyFile = join(persistDir, "body.bin");
  writeFileSync(bodyFile, options.body);
  let keysFile: string | undefined;
  if (options.keys) {
    keysFile = join(persistDir, "keys.json");
    writeFileSync(keysFile, JSON.stringify(options.keys));
  }
  // Cold-cache runs get no warm-up: warming is what they must not have.
  const spec = { url, connections: CONNECTIONS, duration: DURATION_S, warmup: options.keys ? 0 : 2, headers: options.headers, bodyFile, keysFile };
  const { stdout } = await run(process.execPath, [join(REPO_ROOT, "bench", "load.ts"), JSON.stringify(spec)], { maxBuffer: 64 * 1024 * 1024 });
  const result = JSON.parse(stdout) as Result & { statusCodeStats?: Record<string, { count: number }> };
  const statuses = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s?.count ?? 0])) as Record<string, number>;
  const unexpected = Object.entries(statuses).reduce((sum, [code, count]) => sum + (Number(code) === options.expect ? 0 : count), 0);
  const scenario = { name, rps: result.requests.average, p50_ms: result.latency.p50, p99_ms: result.latency.p99, requests: result.requests.total, errors: result.errors + result.timeouts, unexpected_status: unexpected, statuses };
  log(`${name}: ${scenario.rps.toFixed(0)} req/s, p50 ${scenario.p50_ms} ms, p99 ${scenario.p99_ms} ms, errors ${scenario.errors}, unexpected ${unexpected}`);
  return scenario;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

try {
  const body = traceBatch();
  const otlpHeaders: Record<string, string> = process.env.BENCH_IDENTITY ? { "content-type": "application/x-protobuf" } : { "content-type": "application/x-protobuf", "content-encoding": "gzip" };

  log("setting up orgs ...");
  const paying = "bench_paying";
  await control("/customers", { id: paying });
  const payingKey = await mint(paying);
  const suspended = "bench_suspended";
  await control("/customers", { id: suspended });
  const suspendedKey = await mint(suspended);
  if (!(await admin("POST", `/orgs/${suspended}/override`, { action: "suspend", note: "benchmark: the 402 path" })).ok) throw new Error("could not suspend");
  const manyKeys: string[] = new Array(DISTINCT_ORGS);
  const setupStarted = Date.now();
  await pool(Array.from({ length: DISTINCT_ORGS }, (_, i) => `bench_org_${i}`), 48, async (org, i) => {
    manyKeys[i] = await mint(org);
  });
  log(`minted ${DISTINCT_ORGS} keys in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s`);

  // Scenarios 1, 1b, 2 and 4 run in interleaved rounds so that drift in the machine's
  // conditions falls on all of them alike; each figure is the median of its rounds.
  const steady = [
    { name: "1. direct to the upstream sink (ceiling)", url: `${stack.sinkUrl}/v1/traces`, options: { headers: { ...otlpHeaders, "x-scope-orgid": paying }, body, expect: 200 } },
    { name: "1b. pass-through Worker, no gate (the runtime hop alone)", url: `${stack.passthroughUrl}/v1/traces`, options: { headers: otlpHeaders, body, expect: 200 } },
    { name: "2. ingest Worker, paying org, warm caches", url: `${stack.ingestUrl}/v1/traces`, options: { headers: { ...otlpHeaders, authorization: `Bearer ${payingKey}` }, body, expect: 200 } },
    { name: "4. ingest Worker, suspended org (402 path)", url: `${stack.ingestUrl}/v1/traces`, options: { headers: { ...otlpHeaders, authorization: `Bearer ${suspendedKey}` }, body, expect: 402 } },
  ];
  const rounds: Scenario[][] = steady.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, scenario] of steady.entries()) rounds[i]!.push(await load(`${scenario.name} (round ${round + 1})`, scenario.url, scenario.options));
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const summarize = (name: string, runs: Scenario[]): Scenario => ({
    name,
    rps: median(runs.map((r) => r.rps)),
    p50_ms: median(runs.map((r) => r.p50_ms)),
    p99_ms: median(runs.map((r) => r.p99_ms)),
    requests: runs.reduce((sum, r) => sum + r.requests, 0),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    unexpected_status: runs.reduce((sum, r) => sum + r.unexpected_status, 0),
    statuses: {},
  });
  const [sinkRuns, hopRuns, payingRuns, suspendedRuns] = rounds;
  const scenarios: Scenario[] = [summarize(steady[0]!.name, sinkRuns!), summarize(steady[1]!.name, hopRuns!), summarize(steady[2]!.name, payingRuns!)];
  scenarios.push(await load(`3. ingest Worker, ${DISTINCT_ORGS.toLocaleString("en")} distinct paying orgs (cold caches, KV path)`, `${stack.ingestUrl}/v1/traces`, { headers: otlpHeaders, body, expect: 200, keys: manyKeys }));
  scenarios.push(summarize(steady[3]!.name, suspendedRuns!));

  // 5. A burst of signed webhooks: 200 orgs in four billing situations, ten deliveries each
  // (two of them Svix redeliveries of an earlier message id), shuffled, 64 at a time.
  log("webhook burst ...");
  const now = Date.now();
  const situations = ["paying", "in_grace", "never_paid", "lapsed"] as const;
  const expected: Record<(typeof situations)[number], { state: string; transitions: number }> = {
    paying: { state: "ok", transitions: 0 },
    in_grace: { state: "overdue", transitions: 1 },
    never_paid: { state: "suspended", transitions: 1 },
    lapsed: { state: "overdue", transitions: 1 },
  };
  const burstOrgs = Array.from({ length: 200 }, (_, i) => ({ id: `burst_${i}`, situation: situations[i % 4]! }));
  await pool(burstOrgs, 16, async ({ id, situation }) => {
    await control("/customers", { id });
    if (situation === "lapsed") await control(`/customers/${id}/invoices`, { status: "paid", total: 49, created_at: now - 90 * 86_400_000 });
    if (situation === "in_grace") await control(`/customers/${id}/past-due`, { at: now });
    if (situation === "never_paid" || situation === "lapsed") await control(`/customers/${id}/past-due`, { at: now - 10 * 86_400_000 });
  });
  const signer = new Webhook(settings.AUTUMN_WEBHOOK_SECRET);
  const deliveries = burstOrgs.flatMap(({ id }) => {
    const ids = Array.from({ length: 8 }, () => `msg_${crypto.randomUUID().replaceAll("-", "")}`);
    return [...ids, ids[0]!, ids[3]!].map((messageId) => ({ org: id, messageId }));
  });
  for (let i = deliveries.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [deliveries[i], deliveries[j]] = [deliveries[j]!, deliveries[i]!];
  }
  const latencies: number[] = [];
  const outcomes = { processed: 0, duplicate: 0, failed: 0 };
  const burstStarted = performance.now();
  await pool(deliveries, 64, async ({ org, messageId }) => {
    const payload = JSON.stringify({ type: "billing.updated", data: { object: "billing.updated", customer_id: org, entity_id: null, plan_changes: [], tags: [] } });
    const at = new Date();
    const started = performance.now();
    const response = await fetch(`${stack.billingUrl}/api/billing/autumn/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "svix-id": messageId, "svix-timestamp": String(Math.floor(at.getTime() / 1000)), "svix-signature": signer.sign(messageId, at, payload) },
      body: payload,
    }).catch(() => null);
    latencies.push(performance.now() - started);
    const answer = response?.ok ? ((await response.json()) as { status: string }).status : "failed";
    if (answer === "processed") outcomes.processed++;
    else if (answer === "duplicate") outcomes.duplicate++;
    else outcomes.failed++;
  });
  const burstSeconds = (performance.now() - burstStarted) / 1000;
  let wrongState = 0;
  let wrongTransitions = 0;
  await pool(burstOrgs, 16, async ({ id, situation }) => {
    const view = (await (await admin("GET", `/orgs/${id}`)).json()) as { state: string; history: { kind: string }[] };
    if (view.state !== expected[situation].state) wrongState++;
    if (view.history.filter((h) => h.kind === "transition").length !== expected[situation].transitions) wrongTransitions++;
  });
  latencies.sort((a, b) => a - b);
  const burst = {
    name: "5. burst of 2,000 signed webhooks over 200 orgs",
    rps: deliveries.length / burstSeconds,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    requests: deliveries.length,
    errors: outcomes.failed,
    ...outcomes,
    orgs_in_wrong_state: wrongState,
    orgs_with_wrong_transition_count: wrongTransitions,
  };
  log(`${burst.name}: ${burst.rps.toFixed(0)}/s, processed ${outcomes.processed}, duplicates ${outcomes.duplicate}, failed ${outcomes.failed}, wrong states ${wrongState}, wrong transition counts ${wrongTransitions}`);

  // 6. The gate decision alone. Warm: pure CPU, timed in Node on the same V8 (workerd's clocks
  // do not advance without I/O). KV and object paths: timed inside workerd with real bindings.
  log("gate micro-benchmarks ...");
  const memorySources: GateSources = {
    hashKey: async (key) => key,
    lookupKey: async () => ({ org_id: "org_warm", key_id: "ik_warm", created_at: 0 }),
    readMirror: async () => null,
    askObject: async () => ({ state: "ok", since: 0, version: 0, suspend_at: null, suspended_at: null }),
  };
  const gate = new IngestGate();
  const t0 = Date.now();
  await gate.checkKey("tg_ik_warm", memorySources, t0);
  await gate.verdict("org_warm", memorySources, t0);
  const iterations = 2_000_000;
  let hits = 0;
  for (let i = 0; i < 200_000; i++) if (gate.cached("tg_ik_warm", t0)) hits++;
  const warmStarted = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) if (gate.cached("tg_ik_warm", t0)) hits++;
  const warmNs = Number(process.hrtime.bigint() - warmStarted) / iterations;
  if (hits !== iterations + 200_000) throw new Error("warm gate missed");
  if (!(await fetch(`${gateUrl}/setup`)).ok) throw new Error("gate bench setup failed");
  // workerd's clock moves in whole milliseconds (and only across I/O): report the mean over many calls.
  const timed = async (path: "kv" | "object") => {
    const { samples_ms } = (await (await fetch(`${gateUrl}/run?path=${path}`)).json()) as { samples_ms: number[] };
    return { mean_ms: samples_ms.reduce((a, b) => a + b, 0) / samples_ms.length, max_ms: Math.max(...samples_ms), calls: samples_ms.length };
  };
  const gateDecision = { warm_memory_ns: warmNs, kv_path: await timed("kv"), object_confirm_path: await timed("object") };
  log(`gate: warm ${warmNs.toFixed(0)} ns/call, KV mean ${gateDecision.kv_path.mean_ms.toFixed(3)} ms, object mean ${gateDecision.object_confirm_path.mean_ms.toFixed(3)} ms`);

  const ceiling = scenarios[0]!;
  const hop = scenarios[1]!;
  const withRatios = scenarios.map((s) => ({ ...s, rps_ratio: s.rps / ceiling.rps, rps_ratio_to_hop: s.rps / hop.rps, p50_added_ms: s.p50_ms - ceiling.p50_ms }));
  const machine = { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version, date: new Date().toISOString() };
  const results = { machine, settings: { duration_s: DURATION_S, rounds: ROUNDS, connections: CONNECTIONS, body_bytes: body.byteLength, distinct_orgs: DISTINCT_ORGS }, scenarios: withRatios, webhooks: burst, gate: gateDecision };
  const outDir = join(REPO_ROOT, "bench", "results");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);

  const f = (n: number, digits = 1) => n.toFixed(digits);
  const table = [
    `Measured ${machine.date.slice(0, 10)} on ${machine.cores} × ${machine.cpu}, ${machine.memory_gib} GiB, Node ${machine.node}; ${CONNECTIONS} connections, ${ROUNDS} interleaved rounds of ${DURATION_S} s per scenario (medians), a ${body.byteLength}-byte gzipped protobuf batch of 20 spans; the Workers bundled as for deploy and run in one local workerd (Miniflare), the load generator, the sink and workerd sharing the machine.`,
    "",
    "| scenario | req/s | × ceiling | × runtime hop | p50 ms | p99 ms | added p50 ms | errors | unexpected status |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...withRatios.map((s) => `| ${s.name} | ${f(s.rps, 0)} | ${f(s.rps_ratio, 2)} | ${f(s.rps_ratio_to_hop, 2)} | ${s.p50_ms} | ${s.p99_ms} | ${f(s.p50_added_ms, 1)} | ${s.errors} | ${s.unexpected_status} |`),
    `| ${burst.name} | ${f(burst.rps, 0)} | — | — | ${f(burst.p50_ms)} | ${f(burst.p99_ms)} | — | ${burst.errors} | — |`,
    "",
    `Webhook burst: ${burst.processed} processed, ${burst.duplicate} acknowledged as redeliveries, ${burst.failed} failed; ${burst.orgs_in_wrong_state} orgs in a wrong state, ${burst.orgs_with_wrong_transition_count} with a wrong number of transitions.`,
    "",
    "| gate decision | per call |",
    "|---|---:|",
    `| warm (isolate memory, Node on the same V8) | ${f(warmNs, 0)} ns |`,
    `| KV path (mirror read, inside workerd, mean of ${gateDecision.kv_path.calls}) | ${f(gateDecision.kv_path.mean_ms * 1000, 0)} µs |`,
    `| object-confirm path (mirror says suspended, object asked; mean of ${gateDecision.object_confirm_path.calls}) | ${f(gateDecision.object_confirm_path.mean_ms * 1000, 0)} µs |`,
  ].join("\n");
  writeFileSync(join(outDir, "latest.md"), `${table}\n`);
  const readmePath = join(REPO_ROOT, "README.md");
  const readme = readFileSync(readmePath, "utf8");
  const marked = /<!-- bench:start -->[\s\S]*<!-- bench:end -->/;
  if (marked.test(readme)) writeFileSync(readmePath, readme.replace(marked, `<!-- bench:start -->\n${table}\n<!-- bench:end -->`));
  console.log(`\n${table}\n\nWritten to bench/results/latest.json and latest.md${marked.test(readme) ? " and README.md" : ""}.`);
} finally {
  await stack.stop();
}
