// Is node:zlib gunzipSync with maxOutputLength usable in workerd (compatibility date 2026-11-01, nodejs_compat), and how fast
// against a DecompressionStream read in JS? Run: node bench/zlib-probe/run.mjs (Node 22 from node_modules/.bin). Not part of npm run bench.
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { join } from "node:path";
import { gzipSync, gunzipSync } from "node:zlib";
import { readdirSync, readFileSync } from "node:fs";
const cpu = () => { let t = 0; for (const p of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) { try { if (readFileSync(`/proc/${p}/comm`, "utf8").trim() !== "workerd") continue; const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" "); if (Number(f[1]) !== process.pid) continue; t += Number(f[11]) + Number(f[12]); } catch {} } return t * 10; };
const mf = new Miniflare(convertV4MiniflareOptions({ modules: true, scriptPath: join(import.meta.dirname, "worker.js"), compatibilityDate: "2026-11-01", compatibilityFlags: ["nodejs_compat"] }));
const base = await mf.ready;
// ~1 MiB gzip of span-like JSON (as bench/bodies.ts largeGzipBody) and a 64 MiB NDJSON-like body.
const parts = []; let small = new Uint8Array(0);
while (small.byteLength < 2 ** 20) { for (let i = 0; i < 2000; i++) parts.push(`{"traceId":"${crypto.randomUUID().replaceAll("-", "")}","name":"GET /api/items/${i}","attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}]}`); small = gzipSync(parts.join(",")); }
const lines = []; let size = 0; for (let i = 0; size < 64 * 2 ** 20 - 4096; i++) { const l = JSON.stringify({ EdgeStartTimestamp: 1741964966000000000 + i * 1000, ClientIP: `203.0.${(i >> 8) & 255}.${i & 255}`, ClientRequestHost: "shop.example.com", ClientRequestURI: `/checkout?step=${i % 7}&item=${i}`, RayID: `8f${i.toString(16).padStart(14, "0")}` }); lines.push(l); size += l.length + 1; }
const big = gzipSync(lines.join("\n"));
const node = (b) => { const s = performance.now(); const o = gunzipSync(b).byteLength; return { ms: performance.now() - s, out: o }; };
for (const [name, body, n] of [["1 MiB gzip", small, 20], ["64 MiB logpush", big, 2]]) {
  const outBytes = gunzipSync(body).byteLength;
  console.log(`${name}: ${body.byteLength} gzip -> ${outBytes} bytes; Node gunzipSync ${node(body).ms.toFixed(1)} ms`);
  for (const path of ["/noop", "/zlib", "/stream"]) {
    await fetch(new URL(`${path}?n=1`, base), { method: "POST", body });
    const c0 = cpu(); const t0 = performance.now();
    const r = await (await fetch(new URL(`${path}?n=${n}`, base), { method: "POST", body })).json();
    const ms = performance.now() - t0; const cms = cpu() - c0;
    console.log(`  ${path} x${n}: ${JSON.stringify(r)} wall ${(ms / n).toFixed(1)} ms/inflate, workerd CPU ${(cms / n).toFixed(1)} ms/inflate, ${((outBytes / 2 ** 20) / (ms / n / 1000)).toFixed(0)} MiB/s out`);
  }
  // The bound: a limit below the output size.
  const r = await (await fetch(new URL(`/zlib?n=1&limit=${Math.floor(outBytes / 2)}`, base), { method: "POST", body })).json();
  console.log(`  /zlib with maxOutputLength ${Math.floor(outBytes / 2)}: ${JSON.stringify(r)}`);
}
await mf.dispose();
