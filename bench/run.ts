import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Webhook } from "standardwebhooks";
import { IngestGate, type GateSources } from "../src/ingest/request/gate.ts";
import { REPO_ROOT } from "../tools/paths.ts";
import { largeGzipBody, logpushNdjson, traceBatch, workerdRssMib } from "./bodies.ts";
import { benchSetup, runLoadGenerator, startBenchRuntime } from "./runtime.ts";

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
/** BENCH_WRITE=0: print the tables, leave bench/results and docs/benchmark.md as they are (for trial runs). */
const WRITE = process.env.BENCH_WRITE !== "0";
/** The reconciliation sweep (issue 9): customers in Autumn, how many past due, how many of those Tollgate knows beforehand. */
const SWEEP_CUSTOMERS = 20_000;
const SWEEP_PAST_DUE = 300;
const SWEEP_KNOWN = 200;
/** Long enough for any sweep this bench can produce; a sweep still running then is a failure, not a result. */
const SWEEP_TIMEOUT_MS = 10 * 60_000;

const { settings, persistDir } = benchSetup(BASE_PORT, "bench");
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
/** A stand-in control call whose answer is wanted (control() above only checks it). */
async function standIn<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${stack.autumnUrl}/_control${path}`, { method, ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) });
  if (!response.ok) throw new Error(`stand-in ${method} ${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}
async function mint(orgId: string): Promise<string> {
  const response = await admin("POST", `/orgs/${orgId}/ingest-keys`);
  if (response.status !== 201) throw new Error(`mint ${orgId}: ${response.status}`);
  return ((await response.json()) as { key: string }).key;
}
/**
 * The cold-keys scenario's keys, minted in bulk by the bench gate Worker (POST /mint: the same
 * code as the admin route writes each real INGEST_KEYS entry; see bench/gate-worker/worker.ts)
 * in 4 requests of 8 writes at a time, instead of 10,000 admin requests that each create an object.
 */
async function mintMany(orgs: string[]): Promise<string[]> {
  const chunk = Math.ceil(orgs.length / 4);
  const parts = await Promise.all(
    Array.from({ length: Math.ceil(orgs.length / chunk) }, async (_, i) => {
      const slice = orgs.slice(i * chunk, (i + 1) * chunk);
      const response = await fetch(`${stack.gateBenchUrl}/mint`, { method: "POST", body: JSON.stringify({ orgs: slice, concurrency: 8 }) });
      if (!response.ok) throw new Error(`bulk mint: ${response.status} ${await response.text()}`);
      const { keys } = (await response.json()) as { keys: (string | null)[] };
      if (keys.length !== slice.length || keys.some((key) => typeof key !== "string")) throw new Error("bulk mint: a key is missing");
      return keys as string[];
    }),
  );
  return parts.flat();
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

type BatchRun = { seconds: number; peakRssIncreaseMib: number; status: number };

/** One large POST, timed, with workerd's RSS sampled every 20 ms against its level just before. */
async function postBatch(url: string, body: Uint8Array, headers: Record<string, string>, expect: number): Promise<BatchRun> {
  await new Promise((resolve) => setTimeout(resolve, 500));
  const baseline = workerdRssMib();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, workerdRssMib())), 20);
  const started = performance.now();
  const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "gzip", ...headers }, body: body as Uint8Array<ArrayBuffer> });
  await response.arrayBuffer();
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  peak = Math.max(peak, workerdRssMib());
  if (response.status !== expect) throw new Error(`${url} answered ${response.status}, expected ${expect}`);
  return { seconds, peakRssIncreaseMib: peak - baseline, status: response.status };
}

type Scenario = { name: string; rps: number; p50_ms: number; p99_ms: number; requests: number; errors: number; unexpected_status: number; statuses: Record<string, number> };

/** One measured run of the load generator (load.ts, in a child process), with its statuses checked. */
async function load(name: string, url: string, options: { headers: Record<string, string>; body: Uint8Array; expect: number; keys?: string[]; connections?: number }): Promise<Scenario> {
  // Cold-cache runs get no warm-up: warming is what they must not have.
  const result = await runLoadGenerator(persistDir, { url, headers: options.headers, body: options.body, keys: options.keys, connections: options.connections ?? CONNECTIONS, duration: DURATION_S, warmup: options.keys ? 0 : 2 });
  const statuses = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s?.count ?? 0])) as Record<string, number>;
  const unexpected = Object.entries(statuses).reduce((sum, [code, count]) => sum + (Number(code) === options.expect ? 0 : count), 0);
  const scenario = { name, rps: result.requests.average, p50_ms: result.latency.p50, p99_ms: result.latency.p99, requests: result.requests.total, errors: result.errors + result.timeouts, unexpected_status: unexpected, statuses };
  log(`${name}: ${scenario.rps.toFixed(0)} req/s, p50 ${scenario.p50_ms} ms, p99 ${scenario.p99_ms} ms, errors ${scenario.errors}, unexpected ${unexpected}`);
  return scenario;
}

const signer = new Webhook(settings.AUTUMN_WEBHOOK_SECRET);
/** One `billing.updated` for the org, signed as Svix signs Autumn's; the billing Worker's answer status ("processed", "duplicate", ...) or "failed". */
async function deliverWebhook(org: string, messageId = `msg_${crypto.randomUUID().replaceAll("-", "")}`): Promise<string> {
  const payload = JSON.stringify({ type: "billing.updated", data: { object: "billing.updated", customer_id: org, entity_id: null, plan_changes: [], tags: [] } });
  const at = new Date();
  const response = await fetch(`${stack.billingUrl}/api/billing/autumn/webhook`, {
    method: "POST",
    headers: { "content-type": "application/json", "svix-id": messageId, "svix-timestamp": String(Math.floor(at.getTime() / 1000)), "svix-signature": signer.sign(messageId, at, payload) },
    body: payload,
  }).catch(() => null);
  return response?.ok ? ((await response.json()) as { status: string }).status : "failed";
}

type SweepView = {
  id: string;
  trigger: string;
  status: "running" | "finished" | "failed";
  started_at: string;
  finished_at: string | null;
  pages: number;
  customers_seen: number;
  orgs_handed_over: { unknown_past_due: number; no_longer_past_due: number; missing_from_autumn: number };
  hand_over_failures: number;
  autumn_calls: number;
  object_calls: number;
  error_count: number;
  errors: unknown[];
};
type StandInStats = { since: number; total: number; paths: Record<string, { total: number; status: Record<string, number> }> };
type StandInCall = { path: string; body: unknown; status: number; at: number };

/**
 * 7. The reconciliation sweep at scale (issue 9): Autumn holds SWEEP_CUSTOMERS customers,
 * SWEEP_PAST_DUE of them past due; Tollgate was told about SWEEP_KNOWN of those by signed
 * webhooks, the rest it has never seen. One sweep must find every unknown one and make no
 * per-customer call for a customer it agrees with. Autumn's calls are counted by the stand-in
 * and attributed by customer id: the objects of orgs Tollgate already holds keep their own
 * alarms (follow-up reads after a webhook), which are not the sweep's and are reported apart.
 */
async function reconciliationSweep() {
  log("reconciliation sweep: seeding Autumn ...");
  // No sweep may exist yet: the bench's Miniflare runs no Cron Trigger (see runtime.ts), and this proves it.
  const before = await admin("GET", "/reconcile");
  if (before.status !== 404) throw new Error(`a sweep exists before the bench started one (cron?): ${before.status} ${await before.text()}`);
  const seeded = await standIn<{ created: number; past_due_ids: string[] }>("POST", "/seed", { count: SWEEP_CUSTOMERS, past_due: SWEEP_PAST_DUE, prefix: "bench-" });
  if (seeded.created !== SWEEP_CUSTOMERS || seeded.past_due_ids.length !== SWEEP_PAST_DUE) throw new Error(`seed: ${JSON.stringify({ created: seeded.created, past_due: seeded.past_due_ids.length })}`);
  // Spread the unknown ones over the whole listing: every third past-due customer.
  const known = seeded.past_due_ids.filter((_, i) => i % 3 !== 2).slice(0, SWEEP_KNOWN);
  const knownSet = new Set(known);
  const unknown = seeded.past_due_ids.filter((id) => !knownSet.has(id));
  const unknownSet = new Set(unknown);
  const notProcessed: string[] = [];
  /** When each known org's webhook was sent: its object owes follow-up reads from a minute after (FOLLOW_UP_STEPS_MS). */
  const webhookSentAt = new Map<string, number>();
  await pool(known, 16, async (org) => {
    webhookSentAt.set(org, Date.now());
    const answer = await deliverWebhook(org);
    if (answer !== "processed") notProcessed.push(`${org}: ${answer}`);
  });
  if (notProcessed.length > 0) throw new Error(`setup webhooks not processed: ${notProcessed.slice(0, 5).join(", ")}`);

  await standIn("DELETE", "/stats");
  await standIn("DELETE", "/calls");
  log(`reconciliation sweep: ${known.length} past-due orgs known, ${unknown.length} unknown; sweeping ${SWEEP_CUSTOMERS.toLocaleString("en")} customers ...`);
  const started = performance.now();
  const start = await admin("POST", "/reconcile");
  const startView = (await start.json()) as SweepView & { started: boolean };
  if (start.status !== 202 || !startView.started) throw new Error(`POST /admin/reconcile did not start a sweep: ${start.status} ${JSON.stringify(startView)}`);
  let view: SweepView = startView;
  while (view.status === "running") {
    if (performance.now() - started > SWEEP_TIMEOUT_MS) throw new Error(`the sweep still runs after ${SWEEP_TIMEOUT_MS / 1000} s: ${JSON.stringify(view)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    view = (await (await admin("GET", "/reconcile")).json()) as SweepView;
  }
  const wallMs = performance.now() - started;
  const stats = await standIn<StandInStats>("GET", "/stats");
  const { calls } = await standIn<{ calls: StandInCall[] }>("GET", "/calls");
  // The stand-in keeps the last 10,000 calls; attribution by customer needs all of them.
  if (calls.length >= 10_000) throw new Error(`the stand-in's call log overflowed during the sweep (${stats.total} calls): attribution would be incomplete`);
  if (view.id !== startView.id || view.trigger !== "admin") throw new Error(`another sweep ran meanwhile: ${view.id} (${view.trigger}), started ${startView.id}`);

  // Every per-customer call during the sweep, by whose customer it was. A known org's read a
  // minute or more after its webhook is that object's own follow-up, not the sweep's.
  const perCustomer = { handed_over: 0, known_beforehand: 0, agreeing_never_known: 0, other: 0 };
  const sweepReads = { customers_get: 0, invoices_list: 0 };
  for (const call of calls) {
    if (call.path === "/v1/customers.list") continue;
    const customer = (call.body as { customer_id?: unknown } | null)?.customer_id;
    if (typeof customer !== "string") perCustomer.other++;
    else if (unknownSet.has(customer)) {
      perCustomer.handed_over++;
      if (call.path === "/v1/customers.get") sweepReads.customers_get++;
      if (call.path === "/v1/invoices.list") sweepReads.invoices_list++;
    } else if (knownSet.has(customer)) {
      if (call.at >= webhookSentAt.get(customer)! + 60_000) perCustomer.other++;
      else perCustomer.known_beforehand++;
    } else if (customer.startsWith("bench-")) perCustomer.agreeing_never_known++;
    else perCustomer.other++;
  }
  const pathTotal = (path: string) => stats.paths[path]?.total ?? 0;

  let notOverdue = 0;
  let notByReconcile = 0;
  await pool(unknown, 16, async (org) => {
    const state = (await (await admin("GET", `/orgs/${org}`)).json()) as { state: string; history: { kind: string; to: string; source: string }[] };
    if (state.state !== "overdue") notOverdue++;
    if (!state.history.some((h) => h.kind === "transition" && h.to === "overdue" && h.source === "reconcile")) notByReconcile++;
  });

  const result = {
    name: `7. reconciliation sweep: ${SWEEP_CUSTOMERS.toLocaleString("en")} customers, ${SWEEP_PAST_DUE} past due, ${unknown.length} unknown to Tollgate`,
    customers_seeded: SWEEP_CUSTOMERS,
    past_due: SWEEP_PAST_DUE,
    known_beforehand: known.length,
    unknown: unknown.length,
    sweep_id: view.id,
    status: view.status,
    /** From POST /admin/reconcile to the first GET that saw it finished (polled every 100 ms). */
    wall_s: wallMs / 1000,
    /** The sweep's own started_at to finished_at. */
    sweep_s: view.finished_at === null ? null : (Date.parse(view.finished_at) - Date.parse(view.started_at)) / 1000,
    pages: view.pages,
    customers_seen: view.customers_seen,
    orgs_handed_over: view.orgs_handed_over,
    hand_over_failures: view.hand_over_failures,
    error_count: view.error_count,
    /** Autumn calls the sweep caused: its customers.list pages plus the handed-over objects' fresh reads. */
    autumn_calls: {
      total: pathTotal("/v1/customers.list") + sweepReads.customers_get + sweepReads.invoices_list,
      customers_list: pathTotal("/v1/customers.list"),
      customers_get: sweepReads.customers_get,
      invoices_list: sweepReads.invoices_list,
      sweeper_counted: view.autumn_calls,
    },
    /** Object calls: one per org handed over (OrgBilling.reconcile) and, by construction, one index lookup per page plus one at the end. */
    object_calls: { org_objects: view.object_calls, index_lookups: view.pages + 1 },
    /** Every /v1 call the stand-in answered while the sweep ran, whoever made it. */
    standin_stats: Object.fromEntries(Object.entries(stats.paths).map(([path, s]) => [path, s.total])),
    per_customer_calls: perCustomer,
    unknown_found: view.orgs_handed_over.unknown_past_due,
    unknown_not_overdue_after: notOverdue,
    unknown_without_reconcile_transition: notByReconcile,
    checks_passed: false,
    failed_checks: [] as string[],
  };
  const checks: [string, boolean][] = [
    ["the sweep finished", result.status === "finished"],
    [`all ${unknown.length} unknown orgs handed over`, result.unknown_found === unknown.length],
    ["no other disagreement (no_longer_past_due, missing_from_autumn)", result.orgs_handed_over.no_longer_past_due === 0 && result.orgs_handed_over.missing_from_autumn === 0],
    ["every unknown org overdue, by a reconcile transition", notOverdue === 0 && notByReconcile === 0],
    ["no per-customer call for agreeing customers", perCustomer.agreeing_never_known === 0 && perCustomer.known_beforehand === 0],
    // Each org handed over once, and read once by its object.
    ["one object call and one customers.get per unknown org", view.object_calls === unknown.length && sweepReads.customers_get === unknown.length],
  ];
  result.failed_checks = checks.filter(([, ok]) => !ok).map(([name]) => name);
  result.checks_passed = result.failed_checks.length === 0;
  log(
    `${result.name}: ${result.status} in ${result.wall_s.toFixed(1)} s, ${result.pages} pages, ${result.customers_seen} customers, handed over ${JSON.stringify(result.orgs_handed_over)}, ` +
      `Autumn calls ${result.autumn_calls.total} (${result.autumn_calls.customers_list} list, ${result.autumn_calls.customers_get} get, ${result.autumn_calls.invoices_list} invoices), object calls ${result.object_calls.org_objects} (+${result.object_calls.index_lookups} index), ` +
      `per-customer calls ${JSON.stringify(perCustomer)}, not overdue after ${notOverdue}`,
  );
  return result;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

try {
  const body = traceBatch();
  const otlpGzip: Record<string, string> = { "content-type": "application/x-protobuf", "content-encoding": "gzip" };
  const otlpHeaders: Record<string, string> = process.env.BENCH_IDENTITY ? { "content-type": "application/x-protobuf" } : { "content-type": "application/x-protobuf", "content-encoding": "gzip" };

  log("setting up orgs ...");
  const paying = "bench_paying";
  await control("/customers", { id: paying });
  const payingKey = await mint(paying);
  // Scenario 2m's own org, so the spans it sends (warm-up included) can be counted at the sink.
  const metered = "bench_metered";
  await control("/customers", { id: metered });
  const meteredKey = await mint(metered);
  const suspended = "bench_suspended";
  await control("/customers", { id: suspended });
  const suspendedKey = await mint(suspended);
  if (!(await admin("POST", `/orgs/${suspended}/override`, { action: "suspend", note: "benchmark: the 402 path" })).ok) throw new Error("could not suspend");
  const setupStarted = Date.now();
  const manyKeys = await mintMany(Array.from({ length: DISTINCT_ORGS }, (_, i) => `bench_org_${i}`));
  log(`minted ${DISTINCT_ORGS} keys in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s`);

  // Scenarios 1, 1b, 2 and 4 run in interleaved rounds so that drift in the machine's
  // conditions falls on all of them alike; each figure is the median of its rounds.
  const steady = [
    { name: "1. direct to the upstream sink (ceiling)", url: `${stack.sinkUrl}/v1/traces`, options: { headers: { ...otlpHeaders, "x-scope-orgid": paying }, body, expect: 200 } },
    { name: "1b. pass-through Worker, no gate (the runtime hop alone)", url: `${stack.passthroughUrl}/v1/traces`, options: { headers: otlpHeaders, body, expect: 200 } },
    { name: "2. ingest Worker, paying org, warm caches", url: `${stack.ingestUrl}/v1/traces`, options: { headers: { ...otlpHeaders, authorization: `Bearer ${payingKey}` }, body, expect: 200 } },
    { name: "2m. the same with usage metering on (USAGE_FEATURES: spans counted, usage queued and reported)", url: `${stack.meteredIngestUrl}/v1/traces`, options: { headers: { ...otlpHeaders, authorization: `Bearer ${meteredKey}` }, body, expect: 200 } },
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
  const [sinkRuns, hopRuns, payingRuns, meteredRuns, suspendedRuns] = rounds;
  const scenarios: Scenario[] = [summarize(steady[0]!.name, sinkRuns!), summarize(steady[1]!.name, hopRuns!), summarize(steady[2]!.name, payingRuns!), summarize(steady[3]!.name, meteredRuns!)];
  scenarios.push(await load(`3. ingest Worker, ${DISTINCT_ORGS.toLocaleString("en")} distinct paying orgs (cold caches, KV path)`, `${stack.ingestUrl}/v1/traces`, { headers: otlpHeaders, body, expect: 200, keys: manyKeys }));
  scenarios.push(summarize(steady[4]!.name, suspendedRuns!));

  // Metering on against off, same run: and every span the sink got from the metered org (warm-ups included) must reach Autumn, exactly.
  const sinkStats = (await (await fetch(`${stack.sinkUrl}/_control/stats`)).json()) as { tenants: Record<string, { requests: number }> };
  const meteredAccepted = sinkStats.tenants[metered]?.requests ?? 0;
  const spansPerBatch = 20;
  const autumnSpans = async () => ((await standIn<{ customers: Record<string, Record<string, { value: number }>> }>("GET", "/usage")).customers[metered]?.spans?.value ?? 0);
  const meteringStarted = Date.now();
  let reportedSpans = await autumnSpans();
  while (reportedSpans < meteredAccepted * spansPerBatch && Date.now() - meteringStarted < 60_000) {
    await new Promise((r) => setTimeout(r, 500));
    reportedSpans = await autumnSpans();
  }
  const metering = {
    name: "2m. usage metering on, against scenario 2 (off), same run",
    ratio: scenarios[3]!.rps / scenarios[2]!.rps,
    accepted_requests: meteredAccepted,
    spans_expected: meteredAccepted * spansPerBatch,
    spans_in_autumn: reportedSpans,
    exact: reportedSpans === meteredAccepted * spansPerBatch,
  };
  log(`${metering.name}: ${metering.ratio.toFixed(2)}×; spans in Autumn ${reportedSpans} of ${metering.spans_expected} (${metering.exact ? "exact" : "NOT exact"})`);

  // 8. Large OTLP bodies (issue 11): 1 MiB of gzip per request, where buffering and decompression show.
  const largeOtlp = largeGzipBody(1024 * 1024);
  const largeConnections = 8;
  const largeRuns = { hop: [] as Scenario[], ingest: [] as Scenario[] };
  for (let round = 0; round < ROUNDS; round++) {
    largeRuns.hop.push(await load(`8. 1 MiB gzip OTLP bodies, pass-through Worker (round ${round + 1})`, `${stack.passthroughUrl}/v1/traces`, { headers: otlpGzip, body: largeOtlp, expect: 200, connections: largeConnections }));
    largeRuns.ingest.push(await load(`8. 1 MiB gzip OTLP bodies, ingest Worker (round ${round + 1})`, `${stack.ingestUrl}/v1/traces`, { headers: { ...otlpGzip, authorization: `Bearer ${payingKey}` }, body: largeOtlp, expect: 200, connections: largeConnections }));
  }
  const mib = largeOtlp.byteLength / 2 ** 20;
  const largeBodies = {
    name: "8. 1 MiB gzip OTLP bodies",
    body_bytes: largeOtlp.byteLength,
    connections: largeConnections,
    passthrough: { ...summarize("pass-through Worker", largeRuns.hop), mib_per_s: median(largeRuns.hop.map((r) => r.rps)) * mib },
    ingest: { ...summarize("ingest Worker", largeRuns.ingest), mib_per_s: median(largeRuns.ingest.map((r) => r.rps)) * mib },
    ratio_to_passthrough: 0,
  };
  largeBodies.ratio_to_passthrough = largeBodies.ingest.mib_per_s / largeBodies.passthrough.mib_per_s;
  log(`${largeBodies.name}: ingest ${largeBodies.ingest.mib_per_s.toFixed(1)} MiB/s, pass-through ${largeBodies.passthrough.mib_per_s.toFixed(1)} MiB/s (${largeBodies.ratio_to_passthrough.toFixed(2)}×)`);

  // 9. One Logpush batch of 64 MiB decompressed NDJSON (issue 11): throughput and workerd's peak RSS.
  const logpushBatch = logpushNdjson(64 * 2 ** 20 - 4096);
  const logpushGzip = gzipSync(logpushBatch.text);
  const logpushRuns = { passthrough: [] as BatchRun[], ingest: [] as BatchRun[] };
  for (let round = 0; round < ROUNDS; round++) {
    logpushRuns.passthrough.push(await postBatch(`${stack.passthroughUrl}/v1/logs`, logpushGzip, {}, 200));
    logpushRuns.ingest.push(await postBatch(`${stack.ingestUrl}/v1/logpush/http_requests`, logpushGzip, { authorization: `Bearer ${payingKey}` }, 200));
  }
  const decompressedMib = logpushBatch.text.length / 2 ** 20;
  const batchSummary = (runs: BatchRun[]) => {
    const seconds = median(runs.map((r) => r.seconds));
    return { seconds, mib_per_s: decompressedMib / seconds, peak_rss_increase_mib: Math.max(...runs.map((r) => r.peakRssIncreaseMib)), statuses: runs.map((r) => r.status) };
  };
  const logpushScenario = {
    name: "9. one Logpush batch of 64 MiB decompressed NDJSON",
    records: logpushBatch.records,
    decompressed_bytes: logpushBatch.text.length,
    gzip_bytes: logpushGzip.byteLength,
    passthrough: batchSummary(logpushRuns.passthrough),
    ingest: batchSummary(logpushRuns.ingest),
    ratio_to_passthrough: 0,
  };
  logpushScenario.ratio_to_passthrough = logpushScenario.ingest.mib_per_s / logpushScenario.passthrough.mib_per_s;
  log(`${logpushScenario.name}: ingest ${logpushScenario.ingest.mib_per_s.toFixed(1)} MiB/s (peak RSS +${logpushScenario.ingest.peak_rss_increase_mib.toFixed(0)} MiB), pass-through ${logpushScenario.passthrough.mib_per_s.toFixed(1)} MiB/s (+${logpushScenario.passthrough.peak_rss_increase_mib.toFixed(0)} MiB)`);

  // 5. A burst of signed webhooks: 200 orgs in four billing situations, ten deliveries each
  // (two of them Svix redeliveries of an earlier message id), shuffled, 64 at a time.
  log("webhook burst ...");
  const now = Date.now();
  const situations = ["paying", "in_grace", "never_paid", "lapsed"] as const;
  const expected: Record<(typeof situations)[number], { state: string; transitions: number }> = {
    paying: { state: "ok", transitions: 0 },
    in_grace: { state: "overdue", transitions: 1 },
    // Past due for 10 days, but Tollgate sees it for the first time now: MIN_NOTICE (24h) keeps it overdue.
    never_paid: { state: "overdue", transitions: 1 },
    lapsed: { state: "overdue", transitions: 1 },
  };
  const burstOrgs = Array.from({ length: 200 }, (_, i) => ({ id: `burst_${i}`, situation: situations[i % 4]! }));
  await pool(burstOrgs, 16, async ({ id, situation }) => {
    await control("/customers", { id });
    if (situation === "lapsed") await control(`/customers/${id}/invoices`, { status: "paid", total: 49, created_at: now - 90 * 86_400_000 });
    if (situation === "in_grace") await control(`/customers/${id}/past-due`, { at: now });
    if (situation === "never_paid" || situation === "lapsed") await control(`/customers/${id}/past-due`, { at: now - 10 * 86_400_000 });
  });
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
    const started = performance.now();
    const answer = await deliverWebhook(org, messageId);
    latencies.push(performance.now() - started);
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
    askObject: async () => ({ state: "ok", since: 0, version: 0, suspend_at: null, suspended_at: null, pay_url: null, limits: [] }),
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

  const sweep = await reconciliationSweep();

  const ceiling = scenarios[0]!;
  const hop = scenarios[1]!;
  const withRatios = scenarios.map((s) => ({ ...s, rps_ratio: s.rps / ceiling.rps, rps_ratio_to_hop: s.rps / hop.rps, p50_added_ms: s.p50_ms - ceiling.p50_ms }));
  const machine = { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version, date: new Date().toISOString() };
  const results = { machine, settings: { duration_s: DURATION_S, rounds: ROUNDS, connections: CONNECTIONS, body_bytes: body.byteLength, distinct_orgs: DISTINCT_ORGS }, scenarios: withRatios, metering, large_otlp: largeBodies, logpush_batch: logpushScenario, webhooks: burst, gate: gateDecision, reconcile: sweep };
  const outDir = join(REPO_ROOT, "bench", "results");
  if (WRITE) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
  }

  const f = (n: number, digits = 1) => n.toFixed(digits);
  const table = [
    `Measured ${machine.date.slice(0, 10)} on ${machine.cores} × ${machine.cpu}, ${machine.memory_gib} GiB, Node ${machine.node}; ${CONNECTIONS} connections, ${ROUNDS} interleaved rounds of ${DURATION_S} s per scenario (medians), a ${body.byteLength}-byte gzipped protobuf batch of 20 spans; the Workers bundled as for deploy and run in one local workerd (Miniflare), the load generator, the sink and workerd sharing the machine.`,
    "",
    "| scenario | req/s | × ceiling | × runtime hop | p50 ms | p99 ms | added p50 ms | errors | unexpected status |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...withRatios.map((s) => `| ${s.name} | ${f(s.rps, 0)} | ${f(s.rps_ratio, 2)} | ${f(s.rps_ratio_to_hop, 2)} | ${s.p50_ms} | ${s.p99_ms} | ${f(s.p50_added_ms, 1)} | ${s.errors} | ${s.unexpected_status} |`),
    `| ${burst.name} | ${f(burst.rps, 0)} | — | — | ${f(burst.p50_ms)} | ${f(burst.p99_ms)} | — | ${burst.errors} | — |`,
    "",
    `Usage metering (2m against 2, same run): ${f(metering.ratio, 2)}× the throughput with metering off; the ${metering.accepted_requests.toLocaleString("en")} metered batches' ${metering.spans_expected.toLocaleString("en")} spans reached Autumn ${metering.exact ? "exactly" : `NOT exactly (${metering.spans_in_autumn.toLocaleString("en")})`}.`,
    "",
    `| ${largeBodies.name} (${(largeBodies.body_bytes / 2 ** 20).toFixed(2)} MiB each, ${largeBodies.connections} connections) | pass-through Worker | ingest Worker | × pass-through |`,
    "|---|---:|---:|---:|",
    `| throughput | ${f(largeBodies.passthrough.mib_per_s)} MiB/s | ${f(largeBodies.ingest.mib_per_s)} MiB/s | ${f(largeBodies.ratio_to_passthrough, 2)} |`,
    `| p50 / p99 latency | ${largeBodies.passthrough.p50_ms} / ${largeBodies.passthrough.p99_ms} ms | ${largeBodies.ingest.p50_ms} / ${largeBodies.ingest.p99_ms} ms | |`,
    "",
    `| ${logpushScenario.name} (${logpushScenario.records.toLocaleString("en")} records, ${f(logpushScenario.gzip_bytes / 2 ** 20)} MiB gzip) | pass-through Worker (buffers, forwards the gzip) | ingest Worker (decompress, convert, forward OTLP JSON) | × pass-through |`,
    "|---|---:|---:|---:|",
    `| throughput (decompressed MiB/s, median of ${ROUNDS}) | ${f(logpushScenario.passthrough.mib_per_s)} | ${f(logpushScenario.ingest.mib_per_s)} | ${f(logpushScenario.ratio_to_passthrough, 2)} |`,
    `| peak workerd RSS increase | ${f(logpushScenario.passthrough.peak_rss_increase_mib, 0)} MiB | ${f(logpushScenario.ingest.peak_rss_increase_mib, 0)} MiB | |`,
    "",
    `Webhook burst: ${burst.processed} processed, ${burst.duplicate} acknowledged as redeliveries, ${burst.failed} failed; ${burst.orgs_in_wrong_state} orgs in a wrong state, ${burst.orgs_with_wrong_transition_count} with a wrong number of transitions.`,
    "",
    "| gate decision | per call |",
    "|---|---:|",
    `| warm (isolate memory, Node on the same V8) | ${f(warmNs, 0)} ns |`,
    `| KV path (mirror read, inside workerd, mean of ${gateDecision.kv_path.calls}) | ${f(gateDecision.kv_path.mean_ms * 1000, 0)} µs |`,
    `| object-confirm path (mirror says suspended, object asked; mean of ${gateDecision.object_confirm_path.calls}) | ${f(gateDecision.object_confirm_path.mean_ms * 1000, 0)} µs |`,
    "",
    `| ${sweep.name.replace(/^7\. /, "")} | measured |`,
    "|---|---:|",
    `| wall time (POST /admin/reconcile until finished) | ${f(sweep.wall_s)} s |`,
    `| customers.list pages (customers seen) | ${sweep.pages} (${sweep.customers_seen.toLocaleString("en")}) |`,
    `| orgs handed over: unknown past due / no longer past due / missing from Autumn | ${sweep.orgs_handed_over.unknown_past_due} / ${sweep.orgs_handed_over.no_longer_past_due} / ${sweep.orgs_handed_over.missing_from_autumn} |`,
    `| Autumn calls per sweep: pages + customers.get + invoices.list | ${sweep.autumn_calls.total} = ${sweep.autumn_calls.customers_list} + ${sweep.autumn_calls.customers_get} + ${sweep.autumn_calls.invoices_list} |`,
    `| object calls per sweep: org objects (+ index lookups) | ${sweep.object_calls.org_objects} (+ ${sweep.object_calls.index_lookups}) |`,
    `| per-customer calls for customers Tollgate agreed with | ${sweep.per_customer_calls.agreeing_never_known + sweep.per_customer_calls.known_beforehand} |`,
    `| unknown orgs found / now overdue | ${sweep.unknown_found} / ${sweep.unknown - sweep.unknown_not_overdue_after} of ${sweep.unknown} |`,
    "",
    `Reconciliation sweep: Autumn listed ${sweep.customers_seen.toLocaleString("en")} customers (${sweep.customers_seeded.toLocaleString("en")} seeded for it, ${sweep.past_due} past due, ${sweep.known_beforehand} of those made known to Tollgate by signed webhooks first; the rest are the scenarios above), pages of 1,000, one per alarm run; ` +
      `reads made meanwhile by other orgs' own alarms (follow-ups after earlier webhooks: ${sweep.per_customer_calls.other}) are not the sweep's and not counted; checks ${sweep.checks_passed ? "passed" : `FAILED: ${sweep.failed_checks.join("; ")}`}.`,
  ].join("\n");
  // The results table lives in docs/benchmark.md (moved out of the README, issue 22), between its bench markers.
  const docPath = join(REPO_ROOT, "docs", "benchmark.md");
  const doc = readFileSync(docPath, "utf8");
  const marked = /<!-- bench:start -->[\s\S]*<!-- bench:end -->/;
  if (WRITE) {
    writeFileSync(join(outDir, "latest.md"), `${table}\n`);
    if (marked.test(doc)) writeFileSync(docPath, doc.replace(marked, `<!-- bench:start -->\n${table}\n<!-- bench:end -->`));
  }
  console.log(`\n${table}\n\n${WRITE ? `Written to bench/results/latest.json and latest.md${marked.test(doc) ? " and docs/benchmark.md" : ""}.` : "BENCH_WRITE=0: nothing written."}`);
  if (!sweep.checks_passed) console.log("The reconciliation sweep's checks FAILED: see its line above and reconcile in the results.");
} finally {
  await stack.stop();
}
