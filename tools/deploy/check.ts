import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { REPO_ROOT, WRANGLER_BIN } from "../paths.ts";

/**
 * What can be checked offline before a deploy: both Workers bundle (`wrangler deploy
 * --dry-run`), their size stays far below the Workers limit, and the generated types are
 * current: each Worker's bindings (its worker-configuration.d.ts) and the one runtime file
 * both type-check against (types/runtime.d.ts). Exits non-zero on any failure.
 */
const WORKERS = [
  { name: "billing", config: "wrangler.jsonc", types: ["src/billing/worker-configuration.d.ts", "--env-interface", "BillingEnv", "--strict-vars", "false", "--include-runtime", "false"] },
  {
    name: "ingest",
    config: "src/ingest/wrangler.jsonc",
    types: ["src/ingest/worker-configuration.d.ts", "--env-interface", "IngestEnv", "--strict-vars", "false", "--include-runtime", "false", "--include-main-module", "false"],
  },
];
/** Cloudflare's compressed script limit on the Free plan is 3 MiB (10 MiB on paid plans). */
const LIMIT_GZIP_BYTES = 3 * 1024 * 1024;
/** Our own budget: a tenth of the smallest limit. */
const BUDGET_GZIP_BYTES = LIMIT_GZIP_BYTES / 10;

const run = (args: string[]) => execFileSync(process.execPath, [WRANGLER_BIN, ...args], { cwd: REPO_ROOT, stdio: "pipe", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } }).toString();

let failed = false;
const rows: string[] = ["| Worker | bundle | gzip | share of the 3 MiB limit |", "|---|---:|---:|---:|"];
for (const worker of WORKERS) {
  const outdir = join(REPO_ROOT, "dist", worker.name);
  rmSync(outdir, { recursive: true, force: true });
  try {
    run(["deploy", "--dry-run", "--config", worker.config, "--outdir", outdir]);
  } catch (error) {
    console.error(`✘ ${worker.name}: wrangler deploy --dry-run failed\n${(error as { stderr?: Buffer }).stderr?.toString() ?? error}`);
    failed = true;
    continue;
  }
  const bundle = readFileSync(join(outdir, "worker.js"));
  const gzip = gzipSync(bundle).byteLength;
  rows.push(`| ${worker.name} | ${(bundle.byteLength / 1024).toFixed(1)} KiB | ${(gzip / 1024).toFixed(1)} KiB | ${((100 * gzip) / LIMIT_GZIP_BYTES).toFixed(1)} % |`);
  if (gzip > BUDGET_GZIP_BYTES) {
    console.error(`✘ ${worker.name}: ${gzip} bytes gzipped is over the ${BUDGET_GZIP_BYTES}-byte budget`);
    failed = true;
  }
  try {
    run(["types", ...worker.types, "--config", worker.config, "--check"]);
    console.log(`✔ ${worker.name}: generated binding types are current`);
  } catch (error) {
    console.error(`✘ ${worker.name}: binding types are stale; run \`npm run types\` and commit the result\n${(error as { stdout?: Buffer }).stdout?.toString() ?? ""}`);
    failed = true;
  }
}
failed = !runtimeTypesCurrent() || failed;
console.log(`\nBundle sizes (wrangler deploy --dry-run):\n${rows.join("\n")}`);
process.exit(failed ? 1 : 0);

/**
 * types/runtime.d.ts is generated once, from the billing Worker's configuration, and serves both
 * Workers: what each Worker's configuration (its compatibility date and flags) generates must be
 * exactly that file, the header comment that names the flags aside. A stale file, or a Worker
 * whose date moved alone, fails here rather than type-checking against another runtime.
 */
function runtimeTypesCurrent(): boolean {
  const RUNTIME = "types/runtime.d.ts";
  const body = (path: string) => readFileSync(path, "utf8").replace(/^\/\/ Runtime types generated with .*$/m, "");
  const committed = body(join(REPO_ROOT, RUNTIME));
  const dir = mkdtempSync(join(tmpdir(), "tollgate-runtime-"));
  let current = true;
  try {
    for (const worker of WORKERS) {
      const generated = join(dir, `${worker.name}.d.ts`);
      run(["types", generated, "--include-env", "false", "--config", worker.config]);
      if (body(generated) !== committed) {
        console.error(`✘ ${worker.name}: its configuration generates other runtime types than ${RUNTIME}; run \`npm run types\` and commit the result (both Workers share one compatibility date)`);
        current = false;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (current) console.log(`✔ runtime types (${RUNTIME}) are current, the same for both Workers`);
  return current;
}
