import type { Result } from "autocannon";
import { execFile, execFileSync } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { startAutumnStandIn } from "../tools/autumn-standin/server.ts";
import { startUpstreamSink } from "../tools/upstream-sink/server.ts";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { loadLocalSettings, type LocalSettings } from "../tools/dev/settings.ts";
import { REPO_ROOT, WRANGLER_BIN } from "../tools/paths.ts";

/**
 * The benchmark's runtime: both Workers (plus two bench-only Workers) bundled exactly as
 * `wrangler deploy` would, composed in one Miniflare so they share Durable Objects and KV,
 * with the Autumn stand-in and the upstream sink on loopback. `wrangler dev` adds a proxy
 * and a log line per request, which would measure the tooling rather than the Workers.
 */
/** The bench's settings (production policy durations, ports from `basePort`) and an emptied state folder under .wrangler. */
export function benchSetup(basePort: number, stateName: string): { settings: LocalSettings; persistDir: string } {
  const persistDir = join(REPO_ROOT, ".wrangler", stateName);
  rmSync(persistDir, { recursive: true, force: true });
  mkdirSync(persistDir, { recursive: true });
  const settings = loadLocalSettings({
    root: null,
    env: {},
    overrides: { BILLING_PORT: String(basePort), INGEST_PORT: String(basePort + 1), AUTUMN_PORT: String(basePort + 2), SINK_PORT: String(basePort + 3), GRACE_PERIOD: "3d", RESYNC_INTERVAL: "6h", MIN_NOTICE: "24h" },
  });
  return { settings, persistDir };
}

/** The features the metered ingest Worker (scenario 2m) and the billing Worker report usage under. */
const BENCH_USAGE_FEATURES = "traces=spans logs=log_records metrics=data_points logpush=log_records bytes=ingest_bytes";

export type LoadSpec = { url: string; method?: "GET" | "POST"; headers: Record<string, string>; body: Uint8Array; keys?: string[]; connections: number; duration: number; warmup: number };
/** `workerdCpuS`: workerd's CPU seconds over the measured run (warm-up excluded), null when not asked for. */
export type LoadResult = Result & { statusCodeStats?: Record<string, { count: number }>; workerdCpuS: number | null };

/** One run of the load generator (bench/load.ts) in its own process; the body and keys go through files in `workDir`. */
export async function runLoadGenerator(workDir: string, spec: LoadSpec): Promise<LoadResult> {
  const bodyFile = join(workDir, "body.bin");
  writeFileSync(bodyFile, spec.body);
  let keysFile: string | undefined;
  if (spec.keys) {
    keysFile = join(workDir, "keys.json");
    writeFileSync(keysFile, JSON.stringify(spec.keys));
  }
  const { url, method, headers, connections, duration, warmup } = spec;
  const args = JSON.stringify({ url, method, connections, duration, warmup, headers, bodyFile, keysFile, cpuParent: process.pid });
  const { stdout } = await promisify(execFile)(process.execPath, [join(REPO_ROOT, "bench", "load.ts"), args], { maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as LoadResult;
}

/**
 * `counted`: the counting harness (bench/counted-ingest) as three more Workers, each on its own
 * socket and with its own isolate (so its caches start cold): metering off and metering on (each with
 * its own copy of the usage queue, consumed by itself, so the consumer's object calls are counted too), and
 * parking on (an R2 bucket and the deliveries queue bound, as src/ingest/wrangler.jsonc deploys it).
 */
export type CountedUrls = { off: string; metered: string; parking: string };
export type BenchRuntime = { billingUrl: string; ingestUrl: string; meteredIngestUrl: string; uninflatedIngestUrl: string; passthroughUrl: string; gateBenchUrl: string; autumnUrl: string; sinkUrl: string; counted: CountedUrls | null; stop(): Promise<void> };

function bundle(config: string, outdir: string): string {
  execFileSync(process.execPath, [WRANGLER_BIN, "deploy", "--dry-run", "--config", config, "--outdir", outdir], { cwd: REPO_ROOT, stdio: "pipe", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  return join(outdir, "worker.js");
}

/** inspectorPort: workerd's DevTools inspector on loopback (bench/profile.ts), off for `npm run bench`. */
export async function startBenchRuntime(settings: LocalSettings, workDir: string, options: { inspectorPort?: number; counted?: boolean } = {}): Promise<BenchRuntime> {
  const port = (name: keyof LocalSettings) => Number(settings[name]);
  const autumn = await startAutumnStandIn({ port: port("AUTUMN_PORT"), secretKey: settings.AUTUMN_SECRET_KEY, webhook: null });
  const sink = await startUpstreamSink({ port: port("SINK_PORT"), keepRequests: 0 });

  // Each Worker bundled once: the ingest Worker serves three of the runtime's Workers (2s of bundling each).
  const bundles = new Map<string, string>();
  const built = (name: string, config: string) => {
    const outdir = join(workDir, "dist", name);
    const scriptPath = bundles.get(name) ?? bundle(config, outdir);
    bundles.set(name, scriptPath);
    return { scriptPath, modulesRoot: outdir, modules: true };
  };
  const kv = { BILLING_STATE: "billing-state", INGEST_KEYS: "ingest-keys" };
  const billingVars = {
    AUTUMN_API_URL: settings.AUTUMN_API_URL,
    AUTUMN_SECRET_KEY: settings.AUTUMN_SECRET_KEY,
    AUTUMN_WEBHOOK_SECRET: settings.AUTUMN_WEBHOOK_SECRET,
    ADMIN_TOKEN: settings.ADMIN_TOKEN,
    INGEST_KEY_PEPPER: settings.INGEST_KEY_PEPPER,
    GRACE_PERIOD: settings.GRACE_PERIOD,
    RESYNC_INTERVAL: settings.RESYNC_INTERVAL,
    MIN_NOTICE: settings.MIN_NOTICE,
    AUTUMN_TIMEOUT: settings.AUTUMN_TIMEOUT,
    USAGE_FEATURES: BENCH_USAGE_FEATURES,
    USAGE_REPORT_INTERVAL: "2s",
  };
  const ingestBindings = {
    UPSTREAM_OTLP_URL: settings.UPSTREAM_OTLP_URL,
    INGEST_KEY_PEPPER: settings.INGEST_KEY_PEPPER,
    TENANT_HEADER: settings.TENANT_HEADER,
    MAX_BODY_BYTES: settings.MAX_BODY_BYTES,
    MAX_DECOMPRESSED_BYTES: settings.MAX_DECOMPRESSED_BYTES,
    UPSTREAM_TIMEOUT: settings.UPSTREAM_TIMEOUT,
    LOG_SAMPLE_RATE: "0",
  };
  const ingestPort = port("INGEST_PORT");
  const billingPort = port("BILLING_PORT");
  const passthroughPort = ingestPort + 3;
  const gateBenchPort = ingestPort + 4;
  const meteredPort = ingestPort + 5;
  const uninflatedPort = ingestPort + 6;
  const objects = { className: "OrgBilling", scriptName: "tollgate-billing", useSQLite: true };
  // The ingest Worker's Durable Object bindings as src/ingest/wrangler.jsonc declares them: the org's object, and the index shards the usage consumer hands activity to.
  const ingestObjects = { ORG_BILLING: objects, ORG_INDEX: { className: "OrgIndex", scriptName: "tollgate-billing", useSQLite: true } };
  // Past the inspector's port (basePort + 9, bench/profile.ts).
  const countedPorts = { off: ingestPort + 9, metered: ingestPort + 10, parking: ingestPort + 11 };
  const countedWorkers = options.counted
    ? (() => {
        const harness = built("counted-ingest", "bench/counted-ingest/wrangler.jsonc");
        const base = { ...harness, compatibilityDate: "2026-11-01", compatibilityFlags: ["nodejs_compat"], durableObjects: ingestObjects, kvNamespaces: kv };
        return [
          // Metering off, but the usage queue bound as deployed: the activity counts (issue 21) still go on it, and its own
          // consumer (as deployed) hands them to the index shards, so those calls are counted with the requests that caused them.
          {
            name: "tollgate-ingest-counted",
            ...base,
            bindings: ingestBindings,
            queueProducers: { USAGE: { queueName: "tollgate-usage-counted-off" } },
            queueConsumers: { "tollgate-usage-counted-off": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 100 } },
            unsafeDirectSockets: [{ host: "127.0.0.1", port: countedPorts.off }],
          },
          {
            name: "tollgate-ingest-counted-metered",
            ...base,
            bindings: { ...ingestBindings, USAGE_FEATURES: BENCH_USAGE_FEATURES },
            queueProducers: { USAGE: { queueName: "tollgate-usage-counted" } },
            queueConsumers: { "tollgate-usage-counted": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 100 } },
            unsafeDirectSockets: [{ host: "127.0.0.1", port: countedPorts.metered }],
          },
          {
            // No consumer for its deliveries queue: delivery is not what this Worker counts.
            name: "tollgate-ingest-counted-parking",
            ...base,
            bindings: ingestBindings,
            r2Buckets: { PARKING: "bench-parking" },
            queueProducers: { DELIVERIES: { queueName: "tollgate-deliveries-counted" } },
            unsafeDirectSockets: [{ host: "127.0.0.1", port: countedPorts.parking }],
          },
        ];
      })()
    : [];
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      // Miniflare's own entry port adds a routing worker in front; every Worker under test
      // is reached on a direct socket instead, as the pass-through reference is.
      host: "127.0.0.1",
      port: 0,
      ...(options.inspectorPort === undefined ? {} : { inspectorPort: options.inspectorPort }),
      // Workers log every decision; under load those lines would be measured too. Dropped here.
      handleStructuredLogs: () => {},
      kvPersist: join(workDir, "kv"),
      durableObjectsPersist: join(workDir, "do"),
      r2Persist: join(workDir, "r2"),
      workers: [
        {
          name: "tollgate-ingest",
          ...built("ingest", "src/ingest/wrangler.jsonc"),
          unsafeDirectSockets: [{ host: "127.0.0.1", port: ingestPort }],
          compatibilityDate: "2026-11-01",
          compatibilityFlags: ["nodejs_compat"],
          durableObjects: ingestObjects,
          kvNamespaces: kv,
          bindings: ingestBindings,
          // As deployed: metering off, the usage queue still bound, so each flush window's activity counts (issue 21,
          // the console's chart) are sent and their cost is in scenario 2; the metered Worker below consumes the queue.
          queueProducers: { USAGE: { queueName: "tollgate-usage" } },
        },
        {
          // The same ingest Worker with metering on (scenario 2m): counted items and bytes go through the
          // usage queue (consumed here, as deployed) into the orgs' objects, which report them to the stand-in.
          name: "tollgate-ingest-metered",
          ...built("ingest", "src/ingest/wrangler.jsonc"),
          unsafeDirectSockets: [{ host: "127.0.0.1", port: meteredPort }],
          compatibilityDate: "2026-11-01",
          compatibilityFlags: ["nodejs_compat"],
          durableObjects: ingestObjects,
          kvNamespaces: kv,
          bindings: { ...ingestBindings, USAGE_FEATURES: BENCH_USAGE_FEATURES },
          queueProducers: { USAGE: { queueName: "tollgate-usage" } },
          queueConsumers: { "tollgate-usage": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 100 } },
        },
        {
          // The same ingest Worker with the bomb check off (MAX_DECOMPRESSED_BYTES=0) and metering off (scenario 8,
          // issue 20): a gzip body is forwarded without being inflated at all.
          name: "tollgate-ingest-uninflated",
          ...built("ingest", "src/ingest/wrangler.jsonc"),
          unsafeDirectSockets: [{ host: "127.0.0.1", port: uninflatedPort }],
          compatibilityDate: "2026-11-01",
          compatibilityFlags: ["nodejs_compat"],
          durableObjects: ingestObjects,
          kvNamespaces: kv,
          bindings: { ...ingestBindings, MAX_DECOMPRESSED_BYTES: "0" },
        },
        {
          name: "tollgate-billing",
          ...built("billing", "wrangler.jsonc"),
          compatibilityDate: "2026-11-01",
          durableObjects: {
            ORG_BILLING: { className: "OrgBilling", useSQLite: true },
            ORG_INDEX: { className: "OrgIndex", useSQLite: true },
            RECONCILER: { className: "Reconciler", useSQLite: true },
          },
          // No cronTriggers here, and Miniflare schedules none by itself: the scheduled handler
          // never runs during a bench, so no cron sweep competes with the one the bench starts.
          kvNamespaces: kv,
          bindings: billingVars,
          unsafeDirectSockets: [{ host: "127.0.0.1", port: billingPort }],
        },
        {
          name: "tollgate-passthrough-bench",
          ...built("passthrough", "bench/passthrough/wrangler.jsonc"),
          compatibilityDate: "2026-11-01",
          bindings: { UPSTREAM_OTLP_URL: settings.UPSTREAM_OTLP_URL },
          unsafeDirectSockets: [{ host: "127.0.0.1", port: passthroughPort }],
        },
        {
          name: "tollgate-gate-bench",
          ...built("gate-bench", "bench/gate-worker/wrangler.jsonc"),
          compatibilityDate: "2026-11-01",
          durableObjects: { ORG_BILLING: objects },
          kvNamespaces: kv,
          bindings: billingVars,
          unsafeDirectSockets: [{ host: "127.0.0.1", port: gateBenchPort }],
        },
        ...countedWorkers,
      ],
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
  );
  await mf.ready;
  const url = (p: number) => `http://127.0.0.1:${p}`;
  return {
    billingUrl: url(billingPort),
    ingestUrl: url(ingestPort),
    meteredIngestUrl: url(meteredPort),
    uninflatedIngestUrl: url(uninflatedPort),
    passthroughUrl: url(passthroughPort),
    gateBenchUrl: url(gateBenchPort),
    autumnUrl: autumn.url,
    sinkUrl: sink.url,
    counted: options.counted ? { off: url(countedPorts.off), metered: url(countedPorts.metered), parking: url(countedPorts.parking) } : null,
    stop: async () => {
      await mf.dispose();
      await Promise.all([autumn.close(), sink.close()]);
    },
  };
}
