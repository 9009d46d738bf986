import { rmSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { MintBatchResult } from "../../src/billing/admin/mint-answer.ts";
import { workerdCpuSeconds, workerdRssMib } from "../proc.ts";
import { benchSetup, startBenchRuntime } from "../runtime.ts";

/**
 * Scale scenario (issue 23): minting 100,000 ingest keys through `POST /admin/ingest-keys:batch`, 1,000 orgs a
 * call, one call after another as `tollgate mint-keys` sends them, against the billing Worker bundled as
 * deployed (bench/runtime.ts). Each org is new, so each key is also its org's first object call and first
 * storage. Beside it, single mints (`POST /admin/orgs/{id}/ingest-keys`) one by one, the way the 10,000 keys of
 * issue 23's "53 s" were minted, as the baseline. A sample of the minted keys is then asked for its org's
 * standing at the ingest Worker (GET /v1/status): the keys work, not only exist.
 *
 * `SCALE_MINT_KEYS` (default 100,000) and `SCALE_MINT_SINGLE` (default 1,000) change the counts, for a trial.
 */
const KEYS = Number(process.env.SCALE_MINT_KEYS ?? 100_000);
const SINGLE = Number(process.env.SCALE_MINT_SINGLE ?? 1_000);
const CHUNK = 1_000;
/** Keys of the batch run checked at the ingest Worker: spread over the run. */
const SAMPLE = 20;
const BASE_PORT = Number(process.env.SCALE_MINT_PORT ?? 32787);

const say = (message: string) => console.error(`[scale mint ${new Date().toISOString().slice(11, 19)}] ${message}`);

export async function run(): Promise<Record<string, number | string>> {
  const { settings, persistDir } = benchSetup(BASE_PORT, "scale-mint");
  say("bundling the Workers and starting the runtime ...");
  const stack = await startBenchRuntime(settings, persistDir);
  const headers = { authorization: `Bearer ${settings.ADMIN_TOKEN}`, "content-type": "application/json" };
  try {
    // The baseline: single mints one after another, for orgs of their own.
    say(`${SINGLE} single mints ...`);
    const singleCpuBefore = workerdCpuSeconds();
    const singleStarted = performance.now();
    for (let i = 0; i < SINGLE; i++) {
      const response = await fetch(`${stack.billingUrl}/admin/orgs/single_${i}/ingest-keys`, { method: "POST", headers });
      if (response.status !== 201) throw new Error(`single mint ${i} answered ${response.status}: ${await response.text()}`);
      await response.body?.cancel();
    }
    const singleMs = performance.now() - singleStarted;
    const singleCpu = workerdCpuSeconds() - singleCpuBefore;

    say(`${KEYS} keys through the batch endpoint, ${CHUNK} orgs a call ...`);
    const cpuBefore = workerdCpuSeconds();
    let peakRss = workerdRssMib();
    const chunkMs: number[] = [];
    const sample: { org_id: string; key: string }[] = [];
    let minted = 0;
    let failed = 0;
    const started = performance.now();
    for (let start = 0; start < KEYS; start += CHUNK) {
      const orgs = Array.from({ length: Math.min(CHUNK, KEYS - start) }, (_, i) => `scale_mint_${start + i}`);
      const chunkStarted = performance.now();
      const response = await fetch(`${stack.billingUrl}/admin/ingest-keys:batch`, { method: "POST", headers, body: JSON.stringify({ orgs }) });
      if (response.status !== 201 && response.status !== 207) throw new Error(`batch at ${start} answered ${response.status}: ${await response.text()}`);
      const answer = (await response.json()) as MintBatchResult;
      chunkMs.push(performance.now() - chunkStarted);
      minted += answer.keys.length;
      failed += answer.failed.length;
      if ((start / CHUNK) % Math.max(1, Math.floor(KEYS / CHUNK / SAMPLE)) === 0) sample.push(answer.keys[answer.keys.length - 1]!);
      peakRss = Math.max(peakRss, workerdRssMib());
      if ((start / CHUNK) % 10 === 9) say(`  ${minted} minted, ${((performance.now() - started) / minted).toFixed(3)} ms a key so far`);
    }
    const batchMs = performance.now() - started;
    const cpu = workerdCpuSeconds() - cpuBefore;

    say(`checking ${sample.length} of the keys at the ingest Worker ...`);
    let working = 0;
    for (const key of sample) {
      const response = await fetch(`${stack.ingestUrl}/v1/status`, { headers: { authorization: `Bearer ${key.key}` } });
      const status = (await response.json()) as { org_id?: string };
      if (response.status === 200 && status.org_id === key.org_id) working++;
    }
    const sorted = [...chunkMs].sort((a, b) => a - b);
    const figures = {
      keys: KEYS,
      keys_minted: minted,
      keys_failed: failed,
      batch_calls: chunkMs.length,
      batch_total_s: round(batchMs / 1000, 1),
      batch_per_key_ms: round(batchMs / KEYS, 3),
      batch_keys_per_s: Math.round(KEYS / (batchMs / 1000)),
      batch_call_p50_ms: Math.round(sorted[Math.floor(sorted.length / 2)]!),
      batch_call_max_ms: Math.round(sorted[sorted.length - 1]!),
      single_keys: SINGLE,
      single_per_key_ms: round(singleMs / SINGLE, 3),
      speedup_over_single: round(singleMs / SINGLE / (batchMs / KEYS), 1),
      sample_keys_working: `${working}/${sample.length}`,
      // CPU per key is steadier than wall time on a shared machine: a loaded one stretches the wall time, not this.
      batch_workerd_cpu_per_key_ms: round((cpu * 1000) / KEYS, 2),
      single_workerd_cpu_per_key_ms: round((singleCpu * 1000) / SINGLE, 2),
      workerd_cpu_s: round(cpu, 1),
      workerd_peak_rss_mib: Math.round(peakRss),
    };
    if (failed > 0 || working !== sample.length) throw new Error(`keys failed or did not work: ${JSON.stringify(figures)}`);
    return figures;
  } finally {
    await stack.stop();
    // 100,000 objects' databases and as many KV entries: not kept after the run.
    rmSync(persistDir, { recursive: true, force: true });
  }
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  console.log(JSON.stringify(await run(), null, 2));
}
