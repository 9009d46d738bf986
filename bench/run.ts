import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Webhook } from "standardwebhooks";
import { IngestGate, type GateSources } from "../src/ingest/request/gate.ts";
import { REPO_ROOT } from "../tools/paths.ts";
import { collectorBatch, largeGzipBody, logpushNdjson, traceBatch } from "./bodies.ts";
import { writeCostDoc } from "./cost.ts";
import type { OpCounts } from "./counted-ingest/ops.ts";
import { workerdCpuSeconds, workerdRssMib } from "./proc.ts";
import { benchSetup, runLoadGenerator, startBenchRuntime } from "./runtime.ts";

// `npm run bench -- --scale`: the scale scenarios only (bench/scale/run.ts, issue 23), none of the default run's.
if (process.argv.includes("--scale")) {
  const { main } = await import("./scale/run.ts");
  process.exit(await main(process.argv));
}

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
/** Each cold-keys round (3 s by default): short enough that three rounds' requests stay within the distinct orgs (see coldRound). */
const COLD_DURATION_S = Number(process.env.BENCH_COLD_DURATION ?? Math.min(DURATION_S, 3));
const BASE_PORT = Number(process.env.BENCH_BASE_PORT ?? 28787);
/**
 * `npm run bench -- --only collector,ops`: only these sections (and the setup they need), for
 * trying one out; nothing is written then. Sections, in the order they run: steady (1, 1b, 2,
 * 2m, 4 and the metering check), cold (3), large (8), logpush (9), collector (10), webhooks (5),
 * gate (6), ops (the counting pass: operations per request), sweep (7).
 */
const SECTIONS = ["steady", "cold", "large", "logpush", "collector", "webhooks", "gate", "ops", "sweep"] as const;
type Section = (typeof SECTIONS)[number];
const ONLY: Set<Section> | null = (() => {
  const at = process.argv.indexOf("--only");
  if (at === -1) return null;
  const names = (process.argv[at + 1] ?? "").split(",").filter(Boolean);
  const unknown = names.filter((name) => !(SECTIONS as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0) throw new Error(`--only takes a comma-separated list of ${SECTIONS.join(", ")}${unknown.length ? `; unknown: ${unknown.join(", ")}` : ""}`);
  return new Set(names as Section[]);
})();
const selected = (section: Section) => ONLY === null || ONLY.has(section);
/** BENCH_WRITE=0 (or --only): print the tables, leave bench/results, README.md and docs/cost.md as they are (for trial runs). */
const WRITE = process.env.BENCH_WRITE !== "0" && ONLY === null;
/** Seconds per round of the 1 MiB scenario (8): at 65–270 requests a second over 8 connections, 3 s is 200 or more per round. */
const LARGE_DURATION_S = Number(process.env.BENCH_LARGE_DURATION ?? Math.min(DURATION_S, 3));
/** Seconds per round of the Collector-sized scenario (10): at tens of requests a second, 3 s is plenty per round. */
const COLLECTOR_DURATION_S = Number(process.env.BENCH_COLLECTOR_DURATION ?? Math.min(DURATION_S, 3));
/** Seconds of load per scenario in the counting pass (ops). */
const OPS_DURATION_S = Number(process.env.BENCH_OPS_DURATION ?? 1.5);
/** The reconciliation sweep (issue 9): customers in Autumn, how many past due, how many of those Tollgate knows beforehand. */
const SWEEP_CUSTOMERS = 20_000;
const SWEEP_PAST_DUE = 300;
const SWEEP_KNOWN = 200;
/** Long enough for any sweep this bench can produce; a sweep still running then is a failure, not a result. */
const SWEEP_TIMEOUT_MS = 10 * 60_000;

const { settings, persistDir } = benchSetup(BASE_PORT, "bench");
const log = (message: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

log("bundling the Workers and starting the runtime ...");
const benchStarted = performance.now();
const stack = await startBenchRuntime(settings, persistDir, { counted: selected("ops") });
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

type BatchRun = { seconds: number; peakRssIncreaseMib: number; status: number; workerdCpuMs: number };

/** One large POST, timed, with workerd's RSS sampled every 20 ms against its level just before. */
async function postBatch(url: string, body: Uint8Array, headers: Record<string, string>, expect: number): Promise<BatchRun> {
  await new Promise((resolve) => setTimeout(resolve, 500));
  const baseline = workerdRssMib();
  const cpuBefore = workerdCpuSeconds();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, workerdRssMib())), 20);
  const started = performance.now();
  const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "gzip", ...headers }, body: body as Uint8Array<ArrayBuffer> });
  await response.arrayBuffer();
  const seconds = (performance.now() - started) / 1000;
  const workerdCpuMs = (workerdCpuSeconds() - cpuBefore) * 1000;
  clearInterval(sampler);
  peak = Math.max(peak, workerdRssMib());
  if (response.status !== expect) throw new Error(`${url} answered ${response.status}, expected ${expect}`);
  return { seconds, peakRssIncreaseMib: peak - baseline, status: response.status, workerdCpuMs };
}

/** `workerd_cpu_ms`: workerd's CPU time over the measured run (all its threads and Workers, read from /proc; warm-up excluded). */
type Scenario = { name: string; rps: number; p50_ms: number; p99_ms: number; requests: number; errors: number; unexpected_status: number; statuses: Record<string, number>; workerd_cpu_ms: number; rounds_rps?: number[] };

/** One measured run of the load generator (load.ts, in a child process), with its statuses checked. */
async function load(name: string, url: string, options: { method?: "GET" | "POST"; headers: Record<string, string>; body: Uint8Array; expect: number; keys?: string[]; connections?: number; duration?: number; warmup?: number }): Promise<Scenario> {
  // Cold-cache runs get no warm-up: warming is what they must not have.
  const result = await runLoadGenerator(persistDir, { url, method: options.method, headers: options.headers, body: options.body, keys: options.keys, connections: options.connections ?? CONNECTIONS, duration: options.duration ?? DURATION_S, warmup: options.warmup ?? (options.keys ? 0 : 2) });
  const statuses = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s?.count ?? 0])) as Record<string, number>;
  const unexpected = Object.entries(statuses).reduce((sum, [code, count]) => sum + (Number(code) === options.expect ? 0 : count), 0);
  const scenario = { name, rps: result.requests.average, p50_ms: result.latency.p50, p99_ms: result.latency.p99, requests: result.requests.total, errors: result.errors + result.timeouts, unexpected_status: unexpected, statuses, workerd_cpu_ms: (result.workerdCpuS ?? 0) * 1000 };
  log(`${name}: ${scenario.rps.toFixed(0)} req/s, p50 ${scenario.p50_ms} ms, p99 ${scenario.p99_ms} ms, errors ${scenario.errors}, unexpected ${unexpected}${unexpected > 0 ? ` (statuses ${JSON.stringify(statuses)})` : ""}`);
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

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
/**
 * A ratio of two interleaved scenarios: the median of their per-round ratios, each round against the reference
 * round run beside it. The VM's speed drifts between rounds (the pass-through hop alone measured 1,498 to 2,765
 * req/s on different days, and moved within a run), and a ratio of the two medians let rounds from different
 * phases meet; paired, each ratio sees one phase. A scenario run once (no rounds) falls back to the medians' ratio.
 */
const pairedRatio = (scenario: Pick<Scenario, "rps" | "rounds_rps">, reference: Pick<Scenario, "rps" | "rounds_rps">): number => {
  const a = scenario.rounds_rps;
  const b = reference.rounds_rps;
  return a && b && a.length === b.length ? median(a.map((rps, i) => rps / b[i]!)) : scenario.rps / reference.rps;
};
/** The runs' status counts added up. */
const mergeStatuses = (runs: Scenario[]): Record<string, number> => {
  const merged: Record<string, number> = {};
  for (const run of runs) for (const [code, count] of Object.entries(run.statuses)) merged[code] = (merged[code] ?? 0) + count;
  return merged;
};
const summarize = (name: string, runs: Scenario[]): Scenario => ({
  name,
  rps: median(runs.map((r) => r.rps)),
  rounds_rps: runs.map((r) => r.rps),
  p50_ms: median(runs.map((r) => r.p50_ms)),
  p99_ms: median(runs.map((r) => r.p99_ms)),
  requests: runs.reduce((sum, r) => sum + r.requests, 0),
  errors: runs.reduce((sum, r) => sum + r.errors, 0),
  unexpected_status: runs.reduce((sum, r) => sum + r.unexpected_status, 0),
  statuses: mergeStatuses(runs),
  workerd_cpu_ms: runs.reduce((sum, r) => sum + r.workerd_cpu_ms, 0),
});

/**
 * What one request costs in workerd CPU: the CPU workerd used over the measured runs (from /proc,
 * all its threads: the Worker, the objects and queue consumers it calls, and Miniflare's local KV,
 * R2 and queue services) over the requests they served, and over the MiB of request bodies as received.
 */
type CpuCost = { requests: number; body_bytes: number; workerd_cpu_ms: number; cpu_ms_per_request: number; cpu_ms_per_mib: number; from: string };
const cpuCost = (requests: number, bodyBytes: number, cpuMs: number, from: string): CpuCost => ({
  requests,
  body_bytes: bodyBytes,
  workerd_cpu_ms: cpuMs,
  cpu_ms_per_request: requests > 0 ? cpuMs / requests : 0,
  cpu_ms_per_mib: requests > 0 ? cpuMs / ((requests * bodyBytes) / 2 ** 20) : 0,
  from,
});

/** Cloudflare operations per request, from the counting harness's counts (bench/counted-ingest/ops.ts). */
type OpsPerRequest = {
  requests_counted: number;
  kv_reads: number;
  kv_writes: number;
  kv_lists: number;
  do_requests: number;
  queue_messages: number;
  /** Billed operations: each message's 64 KB units written, read (once per delivery) and deleted. */
  queue_ops: number;
  r2_class_a: number;
  r2_class_b: number;
  analytics_data_points: number;
  raw: OpCounts;
};
const sum = (table: Record<string, number>, filter: (key: string) => boolean = () => true) => Object.entries(table).reduce((total, [key, n]) => total + (filter(key) ? n : 0), 0);
function perRequest(counts: OpCounts): OpsPerRequest {
  const n = Math.max(1, counts.requests);
  const method = (key: string) => key.slice(key.indexOf(".") + 1);
  const sent = sum(counts.queue_messages_sent);
  const writeOps = sum(counts.queue_write_ops);
  const opsPerMessage = sent > 0 ? writeOps / sent : 1;
  return {
    requests_counted: counts.requests,
    kv_reads: sum(counts.kv, (k) => ["get", "getWithMetadata"].includes(method(k))) / n,
    kv_writes: sum(counts.kv, (k) => ["put", "delete"].includes(method(k))) / n,
    kv_lists: sum(counts.kv, (k) => method(k) === "list") / n,
    do_requests: sum(counts.durable_object_requests) / n,
    queue_messages: sent / n,
    queue_ops: (writeOps + counts.queue_messages_delivered * opsPerMessage + writeOps) / n,
    r2_class_a: sum(counts.r2, (k) => ["put", "delete", "list", "createMultipartUpload", "resumeMultipartUpload"].includes(method(k))) / n,
    r2_class_b: sum(counts.r2, (k) => ["get", "head"].includes(method(k))) / n,
    analytics_data_points: sum(counts.analytics_data_points) / n,
    raw: counts,
  };
}

/** How each count in `ops` is obtained; written beside the numbers in latest.json and docs/cost.md. */
const OPS_METHOD = {
  harness:
    "A bench-only Worker (bench/counted-ingest) serves the ingest Worker's own code (src/ingest/worker.ts, unchanged) with every binding wrapped in a counting proxy; each scenario's load is replayed against it for a few seconds (its own isolate, so its caches start cold) and its counts are divided by the requests it served.",
  kv_reads: "KV get/getWithMetadata calls on INGEST_KEYS and BILLING_STATE, counted at the binding.",
  kv_writes: "KV put/delete calls, counted at the binding (the request path makes none; the billing side's writes are in the fixed costs).",
  do_requests: "Calls on a Durable Object stub (each RPC method call is one billed request), counted at the ORG_BILLING and ORG_INDEX bindings, including the usage queue consumer's calls (each harness consumes its own copy of the queue, so the consumer's calls are counted with the requests that caused them).",
  queue_messages: "Messages given to USAGE/DELIVERIES send/sendBatch, counted at the binding with their JSON size; operations = 64 KB units written + read once per delivery to the consumer (counted by the harness's queue handler) + deleted.",
  r2: "R2 calls on PARKING, counted at the binding (class A: put, delete, list, multipart; class B: get, head). Only the parking-on Worker has the bucket; the timed runs have parking off.",
  cpu: "workerd's CPU time (user + system, all threads) from /proc/<pid>/stat of the workerd processes Miniflare started, read just before and after each measured run (warm-up excluded), over the requests of those runs. It includes the objects, the queue consumer and Miniflare's local KV/R2/queue services, so it is an upper bound of the CPU Cloudflare bills the Worker for.",
};

type CollectorResult = {
  name: string;
  spans: number;
  body_bytes: number;
  protobuf_bytes: number;
  connections: number;
  duration_s: number;
  passthrough: Scenario & { mib_per_s: number };
  metering_off: Scenario & { mib_per_s: number; ratio_to_passthrough: number };
  metering_on: Scenario & { mib_per_s: number; ratio_to_passthrough: number };
  metering_on_vs_off: number;
  accepted_requests: number;
  spans_expected: number;
  spans_in_autumn: number;
  exact: boolean;
};

const sinkTenantCount = async (tenant: string) => ((await (await fetch(`${stack.sinkUrl}/_control/stats`)).json()) as { tenants: Record<string, { requests: number }> }).tenants[tenant]?.requests ?? 0;
/**
 * The requests the sink got for a tenant, once no more arrive: when a load round ends, the requests still
 * in flight on its connections (one each, hundreds of ms for a Collector-sized batch) are still being
 * forwarded, and reading the count at once missed them (8 batches short, one per connection).
 */
async function sinkTenantRequests(tenant: string): Promise<number> {
  let count = await sinkTenantCount(tenant);
  for (const started = Date.now(); Date.now() - started < 30_000; ) {
    await new Promise((r) => setTimeout(r, 1_000));
    const next = await sinkTenantCount(tenant);
    if (next === count) break;
    count = next;
  }
  return count;
}
const autumnSpans = async (org: string) => (await standIn<{ customers: Record<string, Record<string, { value: number }>> }>("GET", "/usage")).customers[org]?.spans?.value ?? 0;
/** Waits (up to a minute) until Autumn holds `expected` spans for the org; the spans it holds then. */
async function spansReachAutumn(org: string, expected: number): Promise<number> {
  const started = Date.now();
  let reported = await autumnSpans(org);
  while (reported < expected && Date.now() - started < 60_000) {
    await new Promise((r) => setTimeout(r, 500));
    reported = await autumnSpans(org);
  }
  return reported;
}

try {
  const body = traceBatch();
  const otlpGzip: Record<string, string> = { "content-type": "application/x-protobuf", "content-encoding": "gzip" };
  const otlpHeaders: Record<string, string> = process.env.BENCH_IDENTITY ? { "content-type": "application/x-protobuf" } : { "content-type": "application/x-protobuf", "content-encoding": "gzip" };
  const spansPerBatch = 20;

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
  let manyKeys: string[] = [];
  if (selected("cold") || selected("ops")) {
    const setupStarted = Date.now();
    manyKeys = await mintMany(Array.from({ length: DISTINCT_ORGS }, (_, i) => `bench_org_${i}`));
    log(`minted ${DISTINCT_ORGS} keys in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s`);
  }

  const steadyNames = {
    sink: "1. direct to the upstream sink (ceiling)",
    hop: "1b. pass-through Worker, no gate (the runtime hop alone)",
    paying: "2. ingest Worker, paying org, warm caches",
    metered: "2m. the same with usage metering on (USAGE_FEATURES: spans counted, usage queued and reported)",
    cold: `3. ingest Worker, ${DISTINCT_ORGS.toLocaleString("en")} distinct paying orgs (cold caches, KV path)`,
    suspended: "4. ingest Worker, suspended org (402 path)",
    status: "2s. GET /v1/status, the paying org's key, warm (against scenario 2: the gate's warm path)",
  };
  const steadyOptions = {
    paying: { headers: { ...otlpHeaders, authorization: `Bearer ${payingKey}` }, body, expect: 200 },
    metered: { headers: { ...otlpHeaders, authorization: `Bearer ${meteredKey}` }, body, expect: 200 },
    cold: { headers: otlpHeaders, body, expect: 200, keys: manyKeys },
    suspended: { headers: { ...otlpHeaders, authorization: `Bearer ${suspendedKey}` }, body, expect: 402 },
    status: { method: "GET" as const, headers: { authorization: `Bearer ${payingKey}` }, body: new Uint8Array(0), expect: 200 },
  };
  /**
   * One round of the cold-keys scenario: COLD_DURATION_S on its own third of the minted keys, so no key is met
   * twice across rounds. The load generator cycles through its keys: a round that served more requests than it
   * had keys met some of them warm, which would flatter the figure, so that is refused rather than reported.
   */
  const coldRound = async (round: number): Promise<Scenario> => {
    const share = Math.floor(manyKeys.length / ROUNDS);
    const keys = manyKeys.slice(round * share, (round + 1) * share);
    const run = await load(`${steadyNames.cold} (round ${round + 1})`, `${stack.ingestUrl}/v1/traces`, { ...steadyOptions.cold, keys, duration: COLD_DURATION_S });
    if (run.requests > keys.length) throw new Error(`cold keys, round ${round + 1}: ${run.requests} requests on ${keys.length} keys met some warm; raise BENCH_ORGS`);
    return run;
  };
  /** Per scenario key: its CPU cost, and (ops section) its operations per request. */
  const costs: Record<string, { name: string; cpu: CpuCost | null; ops: OpsPerRequest | null }> = {};
  const setCpu = (key: string, name: string, cpu: CpuCost) => (costs[key] = { name, cpu, ops: costs[key]?.ops ?? null });

  // Scenarios 1, 1b, 2, 2m, 3, 4 and 2s run in interleaved rounds so that drift in the machine's
  // conditions falls on all of them alike; each figure is the median of its rounds.
  // One 1 s warm-up per target, in its first round, as the Collector scenario's: the isolates stay warm across
  // rounds, and a 2 s warm-up before each of the 18 later rounds kept the bench over 5 minutes (324–337 s); 2 s in
  // the first round only left it at 287–297 s once cold keys ran in every round.
  const warmupFor = (round: number) => (round === 0 ? 1 : 0);
  let scenarios: Scenario[] = [];
  let metering: { name: string; ratio: number; accepted_requests: number; spans_expected: number; spans_in_autumn: number; exact: boolean } | null = null;
  if (selected("steady")) {
    const steady = [
      { name: steadyNames.sink, url: `${stack.sinkUrl}/v1/traces`, options: { headers: { ...otlpHeaders, "x-scope-orgid": paying }, body, expect: 200 } },
      { name: steadyNames.hop, url: `${stack.passthroughUrl}/v1/traces`, options: { headers: otlpHeaders, body, expect: 200 } },
      { name: steadyNames.paying, url: `${stack.ingestUrl}/v1/traces`, options: steadyOptions.paying },
      { name: steadyNames.metered, url: `${stack.meteredIngestUrl}/v1/traces`, options: steadyOptions.metered },
      { name: steadyNames.suspended, url: `${stack.ingestUrl}/v1/traces`, options: steadyOptions.suspended },
      { name: steadyNames.status, url: `${stack.ingestUrl}/v1/status`, options: steadyOptions.status },
    ];
    const rounds: Scenario[][] = steady.map(() => []);
    const coldRuns: Scenario[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, scenario] of steady.entries()) rounds[i]!.push(await load(`${scenario.name} (round ${round + 1})`, scenario.url, { ...scenario.options, warmup: warmupFor(round) }));
      // Cold keys interleaved too, each round on keys no round has used (coldRound), so each is paired with the hop's round beside it.
      if (selected("cold")) coldRuns.push(await coldRound(round));
    }
    const [sinkRuns, hopRuns, payingRuns, meteredRuns, suspendedRuns, statusRuns] = rounds;
    scenarios = [summarize(steady[0]!.name, sinkRuns!), summarize(steady[1]!.name, hopRuns!), summarize(steady[2]!.name, payingRuns!), summarize(steady[3]!.name, meteredRuns!)];
    if (selected("cold")) scenarios.push(summarize(steadyNames.cold, coldRuns));
    scenarios.push(summarize(steady[4]!.name, suspendedRuns!));
    scenarios.push(summarize(steady[5]!.name, statusRuns!));

    // Metering on against off, same run: and every span the sink got from the metered org (warm-ups included) must reach Autumn, exactly.
    const meteredAccepted = await sinkTenantRequests(metered);
    const reportedSpans = await spansReachAutumn(metered, meteredAccepted * spansPerBatch);
    const meteredScenario = scenarios.find((s) => s.name === steadyNames.metered)!;
    const payingScenario = scenarios.find((s) => s.name === steadyNames.paying)!;
    metering = {
      name: "2m. usage metering on, against scenario 2 (off), same run",
      ratio: pairedRatio(meteredScenario, payingScenario),
      accepted_requests: meteredAccepted,
      spans_expected: meteredAccepted * spansPerBatch,
      spans_in_autumn: reportedSpans,
      exact: reportedSpans === meteredAccepted * spansPerBatch,
    };
    log(`${metering.name}: ${metering.ratio.toFixed(2)}×; spans in Autumn ${reportedSpans} of ${metering.spans_expected} (${metering.exact ? "exact" : "NOT exact"})`);
  } else if (selected("cold")) {
    const coldRuns: Scenario[] = [];
    for (let round = 0; round < ROUNDS; round++) coldRuns.push(await coldRound(round));
    scenarios.push(summarize(steadyNames.cold, coldRuns));
  }
  const scenarioKeys: Record<string, string> = { [steadyNames.sink]: "1", [steadyNames.hop]: "1b", [steadyNames.paying]: "2", [steadyNames.metered]: "2m", [steadyNames.cold]: "3", [steadyNames.suspended]: "4", [steadyNames.status]: "2s" };
  for (const s of scenarios) setCpu(scenarioKeys[s.name]!, s.name, cpuCost(s.requests, body.byteLength, s.workerd_cpu_ms, "the timed runs"));

  // 8. Large OTLP bodies (issue 11): 1 MiB of gzip per request, where buffering and decompression show.
  const largeOtlp = largeGzipBody(1024 * 1024);
  const largeConnections = 8;
  const largeBodies = !selected("large") ? null : await (async () => {
    const largeRuns = { hop: [] as Scenario[], ingest: [] as Scenario[], uninflated: [] as Scenario[] };
    const paid = { ...otlpGzip, authorization: `Bearer ${payingKey}` };
    for (let round = 0; round < ROUNDS; round++) {
      largeRuns.hop.push(await load(`8. 1 MiB gzip OTLP bodies, pass-through Worker (round ${round + 1})`, `${stack.passthroughUrl}/v1/traces`, { headers: otlpGzip, body: largeOtlp, expect: 200, connections: largeConnections, duration: LARGE_DURATION_S, warmup: warmupFor(round) }));
      largeRuns.ingest.push(await load(`8. 1 MiB gzip OTLP bodies, ingest Worker (round ${round + 1})`, `${stack.ingestUrl}/v1/traces`, { headers: paid, body: largeOtlp, expect: 200, connections: largeConnections, duration: LARGE_DURATION_S, warmup: warmupFor(round) }));
      largeRuns.uninflated.push(await load(`8. 1 MiB gzip OTLP bodies, ingest Worker, bomb check and metering off (round ${round + 1})`, `${stack.uninflatedIngestUrl}/v1/traces`, { headers: paid, body: largeOtlp, expect: 200, connections: largeConnections, duration: LARGE_DURATION_S, warmup: warmupFor(round) }));
    }
    const mib = largeOtlp.byteLength / 2 ** 20;
    const passthrough = summarize("pass-through Worker", largeRuns.hop);
    const ingest = summarize("ingest Worker", largeRuns.ingest);
    const uninflated = summarize("ingest Worker, bomb check and metering off", largeRuns.uninflated);
    const largeBodies = {
      name: "8. 1 MiB gzip OTLP bodies",
      body_bytes: largeOtlp.byteLength,
      connections: largeConnections,
      duration_s: LARGE_DURATION_S,
      passthrough: { ...passthrough, mib_per_s: median(largeRuns.hop.map((r) => r.rps)) * mib },
      ingest: { ...ingest, mib_per_s: median(largeRuns.ingest.map((r) => r.rps)) * mib },
      ratio_to_passthrough: 0,
      /** MAX_DECOMPRESSED_BYTES=0, metering off: the gzip body is forwarded without being inflated (issue 20). */
      uninflated: { ...uninflated, mib_per_s: median(largeRuns.uninflated.map((r) => r.rps)) * mib, ratio_to_passthrough: 0 },
    };
    largeBodies.ratio_to_passthrough = pairedRatio(ingest, passthrough);
    largeBodies.uninflated.ratio_to_passthrough = pairedRatio(uninflated, passthrough);
    setCpu("8", largeBodies.name, cpuCost(ingest.requests, largeOtlp.byteLength, ingest.workerd_cpu_ms, "the timed runs"));
    setCpu("8-passthrough", `${largeBodies.name}, pass-through Worker`, cpuCost(passthrough.requests, largeOtlp.byteLength, passthrough.workerd_cpu_ms, "the timed runs"));
    setCpu("8u", `${largeBodies.name}, bomb check and metering off`, cpuCost(uninflated.requests, largeOtlp.byteLength, uninflated.workerd_cpu_ms, "the timed runs"));
    log(`${largeBodies.name}: ingest ${largeBodies.ingest.mib_per_s.toFixed(1)} MiB/s, pass-through ${largeBodies.passthrough.mib_per_s.toFixed(1)} MiB/s (${largeBodies.ratio_to_passthrough.toFixed(2)}×); bomb check and metering off ${largeBodies.uninflated.mib_per_s.toFixed(1)} MiB/s (${largeBodies.uninflated.ratio_to_passthrough.toFixed(2)}×)`);
    return largeBodies;
  })();

  // 9. One Logpush batch of 64 MiB decompressed NDJSON (issue 11): throughput and workerd's peak RSS.
  const logpushBatch = selected("logpush") || selected("ops") ? logpushNdjson(64 * 2 ** 20 - 4096) : null;
  const logpushGzip = logpushBatch ? gzipSync(logpushBatch.text) : null;
  const logpushScenario = !(selected("logpush") && logpushBatch && logpushGzip) ? null : await (async () => {
    const logpushRuns = { passthrough: [] as BatchRun[], ingest: [] as BatchRun[] };
    for (let round = 0; round < ROUNDS; round++) {
      logpushRuns.passthrough.push(await postBatch(`${stack.passthroughUrl}/v1/logs`, logpushGzip, {}, 200));
      logpushRuns.ingest.push(await postBatch(`${stack.ingestUrl}/v1/logpush/http_requests`, logpushGzip, { authorization: `Bearer ${payingKey}` }, 200));
    }
    const decompressedMib = logpushBatch.text.length / 2 ** 20;
    const batchSummary = (runs: BatchRun[]) => {
      const seconds = median(runs.map((r) => r.seconds));
      return { seconds, mib_per_s: decompressedMib / seconds, peak_rss_increase_mib: Math.max(...runs.map((r) => r.peakRssIncreaseMib)), statuses: runs.map((r) => r.status), workerd_cpu_ms: median(runs.map((r) => r.workerdCpuMs)) };
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
    // Per MiB of the gzip body as received; per decompressed MiB it is this × gzip/decompressed.
    setCpu("9", logpushScenario.name, cpuCost(1, logpushGzip.byteLength, logpushScenario.ingest.workerd_cpu_ms, `the median of ${ROUNDS} timed batches`));
    log(`${logpushScenario.name}: ingest ${logpushScenario.ingest.mib_per_s.toFixed(1)} MiB/s (peak RSS +${logpushScenario.ingest.peak_rss_increase_mib.toFixed(0)} MiB, ${logpushScenario.ingest.workerd_cpu_ms.toFixed(0)} ms workerd CPU), pass-through ${logpushScenario.passthrough.mib_per_s.toFixed(1)} MiB/s (+${logpushScenario.passthrough.peak_rss_increase_mib.toFixed(0)} MiB)`);
    return logpushScenario;
  })();

  // 10. Collector-sized batches (issue 20): 8,192 spans per request, protobuf, gzip, as the
  // Collector's otlphttp exporter sends them; pass-through, metering off and metering on, interleaved.
  const collector = selected("collector") || selected("ops") ? collectorBatch(8_192) : null;
  const collectorOrg = "bench_collector_metered";
  let collectorResult: CollectorResult | null = null;
  const collectorConnections = 8;
  if (selected("collector") && collector) {
    await control("/customers", { id: collectorOrg });
    const collectorKey = await mint(collectorOrg);
    log(`collector-sized batches: ${collector.spans} spans, ${collector.protobufBytes.toLocaleString("en")} bytes of protobuf, ${collector.body.byteLength.toLocaleString("en")} gzipped`);
    const runs = { hop: [] as Scenario[], off: [] as Scenario[], on: [] as Scenario[] };
    for (let round = 0; round < ROUNDS; round++) {
      // One warm-up per target, in the first round: the isolates stay warm across rounds.
      const common = { body: collector.body, expect: 200, connections: collectorConnections, duration: COLLECTOR_DURATION_S, warmup: round === 0 ? 1 : 0 };
      runs.hop.push(await load(`10. Collector-sized batches, pass-through Worker (round ${round + 1})`, `${stack.passthroughUrl}/v1/traces`, { ...common, headers: otlpGzip }));
      runs.off.push(await load(`10. Collector-sized batches, ingest Worker, metering off (round ${round + 1})`, `${stack.ingestUrl}/v1/traces`, { ...common, headers: { ...otlpGzip, authorization: `Bearer ${payingKey}` } }));
      runs.on.push(await load(`10. Collector-sized batches, ingest Worker, metering on (round ${round + 1})`, `${stack.meteredIngestUrl}/v1/traces`, { ...common, headers: { ...otlpGzip, authorization: `Bearer ${collectorKey}` } }));
    }
    const mib = collector.body.byteLength / 2 ** 20;
    const withMib = (name: string, list: Scenario[]) => ({ ...summarize(name, list), mib_per_s: median(list.map((r) => r.rps)) * mib });
    const passthrough = withMib("pass-through Worker", runs.hop);
    const off = withMib("ingest Worker, metering off", runs.off);
    const on = withMib("ingest Worker, metering on", runs.on);
    const accepted = await sinkTenantRequests(collectorOrg);
    const inAutumn = await spansReachAutumn(collectorOrg, accepted * collector.spans);
    collectorResult = {
      name: "10. Collector-sized batches: 8,192 spans per request, protobuf, gzip",
      spans: collector.spans,
      body_bytes: collector.body.byteLength,
      protobuf_bytes: collector.protobufBytes,
      connections: collectorConnections,
      duration_s: COLLECTOR_DURATION_S,
      passthrough,
      metering_off: { ...off, ratio_to_passthrough: pairedRatio(off, passthrough) },
      metering_on: { ...on, ratio_to_passthrough: pairedRatio(on, passthrough) },
      metering_on_vs_off: pairedRatio(on, off),
      accepted_requests: accepted,
      spans_expected: accepted * collector.spans,
      spans_in_autumn: inAutumn,
      exact: inAutumn === accepted * collector.spans,
    };
    setCpu("10", `${collectorResult.name}, metering off`, cpuCost(off.requests, collector.body.byteLength, off.workerd_cpu_ms, "the timed runs"));
    setCpu("10m", `${collectorResult.name}, metering on`, cpuCost(on.requests, collector.body.byteLength, on.workerd_cpu_ms, "the timed runs"));
    setCpu("10-passthrough", `${collectorResult.name}, pass-through Worker`, cpuCost(passthrough.requests, collector.body.byteLength, passthrough.workerd_cpu_ms, "the timed runs"));
    log(
      `${collectorResult.name}: pass-through ${passthrough.mib_per_s.toFixed(1)} MiB/s; metering off ${off.mib_per_s.toFixed(1)} MiB/s (${collectorResult.metering_off.ratio_to_passthrough.toFixed(2)}×); ` +
        `metering on ${on.mib_per_s.toFixed(1)} MiB/s (${collectorResult.metering_on.ratio_to_passthrough.toFixed(2)}×); spans in Autumn ${inAutumn} of ${collectorResult.spans_expected} (${collectorResult.exact ? "exact" : "NOT exact"})`,
    );
  }

  const burst = !selected("webhooks") ? null : await (async () => {
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

  return burst;
  })();
  const gateDecision = !selected("gate") ? null : await (async () => {
  // 6. The gate decision alone. Warm: pure CPU, timed in Node on the same V8 (workerd's clocks
  // do not advance without I/O). KV and object paths: timed inside workerd with real bindings.
  log("gate micro-benchmarks ...");
  const memorySources: GateSources = {
    hashKey: async (key) => key,
    lookupKey: async () => ({ org_id: "org_warm", key_id: "ik_warm", created_at: 0 }),
    readMirror: async () => null,
    askObject: async () => ({ state: "ok", since: 0, version: 0, suspend_at: null, suspended_at: null, pay_url: null, limits: [], enforcement: null }),
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

    return gateDecision;
  })();

  // The counting pass: each scenario's load replayed for OPS_DURATION_S against the counting
  // harness (bench/counted-ingest), whose bindings count the Cloudflare operations asked of them.
  // Its own orgs, so the timed scenarios' checks above are untouched by it.
  if (selected("ops") && stack.counted && logpushGzip && collector) {
    const counted = stack.counted;
    const opsUrl = (base: string) => `${base}/__bench/ops`;
    const resetOps = async (base: string) => {
      if (!(await fetch(opsUrl(base), { method: "DELETE" })).ok) throw new Error(`${base}: could not reset the operation counts`);
    };
    const readOps = async (base: string) => (await (await fetch(opsUrl(base))).json()) as OpCounts;
    /** `drainMs`: time for work the requests left behind (usage flushes, the queue consumer) before the counts are read. */
    const countLoad = async (key: string, name: string, base: string, path: string, options: { headers: Record<string, string>; body: Uint8Array; expect: number; keys?: string[]; connections?: number }, drainMs: number) => {
      await resetOps(base);
      const run = await load(`ops ${key}: ${name}`, `${base}${path}`, { ...options, duration: OPS_DURATION_S, warmup: 0 });
      await new Promise((r) => setTimeout(r, drainMs));
      const ops = perRequest(await readOps(base));
      costs[key] = { name, cpu: costs[key]?.cpu ?? cpuCost(run.requests, options.body.byteLength, run.workerd_cpu_ms, "the counting pass (harness)"), ops };
      log(`ops ${key}: per request KV reads ${ops.kv_reads.toFixed(4)}, DO requests ${ops.do_requests.toFixed(4)}, queue messages ${ops.queue_messages.toFixed(4)}, R2 A/B ${ops.r2_class_a.toFixed(3)}/${ops.r2_class_b.toFixed(3)} (${ops.requests_counted} requests)`);
    };
    const opsOrgs = { paying: "bench_ops_paying", metered: "bench_ops_metered", suspended: "bench_ops_suspended" };
    for (const org of Object.values(opsOrgs)) await control("/customers", { id: org });
    const opsKeys = { paying: await mint(opsOrgs.paying), metered: await mint(opsOrgs.metered), suspended: await mint(opsOrgs.suspended) };
    if (!(await admin("POST", `/orgs/${opsOrgs.suspended}/override`, { action: "suspend", note: "benchmark: counting the 402 path" })).ok) throw new Error("could not suspend");
    const bearer = (key: string) => ({ ...otlpHeaders, authorization: `Bearer ${key}` });
    // The metering-off harness's consumer takes a batch within its 1 s batch timeout (as deployed): its index-shard calls land before the counts are read.
    const OFF_DRAIN_MS = 1_300;
    await countLoad("2", steadyNames.paying, counted.off, "/v1/traces", { headers: bearer(opsKeys.paying), body, expect: 200 }, OFF_DRAIN_MS);
    await countLoad("2m", steadyNames.metered, counted.metered, "/v1/traces", { headers: bearer(opsKeys.metered), body, expect: 200 }, 3_000);
    // The keys the timed scenario 3 used: this isolate has never seen them, so its caches are cold as that scenario's were.
    await countLoad("3", steadyNames.cold, counted.off, "/v1/traces", { headers: otlpHeaders, body, expect: 200, keys: manyKeys.slice().reverse() }, OFF_DRAIN_MS);
    await countLoad("4", steadyNames.suspended, counted.off, "/v1/traces", { headers: bearer(opsKeys.suspended), body, expect: 402 }, OFF_DRAIN_MS);
    await countLoad("8", "8. 1 MiB gzip OTLP bodies", counted.off, "/v1/traces", { headers: { ...otlpGzip, authorization: `Bearer ${opsKeys.paying}` }, body: largeOtlp, expect: 200, connections: largeConnections }, OFF_DRAIN_MS);
    await countLoad("10", "10. Collector-sized batches, metering off", counted.off, "/v1/traces", { headers: { ...otlpGzip, authorization: `Bearer ${opsKeys.paying}` }, body: collector.body, expect: 200, connections: collectorConnections }, OFF_DRAIN_MS);
    await countLoad("10m", "10. Collector-sized batches, metering on", counted.metered, "/v1/traces", { headers: { ...otlpGzip, authorization: `Bearer ${opsKeys.metered}` }, body: collector.body, expect: 200, connections: collectorConnections }, 3_000);
    // 9: one Logpush batch, one request.
    await resetOps(counted.off);
    await postBatch(`${counted.off}/v1/logpush/http_requests`, logpushGzip, { authorization: `Bearer ${opsKeys.paying}` }, 200);
    await new Promise((r) => setTimeout(r, OFF_DRAIN_MS));
    costs["9"] = { name: "9. one Logpush batch of 64 MiB decompressed NDJSON", cpu: costs["9"]?.cpu ?? null, ops: perRequest(await readOps(counted.off)) };
    // 4p: a suspended org with parking on (the deployed default): every batch is a new one (a
    // resend is answered as kept, without parking it again), 200 of them, 8 at a time.
    const parkingBodies = Array.from({ length: 200 }, () => traceBatch());
    await resetOps(counted.parking);
    const parkingCpuBefore = workerdCpuSeconds();
    const parkingStatuses: Record<string, number> = {};
    await pool(parkingBodies, 8, async (batch) => {
      const response = await fetch(`${counted.parking}/v1/traces`, { method: "POST", headers: bearer(opsKeys.suspended), body: batch as Uint8Array<ArrayBuffer> });
      await response.arrayBuffer();
      parkingStatuses[response.status] = (parkingStatuses[response.status] ?? 0) + 1;
    });
    const parkingCpuMs = (workerdCpuSeconds() - parkingCpuBefore) * 1000;
    if ((parkingStatuses["402"] ?? 0) !== parkingBodies.length) throw new Error(`parking-on suspended org: statuses ${JSON.stringify(parkingStatuses)}, expected 402 for all`);
    costs["4p"] = {
      name: "4p. suspended org with parking on (R2 bound, as deployed): 200 distinct batches, counting pass only",
      cpu: cpuCost(parkingBodies.length, body.byteLength, parkingCpuMs, "the counting pass (harness, 8 concurrent)"),
      ops: perRequest(await readOps(counted.parking)),
    };
    log(`ops 4p: per request R2 class A ${costs["4p"].ops!.r2_class_a.toFixed(2)}, class B ${costs["4p"].ops!.r2_class_b.toFixed(2)}, queue messages ${costs["4p"].ops!.queue_messages.toFixed(2)}, KV reads ${costs["4p"].ops!.kv_reads.toFixed(3)}, DO ${costs["4p"].ops!.do_requests.toFixed(3)}`);
  }

  const sweep = selected("sweep") ? await reconciliationSweep() : null;

  const ceiling = scenarios.find((s) => s.name === steadyNames.sink);
  const hop = scenarios.find((s) => s.name === steadyNames.hop);
  const withRatios = scenarios.map((s) => ({
    ...s,
    rps_ratio: ceiling ? pairedRatio(s, ceiling) : null,
    rps_ratio_to_hop: hop ? pairedRatio(s, hop) : null,
    p50_added_ms: ceiling ? s.p50_ms - ceiling.p50_ms : null,
    cpu_ms_per_request: costs[scenarioKeys[s.name]!]?.cpu?.cpu_ms_per_request ?? null,
  }));
  const machine = { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version, date: new Date().toISOString() };
  const benchSeconds = (performance.now() - benchStarted) / 1000;
  const results = {
    machine,
    settings: { duration_s: DURATION_S, rounds: ROUNDS, connections: CONNECTIONS, body_bytes: body.byteLength, distinct_orgs: DISTINCT_ORGS, large_duration_s: LARGE_DURATION_S, collector_duration_s: COLLECTOR_DURATION_S, ops_duration_s: OPS_DURATION_S, only: ONLY ? [...ONLY] : null },
    wall_s: benchSeconds,
    scenarios: withRatios,
    metering,
    large_otlp: largeBodies,
    logpush_batch: logpushScenario,
    collector: collectorResult,
    webhooks: burst,
    gate: gateDecision,
    reconcile: sweep,
    cost: { method: OPS_METHOD, by_scenario: costs },
  };
  const outDir = join(REPO_ROOT, "bench", "results");
  if (WRITE) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
  }

  const f = (n: number | null | undefined, digits = 1) => (n === null || n === undefined ? "—" : n.toFixed(digits));
  const lines: string[] = [
    `Measured ${machine.date.slice(0, 10)} on ${machine.cores} × ${machine.cpu}, ${machine.memory_gib} GiB, Node ${machine.node}; ${CONNECTIONS} connections, ${ROUNDS} interleaved rounds of ${DURATION_S} s per scenario (${COLD_DURATION_S} s for cold keys, each round on its own ${Math.floor(DISTINCT_ORGS / ROUNDS).toLocaleString("en")} keys; medians; each ratio the median of its per-round ratios, every round against the reference round beside it), a ${body.byteLength}-byte gzipped protobuf batch of 20 spans; the Workers bundled as for deploy and run in one local workerd (Miniflare), the load generator, the sink and workerd sharing the machine. The whole bench took ${f(benchSeconds / 60, 1)} minutes.`,
  ];
  if (withRatios.length > 0 || burst) {
    lines.push(
      "",
      "| scenario | req/s | × ceiling | × runtime hop | p50 ms | p99 ms | added p50 ms | workerd CPU ms/request | errors | unexpected status |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      ...withRatios.map((s) => `| ${s.name} | ${f(s.rps, 0)} | ${f(s.rps_ratio, 2)} | ${f(s.rps_ratio_to_hop, 2)} | ${s.p50_ms} | ${s.p99_ms} | ${f(s.p50_added_ms, 1)} | ${f(s.cpu_ms_per_request, 3)} | ${s.errors} | ${s.unexpected_status}${s.unexpected_status > 0 ? ` (statuses ${Object.entries(s.statuses).map(([code, n]) => `${code}: ${n}`).join(", ")})` : ""} |`),
    );
    if (burst) lines.push(`| ${burst.name} | ${f(burst.rps, 0)} | — | — | ${f(burst.p50_ms)} | ${f(burst.p99_ms)} | — | — | ${burst.errors} | — |`);
  }
  if (metering) {
    lines.push("", `Usage metering (2m against 2, same run): ${f(metering.ratio, 2)}× the throughput with metering off; the ${metering.accepted_requests.toLocaleString("en")} metered batches' ${metering.spans_expected.toLocaleString("en")} spans reached Autumn ${metering.exact ? "exactly" : `NOT exactly (${metering.spans_in_autumn.toLocaleString("en")})`}.`);
  }
  if (largeBodies) {
    lines.push(
      "",
      `| ${largeBodies.name} (${(largeBodies.body_bytes / 2 ** 20).toFixed(2)} MiB each, ${largeBodies.connections} connections, ${ROUNDS} rounds of ${largeBodies.duration_s} s) | pass-through Worker | ingest Worker | ingest, bomb check and metering off (MAX_DECOMPRESSED_BYTES=0) |`,
      "|---|---:|---:|---:|",
      `| throughput | ${f(largeBodies.passthrough.mib_per_s)} MiB/s | ${f(largeBodies.ingest.mib_per_s)} MiB/s | ${f(largeBodies.uninflated.mib_per_s)} MiB/s |`,
      `| × pass-through | 1.00 | ${f(largeBodies.ratio_to_passthrough, 2)} | ${f(largeBodies.uninflated.ratio_to_passthrough, 2)} |`,
      `| p50 / p99 latency | ${largeBodies.passthrough.p50_ms} / ${largeBodies.passthrough.p99_ms} ms | ${largeBodies.ingest.p50_ms} / ${largeBodies.ingest.p99_ms} ms | ${largeBodies.uninflated.p50_ms} / ${largeBodies.uninflated.p99_ms} ms |`,
      `| workerd CPU per request / per MiB | ${f(costs["8-passthrough"]?.cpu?.cpu_ms_per_request, 2)} / ${f(costs["8-passthrough"]?.cpu?.cpu_ms_per_mib, 2)} ms | ${f(costs["8"]?.cpu?.cpu_ms_per_request, 2)} / ${f(costs["8"]?.cpu?.cpu_ms_per_mib, 2)} ms | ${f(costs["8u"]?.cpu?.cpu_ms_per_request, 2)} / ${f(costs["8u"]?.cpu?.cpu_ms_per_mib, 2)} ms |`,
    );
  }
  if (logpushScenario) {
    lines.push(
      "",
      `| ${logpushScenario.name} (${logpushScenario.records.toLocaleString("en")} records, ${f(logpushScenario.gzip_bytes / 2 ** 20)} MiB gzip) | pass-through Worker (buffers, forwards the gzip) | ingest Worker (decompress, convert, forward OTLP JSON) | × pass-through |`,
      "|---|---:|---:|---:|",
      `| throughput (decompressed MiB/s, median of ${ROUNDS}) | ${f(logpushScenario.passthrough.mib_per_s)} | ${f(logpushScenario.ingest.mib_per_s)} | ${f(logpushScenario.ratio_to_passthrough, 2)} |`,
      `| peak workerd RSS increase | ${f(logpushScenario.passthrough.peak_rss_increase_mib, 0)} MiB | ${f(logpushScenario.ingest.peak_rss_increase_mib, 0)} MiB | |`,
      `| workerd CPU per batch (median) | ${f(logpushScenario.passthrough.workerd_cpu_ms, 0)} ms | ${f(logpushScenario.ingest.workerd_cpu_ms, 0)} ms | |`,
    );
  }
  if (collectorResult) {
    const c = collectorResult;
    lines.push(
      "",
      `| ${c.name} (${f(c.body_bytes / 2 ** 10, 0)} KiB gzip, ${f(c.protobuf_bytes / 2 ** 20, 2)} MiB protobuf, ${c.connections} connections, ${ROUNDS} rounds of ${c.duration_s} s) | pass-through Worker | ingest, metering off | ingest, metering on |`,
      "|---|---:|---:|---:|",
      `| throughput (MiB/s of gzip as received) | ${f(c.passthrough.mib_per_s)} | ${f(c.metering_off.mib_per_s)} | ${f(c.metering_on.mib_per_s)} |`,
      `| × pass-through | 1.00 | ${f(c.metering_off.ratio_to_passthrough, 2)} | ${f(c.metering_on.ratio_to_passthrough, 2)} |`,
      `| requests/s (spans/s) | ${f(c.passthrough.rps)} (${f(c.passthrough.rps * c.spans, 0)}) | ${f(c.metering_off.rps)} (${f(c.metering_off.rps * c.spans, 0)}) | ${f(c.metering_on.rps)} (${f(c.metering_on.rps * c.spans, 0)}) |`,
      `| p50 / p99 latency | ${c.passthrough.p50_ms} / ${c.passthrough.p99_ms} ms | ${c.metering_off.p50_ms} / ${c.metering_off.p99_ms} ms | ${c.metering_on.p50_ms} / ${c.metering_on.p99_ms} ms |`,
      `| workerd CPU per request / per MiB | ${f(costs["10-passthrough"]?.cpu?.cpu_ms_per_request, 1)} / ${f(costs["10-passthrough"]?.cpu?.cpu_ms_per_mib, 1)} ms | ${f(costs["10"]?.cpu?.cpu_ms_per_request, 1)} / ${f(costs["10"]?.cpu?.cpu_ms_per_mib, 1)} ms | ${f(costs["10m"]?.cpu?.cpu_ms_per_request, 1)} / ${f(costs["10m"]?.cpu?.cpu_ms_per_mib, 1)} ms |`,
      "",
      `Collector-sized batches with metering on: ${f(c.metering_on_vs_off, 2)}× metering off; the ${c.accepted_requests.toLocaleString("en")} metered batches' ${c.spans_expected.toLocaleString("en")} spans reached Autumn ${c.exact ? "exactly" : `NOT exactly (${c.spans_in_autumn.toLocaleString("en")})`}.`,
    );
  }
  const opsRows = Object.entries(costs).filter(([, entry]) => entry.ops);
  if (opsRows.length > 0) {
    lines.push(
      "",
      `| Cloudflare operations per request (counting pass, ${OPS_DURATION_S} s per scenario against the counting harness; see docs/cost.md) | requests counted | KV reads | DO requests | queue messages (ops) | R2 class A / B | workerd CPU ms/request |`,
      "|---|---:|---:|---:|---:|---:|---:|",
      ...opsRows.map(([, e]) => `| ${e.name} | ${e.ops!.requests_counted} | ${f(e.ops!.kv_reads, 4)} | ${f(e.ops!.do_requests, 4)} | ${f(e.ops!.queue_messages, 4)} (${f(e.ops!.queue_ops, 4)}) | ${f(e.ops!.r2_class_a, 2)} / ${f(e.ops!.r2_class_b, 2)} | ${f(e.cpu?.cpu_ms_per_request, 3)} |`),
    );
  }
  if (burst) lines.push("", `Webhook burst: ${burst.processed} processed, ${burst.duplicate} acknowledged as redeliveries, ${burst.failed} failed; ${burst.orgs_in_wrong_state} orgs in a wrong state, ${burst.orgs_with_wrong_transition_count} with a wrong number of transitions.`);
  if (gateDecision) {
    lines.push(
      "",
      "| gate decision | per call |",
      "|---|---:|",
      `| warm (isolate memory, Node on the same V8) | ${f(gateDecision.warm_memory_ns, 0)} ns |`,
      `| KV path (mirror read, inside workerd, mean of ${gateDecision.kv_path.calls}) | ${f(gateDecision.kv_path.mean_ms * 1000, 0)} µs |`,
      `| object-confirm path (mirror says suspended, object asked; mean of ${gateDecision.object_confirm_path.calls}) | ${f(gateDecision.object_confirm_path.mean_ms * 1000, 0)} µs |`,
    );
  }
  if (sweep) {
    lines.push(
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
    );
  }
  const table = lines.join("\n");
  // The README's (or docs/benchmark.md's) marked section is rewritten with the same table.
  const marked = /<!-- bench:start -->[\s\S]*<!-- bench:end -->/;
  const tableTargets = [join(REPO_ROOT, "README.md"), join(REPO_ROOT, "docs", "benchmark.md")].filter((path) => existsSync(path) && marked.test(readFileSync(path, "utf8")));
  let costDoc: string | null = null;
  if (WRITE) {
    writeFileSync(join(outDir, "latest.md"), `${table}\n`);
    for (const path of tableTargets) writeFileSync(path, readFileSync(path, "utf8").replace(marked, `<!-- bench:start -->\n${table}\n<!-- bench:end -->`));
    costDoc = writeCostDoc(results);
  }
  const written = ["bench/results/latest.json", "latest.md", ...tableTargets.map((path) => path.slice(REPO_ROOT.length + 1)), ...(costDoc ? [costDoc] : [])];
  console.log(`\n${table}\n\n${WRITE ? `Written to ${written.join(", ")}.` : ONLY ? `--only ${[...ONLY].join(",")}: nothing written.` : "BENCH_WRITE=0: nothing written."}`);
  log(`the bench took ${f(benchSeconds, 0)} s`);
  if (sweep && !sweep.checks_passed) console.log("The reconciliation sweep's checks FAILED: see its line above and reconcile in the results.");
} finally {
  await stack.stop();
}
