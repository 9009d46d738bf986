// What one read of a distinct key costs in local KV (Miniflare's simulator, persisted as the bench persists it), in
// workerd CPU per request against a request that reads nothing: the floor under the bench's cold-keys scenario, where
// every request reads one key entry no isolate has seen. Run: node bench/kv-probe/run.mjs (Node 22 from node_modules/.bin).
// Not part of npm run bench. The entries have the shape of an INGEST_KEYS entry carrying its org's verdict.
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** workerd's CPU milliseconds (user + system) over its processes started by this one, from /proc. */
const cpu = () => {
  let ticks = 0;
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "workerd") continue;
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      if (Number(fields[1]) !== process.pid) continue;
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {}
  }
  return ticks * 10;
};

const state = mkdtempSync(join(tmpdir(), "kv-probe-"));
const mf = new Miniflare(convertV4MiniflareOptions({ modules: true, scriptPath: join(import.meta.dirname, "worker.js"), compatibilityDate: "2026-11-01", kvNamespaces: { KV: "kv" }, kvPersist: state }));
const base = await mf.ready;
const KEYS = 12_000;
await Promise.all(Array.from({ length: 8 }, (_, c) => fetch(new URL(`/seed?from=${c * (KEYS / 8)}&n=${KEYS / 8}`, base)).then((r) => r.text())));
let next = 0;
/** `n` requests, 16 at a time; each `/get` reads a key no earlier request read. */
async function round(path, n) {
  let sent = 0;
  const before = cpu();
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (sent < n) {
      const key = next++;
      sent++;
      await (await fetch(new URL(path(key), base))).text();
    }
  }));
  return ((cpu() - before) / n) * 1000;
}
const results = { noop: [], get: [] };
for (let r = 0; r < 5; r++) {
  results.noop.push(await round(() => "/noop", 2000));
  results.get.push(await round((key) => `/get?i=${key % KEYS}`, 2000));
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
for (const [name, values] of Object.entries(results)) console.log(`${name}: median ${median(values).toFixed(0)} µs of workerd CPU per request (rounds: ${values.map((v) => v.toFixed(0)).join(", ")})`);
console.log(`one KV read of a distinct key: about ${(median(results.get) - median(results.noop)).toFixed(0)} µs of workerd CPU`);
await mf.dispose();
rmSync(state, { recursive: true, force: true });
