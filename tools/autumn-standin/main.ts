/**
 * The Autumn stand-in on its own: `npx node tools/autumn-standin/main.ts`.
 *
 * Environment:
 *   AUTUMN_STANDIN_PORT     port (default 8789; 0 = ephemeral)
 *   AUTUMN_STANDIN_HOST     host (default 127.0.0.1)
 *   AUTUMN_SECRET_KEY       the accepted secret key (default am_sk_test_local_demo)
 *   AUTUMN_WEBHOOK_TARGET   URL that receives the signed billing.updated, invoice.finalized and
 *                           balances.limit_reached webhooks (unset = do not deliver; per request, `?deliver=0`
 *                           on a control skips delivery; GET /_control/webhooks lists what was built)
 *   AUTUMN_WEBHOOK_SECRET   whsec_... secret that signs them (required with AUTUMN_WEBHOOK_TARGET;
 *                           several space-separated secrets: the first one signs)
 * Prints one line with its URL; stops cleanly on SIGINT / SIGTERM. The control API is described in server.ts.
 */
import { startAutumnStandIn } from "./server.ts";

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) fail(`${name} must be a port number (0-65535), got ${JSON.stringify(raw)}`);
  return value;
}

const target = process.env.AUTUMN_WEBHOOK_TARGET || null;
const secret = (process.env.AUTUMN_WEBHOOK_SECRET ?? "").trim().split(/\s+/)[0] || null;
if (target !== null) {
  try {
    new URL(target);
  } catch {
    fail(`AUTUMN_WEBHOOK_TARGET must be a URL, got ${JSON.stringify(target)}`);
  }
  if (secret === null) fail("AUTUMN_WEBHOOK_TARGET is set but AUTUMN_WEBHOOK_SECRET (whsec_...) is not");
}

const standIn = await startAutumnStandIn({
  port: portFromEnv("AUTUMN_STANDIN_PORT", 8789),
  host: process.env.AUTUMN_STANDIN_HOST || "127.0.0.1",
  secretKey: process.env.AUTUMN_SECRET_KEY || "am_sk_test_local_demo",
  webhook: secret === null ? null : { url: target, secret },
}).catch((error: unknown) => {
  console.error(`Autumn stand-in could not start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
console.log(`Autumn stand-in (API 2.3.0) listening on ${standIn.url}${target ? `, webhooks to ${target}` : ""}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await standIn.close();
  process.exit(0);
}
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
