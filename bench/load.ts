import autocannon from "autocannon";
import { readFileSync } from "node:fs";
import { workerdCpuSeconds } from "./proc.ts";

/**
 * The load generator, in its own process so it never shares an event loop (or a core's
 * scheduling) with the sink it measures. Input: a JSON spec on argv; output: JSON on stdout.
 */
/** `cpuParent`: the pid workerd runs under (the bench's); its CPU time is read just around the measured run, warm-up excluded. */
type Spec = { url: string; method?: "GET" | "POST"; connections: number; duration: number; warmup: number; headers: Record<string, string>; bodyFile: string; keysFile?: string; cpuParent?: number };

const spec = JSON.parse(process.argv[2]!) as Spec;
const body = readFileSync(spec.bodyFile);
const keys = spec.keysFile ? (JSON.parse(readFileSync(spec.keysFile, "utf8")) as string[]) : null;
let turn = 0;

const run = (duration: number) =>
  autocannon({
    url: spec.url,
    method: spec.method ?? "POST",
    connections: spec.connections,
    duration,
    headers: spec.headers,
    ...(spec.method === "GET" ? {} : { body }),
    ...(keys
      ? {
          requests: [
            {
              // Each request as another org: the key rotates through every minted key.
              setupRequest: (request: autocannon.Request) => ({ ...request, headers: { ...spec.headers, authorization: `Bearer ${keys[turn++ % keys.length]}` } }),
            },
          ],
        }
      : {}),
  });

if (spec.warmup > 0) await run(spec.warmup);
const cpuBefore = spec.cpuParent === undefined ? null : workerdCpuSeconds(spec.cpuParent);
const result = await run(spec.duration);
// Read when the last response is in: work a request leaves behind (a queued usage flush, an alarm) after that is not in it.
const workerdCpuS = cpuBefore === null ? null : workerdCpuSeconds(spec.cpuParent) - cpuBefore;
process.stdout.write(JSON.stringify({ ...result, workerdCpuS }));
