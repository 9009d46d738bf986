import { appendFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { REPO_ROOT } from "../../tools/paths.ts";
import { loadLocalSettings } from "../../tools/dev/settings.ts";
import { startStack } from "../../tools/dev/stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    e2e: { billingUrl: string; ingestUrl: string; autumnUrl: string; sinkUrl: string; adminToken: string; webhookSecret: string; gracePeriodMs: number; workerLog: string };
  }
}

/** The whole local stack, as `npm start` runs it, on its own ports and state, fresh for every run. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const base = Number(process.env.E2E_BASE_PORT ?? 18787);
  const persistDir = join(REPO_ROOT, ".wrangler", "e2e");
  rmSync(persistDir, { recursive: true, force: true });
  const workerLog = join(persistDir, "workers.log");
  const settings = loadLocalSettings({
    root: null,
    env: {},
    overrides: { BILLING_PORT: String(base), INGEST_PORT: String(base + 1), AUTUMN_PORT: String(base + 2), SINK_PORT: String(base + 3), GRACE_PERIOD: "4s", MIN_NOTICE: "1s", RESYNC_INTERVAL: "1m" },
  });
  const stack = await startStack({ settings, persistDir, onOutput: (worker, line) => appendFileSync(workerLog, `[${worker}] ${line}\n`) });
  project.provide("e2e", {
    billingUrl: stack.billingUrl,
    ingestUrl: stack.ingestUrl,
    autumnUrl: stack.autumnUrl,
    sinkUrl: stack.sinkUrl,
    adminToken: settings.ADMIN_TOKEN,
    webhookSecret: settings.AUTUMN_WEBHOOK_SECRET,
    gracePeriodMs: 4_000,
    workerLog,
  });
  return () => stack.stop();
}
