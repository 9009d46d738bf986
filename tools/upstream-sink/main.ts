/**
 * The OTLP upstream sink on its own: `npx node tools/upstream-sink/main.ts`.
 *
 * Environment: `SINK_PORT` (default 8790), `SINK_HOST` (default 127.0.0.1), `TENANT_HEADER`
 * (default X-Scope-OrgID), `SINK_KEEP_REQUESTS` (default 1000). Prints one line with its URL.
 */
import { startUpstreamSink } from "./server.ts";

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

const sink = await startUpstreamSink({
  port: intFromEnv("SINK_PORT", 8790),
  host: process.env.SINK_HOST || "127.0.0.1",
  tenantHeader: process.env.TENANT_HEADER || "X-Scope-OrgID",
  keepRequests: intFromEnv("SINK_KEEP_REQUESTS", 1000),
}).catch((error: unknown) => {
  console.error(`upstream sink could not start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
console.log(`upstream sink listening on ${sink.url}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await sink.close();
  process.exit(0);
}
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
