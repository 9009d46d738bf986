import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAutumnStandIn, type AutumnStandIn } from "../autumn-standin/server.ts";
import { startUpstreamSink, type UpstreamSink } from "../upstream-sink/server.ts";
import { REPO_ROOT, WRANGLER_BIN } from "../paths.ts";
import { BILLING_VARS, envFileText, INGEST_VARS, type LocalSettings } from "./settings.ts";

export type Stack = {
  billingUrl: string;
  ingestUrl: string;
  autumnUrl: string;
  sinkUrl: string;
  stop(): Promise<void>;
};

export type StackOptions = {
  settings: LocalSettings;
  /** Durable Object and KV state for both Workers (shared, so they see one KV). */
  persistDir: string;
  /** Where Worker output goes: a line at a time with its Worker's name, or nowhere. */
  onOutput?: (worker: "billing" | "ingest", line: string) => void;
  /** Aborted while starting (a signal to `npm start`): whatever already runs is stopped and startStack rejects. */
  signal?: AbortSignal;
};

/** One `wrangler dev` process; its registry lets Workers of the same stack find each other's Durable Objects. */
function startWranglerDev<N extends string>(
  name: N,
  config: string,
  port: string,
  envFile: string,
  options: { persistDir: string; onOutput?: (worker: N, line: string) => void },
): ChildProcess {
  const args = [
    WRANGLER_BIN,
    "dev",
    "--config",
    config,
    "--ip",
    "127.0.0.1",
    "--port",
    port,
    "--inspector-port",
    String(Number(port) + 11_000),
    "--persist-to",
    options.persistDir,
    "--env-file",
    envFile,
    "--show-interactive-dev-session=false",
    "--log-level",
    "log",
  ];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      // One registry per stack: the ingest Worker finds this stack's OrgBilling through it.
      WRANGLER_REGISTRY_PATH: join(options.persistDir, "registry"),
      WRANGLER_SEND_METRICS: "false",
    },
  });
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) if (line.trim() !== "") options.onOutput?.(name, line);
    });
  }
  return child;
}

async function waitHealthy(url: string, child: ChildProcess, signal: AbortSignal | undefined, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    if (child.exitCode !== null) throw new Error(`${url} exited with code ${child.exitCode} before it was ready`);
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} was not healthy within ${timeoutMs / 1000} s`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolveStop) => {
    const kill = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, 5_000);
    child.once("exit", () => {
      clearTimeout(kill);
      resolveStop();
    });
    try {
      process.kill(-child.pid!, "SIGINT");
    } catch {
      clearTimeout(kill);
      resolveStop();
    }
  });
}

/**
 * The whole system on loopback: the Autumn stand-in (delivering signed webhooks to the
 * billing Worker), the upstream sink, and both Workers under `wrangler dev` sharing
 * Durable Object and KV state in `persistDir`.
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  const { settings } = options;
  mkdirSync(options.persistDir, { recursive: true });
  const billingUrl = `http://127.0.0.1:${settings.BILLING_PORT}`;
  const ingestUrl = `http://127.0.0.1:${settings.INGEST_PORT}`;

  const started: { autumn?: AutumnStandIn; sink?: UpstreamSink; workers: ChildProcess[] } = { workers: [] };
  const stop = async () => {
    await Promise.all(started.workers.map(stopChild));
    await Promise.all([started.autumn?.close(), started.sink?.close()]);
  };
  try {
    started.autumn = await startAutumnStandIn({
      port: Number(settings.AUTUMN_PORT),
      secretKey: settings.AUTUMN_SECRET_KEY,
      webhook: { url: `${billingUrl}/api/billing/autumn/webhook`, secret: settings.AUTUMN_WEBHOOK_SECRET.split(/\s+/)[0]! },
    });
    started.sink = await startUpstreamSink({ port: Number(settings.SINK_PORT), tenantHeader: settings.TENANT_HEADER });

    const billingEnv = join(options.persistDir, "billing.env");
    const ingestEnv = join(options.persistDir, "ingest.env");
    writeFileSync(billingEnv, envFileText(settings, BILLING_VARS), { mode: 0o600 });
    writeFileSync(ingestEnv, envFileText(settings, INGEST_VARS), { mode: 0o600 });

    options.signal?.throwIfAborted();
    const billing = startWranglerDev("billing", "wrangler.jsonc", settings.BILLING_PORT, billingEnv, options);
    started.workers.push(billing);
    await waitHealthy(billingUrl, billing, options.signal);
    options.signal?.throwIfAborted();
    const ingest = startWranglerDev("ingest", "src/ingest/wrangler.jsonc", settings.INGEST_PORT, ingestEnv, options);
    started.workers.push(ingest);
    await waitHealthy(ingestUrl, ingest, options.signal);
  } catch (error) {
    await stop();
    throw error;
  }
  return { billingUrl, ingestUrl, autumnUrl: started.autumn.url, sinkUrl: started.sink.url, stop };
}
