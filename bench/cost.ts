import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { REPO_ROOT } from "../tools/paths.ts";

/**
 * docs/cost.md from a bench run's results (bench/results/latest.json): what a request costs on
 * Cloudflare, in dollars per million requests and per GiB, from the CPU time and the operations
 * the bench measured per scenario and Cloudflare's published prices below. `npm run bench` calls
 * writeCostDoc at its end; `npm run bench:cost` rewrites docs/cost.md from latest.json alone.
 */

/** Cloudflare's published prices (USD, Workers Paid, past the monthly included usage), as read on PRICES_AS_OF. */
export const PRICES_AS_OF = "2026-12-02";
export const PRICES = {
  workers_requests_per_million: { usd: 0.3, included: "10 million / month", source: "https://developers.cloudflare.com/workers/platform/pricing/" },
  workers_cpu_per_million_ms: { usd: 0.02, included: "30 million CPU ms / month", source: "https://developers.cloudflare.com/workers/platform/pricing/" },
  kv_reads_per_million: { usd: 0.5, included: "10 million / month", source: "https://blog.cloudflare.com/workers-kv-free-tier/ (the rates of https://developers.cloudflare.com/kv/platform/pricing/)" },
  kv_writes_per_million: { usd: 5.0, included: "1 million / month (writes, deletes and lists each)", source: "https://blog.cloudflare.com/workers-kv-free-tier/ (the rates of https://developers.cloudflare.com/kv/platform/pricing/)" },
  kv_storage_per_gb_month: { usd: 0.5, included: "1 GB", source: "https://blog.cloudflare.com/workers-kv-free-tier/" },
  do_requests_per_million: { usd: 0.15, included: "1 million / month; every RPC method call on a stub and every alarm invocation is a request", source: "https://developers.cloudflare.com/durable-objects/platform/pricing/" },
  do_duration_per_million_gb_s: { usd: 12.5, included: "400,000 GB-s / month; 128 MB billed per active object", source: "https://developers.cloudflare.com/durable-objects/platform/pricing/" },
  do_sqlite_rows_read_per_million: { usd: 0.001, included: "25 billion / month", source: "https://blog.cloudflare.com/building-ai-agents-with-mcp-authn-authz-and-durable-objects/ (the storage table of https://developers.cloudflare.com/durable-objects/platform/pricing/)" },
  do_sqlite_rows_written_per_million: { usd: 1.0, included: "50 million / month", source: "https://blog.cloudflare.com/building-ai-agents-with-mcp-authn-authz-and-durable-objects/" },
  do_sqlite_storage_per_gb_month: { usd: 0.2, included: "5 GB-month", source: "https://blog.cloudflare.com/building-ai-agents-with-mcp-authn-authz-and-durable-objects/" },
  queues_ops_per_million: { usd: 0.4, included: "1 million / month; one operation per 64 KB written, read or deleted, so 3 per message delivered once", source: "https://developers.cloudflare.com/queues/pricing/" },
  r2_class_a_per_million: { usd: 4.5, included: "1 million / month", source: "https://developers.cloudflare.com/r2/pricing/" },
  r2_class_b_per_million: { usd: 0.36, included: "10 million / month", source: "https://developers.cloudflare.com/r2/pricing/" },
  r2_storage_per_gb_month: { usd: 0.015, included: "10 GB-month", source: "https://developers.cloudflare.com/r2/pricing/" },
  analytics_engine_data_points_per_million: { usd: 0.25, included: "10 million / month", source: "https://developers.cloudflare.com/analytics/analytics-engine/pricing/" },
  analytics_engine_read_queries_per_million: { usd: 1.0, included: "1 million / month", source: "https://developers.cloudflare.com/analytics/analytics-engine/pricing/" },
} as const;

/**
 * The deployed schedule the fixed costs follow (wrangler.jsonc and src/ingest/wrangler.jsonc
 * vars and crons; the defaults in src). Changing one there means changing it here.
 */
export const SCHEDULE = {
  sweeps_per_month: 2 * 24 * 30, // "*/30 * * * *" on the billing Worker (reconciliation) and the ingest Worker (parking cleanup)
  customers_per_page: 1_000,
  resync_interval_h: 6, // RESYNC_INTERVAL: an org not ok is re-read this often
  limit_resync_interval_min: 10, // LIMIT_RESYNC_INTERVAL: while a plan limit is in force
  usage_report_interval_s: 30, // USAGE_REPORT_INTERVAL: an org's object reports usage at most this often
  usage_flush_interval_s: 1, // each isolate sends at most one usage message per org, and one activity message for all its orgs, a second
  park_retention_h: 72, // PARK_RETENTION
};

type CpuCost = { requests: number; body_bytes: number; cpu_ms_per_request: number; cpu_ms_per_mib: number; from: string };
type Ops = { requests_counted: number; kv_reads: number; kv_writes: number; kv_lists: number; do_requests: number; queue_messages: number; queue_ops: number; r2_class_a: number; r2_class_b: number; analytics_data_points: number };
type CostEntry = { name: string; cpu: CpuCost | null; ops: Ops | null };
export type BenchResults = {
  machine: { date: string; cores: number; cpu: string; memory_gib: number; node: string };
  wall_s?: number;
  settings: { ops_duration_s?: number };
  logpush_batch?: { decompressed_bytes: number; gzip_bytes: number } | null;
  cost?: { method: Record<string, string>; by_scenario: Record<string, CostEntry> };
};

const perMillion = (usdPerMillion: number, perRequest: number) => usdPerMillion * perRequest;

/** Dollars per million requests of a scenario, by line item. */
export function dollarsPerMillion(entry: CostEntry) {
  const cpu = entry.cpu?.cpu_ms_per_request ?? 0;
  const ops = entry.ops;
  const lines = {
    requests: PRICES.workers_requests_per_million.usd,
    cpu: perMillion(PRICES.workers_cpu_per_million_ms.usd, cpu),
    kv: ops ? perMillion(PRICES.kv_reads_per_million.usd, ops.kv_reads) + perMillion(PRICES.kv_writes_per_million.usd, ops.kv_writes + ops.kv_lists) : 0,
    durable_objects: ops ? perMillion(PRICES.do_requests_per_million.usd, ops.do_requests) : 0,
    queues: ops ? perMillion(PRICES.queues_ops_per_million.usd, ops.queue_ops) : 0,
    r2: ops ? perMillion(PRICES.r2_class_a_per_million.usd, ops.r2_class_a) + perMillion(PRICES.r2_class_b_per_million.usd, ops.r2_class_b) : 0,
    analytics: ops ? perMillion(PRICES.analytics_engine_data_points_per_million.usd, ops.analytics_data_points) : 0,
  };
  const total = Object.values(lines).reduce((a, b) => a + b, 0);
  return { ...lines, total };
}

const usd = (n: number) => (n === 0 ? "0" : n >= 100 ? `$${n.toFixed(0)}` : n >= 1 ? `$${n.toFixed(2)}` : n >= 0.01 ? `$${n.toFixed(3)}` : `$${n.toPrecision(2)}`);
const num = (n: number | undefined, digits = 3) => (n === undefined ? "—" : n === 0 ? "0" : n.toFixed(digits));

function scenarioTable(title: string, keys: string[], byScenario: Record<string, CostEntry>): string[] {
  const rows = keys.filter((key) => byScenario[key]);
  if (rows.length === 0) return [`### ${title}`, "", "Not in this run."];
  const out = [
    `### ${title}`,
    "",
    "| scenario | body (KiB) | workerd CPU ms / request | CPU ms / MiB | KV reads | DO requests | queue ops | R2 A / B | $ / million requests | of which CPU | $ / GiB received |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const key of rows) {
    const entry = byScenario[key]!;
    const d = dollarsPerMillion(entry);
    const bodyBytes = entry.cpu?.body_bytes ?? 0;
    const perGiB = bodyBytes > 0 ? (d.total / 1e6) * (2 ** 30 / bodyBytes) : 0;
    const o = entry.ops;
    out.push(
      `| ${entry.name} | ${num(bodyBytes / 1024, 1)} | ${num(entry.cpu?.cpu_ms_per_request)} | ${num(entry.cpu?.cpu_ms_per_mib, 1)} | ${o ? num(o.kv_reads, 4) : "—"} | ${o ? num(o.do_requests, 4) : "—"} | ${o ? num(o.queue_ops, 4) : "—"} | ${o ? `${num(o.r2_class_a, 2)} / ${num(o.r2_class_b, 2)}` : "—"} | ${usd(d.total)} | ${usd(d.cpu)} | ${usd(perGiB)} |`,
    );
  }
  return out;
}

/** The fixed cost per org and month: what runs on a schedule whatever the traffic (from SCHEDULE, not measured). */
function fixedCosts(): string[] {
  const s = SCHEDULE;
  const doReq = PRICES.do_requests_per_million.usd / 1e6;
  const kvWrite = PRICES.kv_writes_per_million.usd / 1e6;
  const queueOp = PRICES.queues_ops_per_million.usd / 1e6;
  const sweepDoPerOrg = s.sweeps_per_month * (2 / s.customers_per_page);
  const resyncAlarms = (30 * 24) / s.resync_interval_h;
  const limitAlarms = (30 * 24 * 60) / s.limit_resync_interval_min;
  const reportAlarms = (30 * 24 * 3600) / s.usage_report_interval_s;
  const usageMessages = (30 * 24 * 3600) / s.usage_flush_interval_s;
  const rows: [string, string, number][] = [
    ["reconciliation sweep (every org)", `${s.sweeps_per_month.toLocaleString("en")} sweeps; each page of ${s.customers_per_page.toLocaleString("en")} customers is one Reconciler alarm and one index lookup: ${sweepDoPerOrg.toFixed(1)} DO requests per org`, sweepDoPerOrg * doReq],
    ["an org not ok (overdue or suspended): periodic resync", `one alarm every ${s.resync_interval_h} h: ${resyncAlarms} DO requests (and as many Autumn reads)`, resyncAlarms * doReq],
    ["an org with a plan limit in force", `one alarm every ${s.limit_resync_interval_min} min: ${limitAlarms.toLocaleString("en")} DO requests`, limitAlarms * doReq],
    ["a state change (a few a month at most)", "one KV write for the mirror entry and one per ingest key (the verdict rides in each key's entry): 3 writes for an org with 2 keys", 3 * kvWrite],
    ["metering on, an org sending all month", `its object reports to Autumn at most every ${s.usage_report_interval_s} s: ${reportAlarms.toLocaleString("en")} alarm runs (DO requests)`, reportAlarms * doReq],
    ["activity (the console's chart, metering on or off), per isolate that serves the org all month", `at most one activity message a second, shared by up to 100 orgs, and one index-shard DO request per consumer batch: ${usageMessages.toLocaleString("en")} messages × 3 queue operations and as many DO requests for an org alone in its isolate, a hundredth of that for one of 100`, usageMessages * 3 * queueOp + usageMessages * doReq],
    ["metering on, per isolate that serves the org all month", `at most one usage message a second: ${usageMessages.toLocaleString("en")} messages × 3 queue operations, and one DO request per org per consumer batch (at most as many)`, usageMessages * 3 * queueOp + usageMessages * doReq],
  ];
  return [
    "| what | how often | $ per org per month |",
    "|---|---|---:|",
    ...rows.map(([what, how, cost]) => `| ${what} | ${how} | ${usd(cost)} |`),
    "",
    `Per deployment, not per org: the two crons (${s.sweeps_per_month.toLocaleString("en")} Worker invocations each a month, ${usd(2 * s.sweeps_per_month * (PRICES.workers_requests_per_million.usd / 1e6))}) and the parking cleanup's R2 listing (${s.sweeps_per_month.toLocaleString("en")} class A operations, ${usd(s.sweeps_per_month * (PRICES.r2_class_a_per_million.usd / 1e6))}). Parked data is kept ${s.park_retention_h} h: ${usd(PRICES.r2_storage_per_gb_month.usd * (s.park_retention_h / (30 * 24)))} per GB parked, in R2 storage.`,
  ];
}

export function costMarkdown(results: BenchResults): string {
  const by = results.cost?.by_scenario ?? {};
  const m = results.machine;
  const method = results.cost?.method ?? {};
  const priceRows = Object.entries(PRICES).map(([name, p]) => `| ${name.replaceAll("_", " ")} | $${p.usd >= 0.01 ? p.usd.toFixed(2) : String(p.usd)} | ${p.included} | ${p.source} |`);
  const logpush = results.logpush_batch;
  return [
    "# What Tollgate costs on Cloudflare",
    "",
    "<!-- Generated by bench/cost.ts from bench/results/latest.json (npm run bench, or npm run bench:cost); edit bench/cost.ts, not this file. -->",
    "",
    `Measured by \`npm run bench\` on ${m.date.slice(0, 10)} (${m.cores} × ${m.cpu}, ${m.memory_gib} GiB, Node ${m.node}${results.wall_s ? `; the whole bench took ${(results.wall_s / 60).toFixed(1)} minutes` : ""}), priced with Cloudflare's published prices as of ${PRICES_AS_OF}. Every figure is the marginal price past the Workers Paid plan's included usage (the $5 a month and its allowances are left out); dollars per GiB are per GiB of request bodies as received (gzip).`,
    "",
    "## How the numbers are obtained",
    "",
    `- **CPU per request.** ${method.cpu ?? ""} On 2 cores the load generator, the sink and workerd share the machine, so absolute numbers move from run to run (the ratios to the pass-through Worker compare better).`,
    `- **Operations per request.** ${method.harness ?? ""}`,
    `  - KV reads: ${method.kv_reads ?? ""}`,
    `  - KV writes: ${method.kv_writes ?? ""}`,
    `  - Durable Object requests: ${method.do_requests ?? ""}`,
    `  - Queue messages and operations: ${method.queue_messages ?? ""}`,
    `  - R2: ${method.r2 ?? ""}`,
    "- **Not counted by the bench:** Durable Object duration (GB-s) and SQLite rows read and written inside the objects (the billing Worker's own storage), and Analytics Engine (INGEST_ANALYTICS is optional and not bound in the bench). At the prices below, an object call costs $0.15 per million; if it also wrote 10 rows, those would add $10 per million — so the usage consumer's calls (recordUsage) are the place to look first when rows are measured.",
    "- A warm paying org's figures depend on the request rate: the gate reads KV at most once per isolate per 5 s for the verdict and once per 30 s per key (src/ingest/request/gate.ts), so at the bench's rate those reads nearly vanish per request. The cold-keys scenario is the worst case: every request a key this isolate has not seen.",
    "",
    "## Prices",
    "",
    "| item | price | included each month | source |",
    "|---|---:|---|---|",
    ...priceRows,
    "",
    "## Per request and per GiB",
    "",
    ...scenarioTable("A paying org", ["2", "3", "8", "9", "10"], by),
    "",
    logpush ? `The Logpush batch is one request of ${(logpush.gzip_bytes / 2 ** 20).toFixed(1)} MiB gzip (${(logpush.decompressed_bytes / 2 ** 20).toFixed(0)} MiB of NDJSON); its dollars per GiB are per GiB of gzip received, so per GiB of decompressed logs divide by ${(logpush.decompressed_bytes / logpush.gzip_bytes).toFixed(1)}.` : "",
    "",
    ...scenarioTable("A suspended org (refused with 402)", ["4", "4p"], by),
    "",
    "With parking on (the deployed default: PARKING bound), a suspended org's every new batch is kept in R2 and its delivery later costs what an accepted request costs; a resend of a batch already kept is answered from its marker.",
    "",
    ...scenarioTable("Usage metering on", ["2m", "10m"], by),
    "",
    "Metering adds the usage queue's messages (at most one per org per isolate a second, so per request they shrink as the rate grows) and the consumer's object calls; the object's reports to Autumn are in the fixed costs below.",
    "",
    "## Fixed cost per org per month",
    "",
    "From the deployed schedule (bench/cost.ts SCHEDULE), not from the bench run:",
    "",
    ...fixedCosts(),
    "",
  ].join("\n");
}

/** Writes docs/cost.md; returns its path relative to the repository. */
export function writeCostDoc(results: unknown): string {
  writeFileSync(join(REPO_ROOT, "docs", "cost.md"), costMarkdown(results as BenchResults));
  return "docs/cost.md";
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results = JSON.parse(readFileSync(join(REPO_ROOT, "bench", "results", "latest.json"), "utf8")) as BenchResults;
  if (!results.cost) throw new Error("bench/results/latest.json has no cost section: run npm run bench first");
  console.log(`Written ${writeCostDoc(results)} from bench/results/latest.json.`);
}
