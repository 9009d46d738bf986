import { join } from "node:path";
import { loadLocalSettings } from "./settings.ts";
import { REPO_ROOT } from "../paths.ts";
import { startStack } from "./stack.ts";

/** `npm start`: the whole system locally, a demo org with a fresh ingest key, and a "try it" block. */
const DEMO_ORG = "demo-org";

const settings = loadLocalSettings({ root: REPO_ROOT });
const persistDir = join(REPO_ROOT, ".wrangler", "state");
console.log("Starting Tollgate locally (state in .wrangler/state) ...");

const stack = await startStack({
  settings,
  persistDir,
  onOutput: (worker, line) => console.log(`[${worker}] ${line}`),
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping the Workers and the stand-ins ...`);
  await stack.stop();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));

async function demoKey(): Promise<string> {
  const created = await fetch(`${stack.autumnUrl}/_control/customers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: DEMO_ORG, name: "Demo Org" }) });
  if (!created.ok && created.status !== 409) throw new Error(`creating the demo customer answered ${created.status}`);
  const minted = await fetch(`${stack.billingUrl}/admin/orgs/${DEMO_ORG}/ingest-keys`, { method: "POST", headers: { authorization: `Bearer ${settings.ADMIN_TOKEN}` } });
  if (minted.status !== 201) throw new Error(`minting the demo key answered ${minted.status}: ${await minted.text()}`);
  return ((await minted.json()) as { key: string }).key;
}

let key: string;
try {
  key = await demoKey();
} catch (error) {
  console.error(`Could not seed the demo org: ${(error as Error).message}`);
  await stack.stop();
  process.exit(1);
}
const otlp = JSON.stringify({ resourceLogs: [{ resource: { attributes: [{ key: "service.name", value: { stringValue: "demo" } }] }, scopeLogs: [{ logRecords: [{ body: { stringValue: "hello from the demo" } }] }] }] });

console.log(`
Tollgate is running:
  billing Worker   ${stack.billingUrl}   (admin token: ${settings.ADMIN_TOKEN})
  ingest Worker    ${stack.ingestUrl}
  Autumn stand-in  ${stack.autumnUrl}
  upstream sink    ${stack.sinkUrl}   (GET ${stack.sinkUrl}/_control/stats)
Grace period: ${settings.GRACE_PERIOD}. Demo org "${DEMO_ORG}" has a fresh ingest key.

Try it:
  export TOLLGATE_INGEST_KEY=${key}
  # 1. send OTLP JSON as the demo org (200, and the sink counts it)
  curl -sS -X POST ${stack.ingestUrl}/v1/logs -H "Authorization: Bearer $TOLLGATE_INGEST_KEY" -H 'content-type: application/json' -d '${otlp}'
  # 2. the demo org misses a payment: Autumn's stand-in sends a signed webhook, the org turns overdue
  curl -sS -X POST ${stack.autumnUrl}/_control/customers/${DEMO_ORG}/past-due
  npm run tollgate -- org ${DEMO_ORG}
  # 3. wait ${settings.GRACE_PERIOD}: the org is suspended and step 1 answers 402
  # 4. pay: ingestion resumes at once
  curl -sS -X POST ${stack.autumnUrl}/_control/customers/${DEMO_ORG}/pay

Ctrl-C stops everything.
`);
