import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startNotifyReceiver, type NotifyReceiver, type Received } from "../notify-receiver/server.ts";
import { loadLocalSettings, localNotifyPort } from "./settings.ts";
import { REPO_ROOT } from "../paths.ts";
import { startStack } from "./stack.ts";

/** `npm start`: the whole system locally, a demo org with a fresh ingest key, and a "try it" block. */
const DEMO_ORG = "demo-org";

const settings = loadLocalSettings({ root: REPO_ROOT });
const persistDir = join(REPO_ROOT, ".wrangler", "state");
console.log("Starting Tollgate locally (state in .wrangler/state) ...");

/** One line per event the local receiver accepts: what a product would email its customer about. */
function printEvent(received: Received): void {
  try {
    const event = JSON.parse(received.body) as { type?: string; org_id?: string; previous_state?: string; state?: string; reason?: string; deadline?: string | null };
    const signature = received.verified === null ? "" : received.verified ? "  (signature ok)" : "  (SIGNATURE INVALID: NOTIFY_SECRET differs)";
    const deadline = event.deadline ? `  deadline ${event.deadline}` : "";
    const change = event.previous_state ? `${event.previous_state} -> ${event.state}` : `still ${event.state}`;
    console.log(`[events] ${event.type} ${event.org_id}: ${change} (${event.reason})${deadline}${signature}`);
  } catch {
    console.log(`[events] ${received.body}`);
  }
}

// With NOTIFY_URL on this machine, run the event receiver there before the Workers start sending.
let receiver: NotifyReceiver | undefined;
const notifyPort = localNotifyPort(settings);
if (notifyPort !== null) {
  try {
    receiver = await startNotifyReceiver({ port: notifyPort, secret: settings.NOTIFY_SECRET, onEvent: printEvent });
  } catch (error) {
    console.warn(`NOTIFY_URL names port ${notifyPort}, where the local event receiver could not start (${(error as Error).message}); events go to whatever listens there.`);
  }
}

let stack: Awaited<ReturnType<typeof startStack>>;
try {
  stack = await startStack({
    settings,
    persistDir,
    onOutput: (worker, line) => console.log(`[${worker}] ${line}`),
  });
} catch (error) {
  await receiver?.close();
  throw error;
}

async function stopAll(): Promise<void> {
  await stack.stop();
  await receiver?.close();
}

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping the Workers and the stand-ins ...`);
  await stopAll();
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
  await stopAll();
  process.exit(1);
}
/** The local sink, or where the data really goes when .env points UPSTREAM_OTLP_URL elsewhere. */
function sinkLine(): string {
  if (settings.UPSTREAM_OTLP_URL.startsWith(stack.sinkUrl)) return `  upstream sink    ${stack.sinkUrl}   (GET ${stack.sinkUrl}/_control/stats)`;
  return `  upstream         ${settings.UPSTREAM_OTLP_URL}   (UPSTREAM_OTLP_URL; the local sink at ${stack.sinkUrl} gets nothing)`;
}
function eventsLine(): string {
  if (receiver) return `  event receiver   ${receiver.url}   (NOTIFY_URL ${settings.NOTIFY_URL}; events print as [events] lines; GET ${receiver.url}/_control/received)`;
  if (settings.NOTIFY_URL !== "") return `  events           sent to ${settings.NOTIFY_URL}`;
  return "  events           off (set NOTIFY_URL=http://127.0.0.1:8791/events in .env to see them here)";
}

const otlp = JSON.stringify({ resourceLogs: [{ resource: { attributes: [{ key: "service.name", value: { stringValue: "demo" } }] }, scopeLogs: [{ logRecords: [{ body: { stringValue: "hello from the demo" } }] }] }] });

/** 25 spans in one OTLP JSON request, for the plan-limit step (valid ids: 16 and 8 bytes of hex). */
const spans = JSON.stringify({
  resourceSpans: [
    {
      resource: { attributes: [{ key: "service.name", value: { stringValue: "demo" } }] },
      scopeSpans: [
        {
          spans: Array.from({ length: 25 }, (_, i) => ({
            traceId: "5b8efff798038103d269b633813fc60c",
            spanId: (i + 1).toString(16).padStart(16, "0"),
            name: `GET /items/${i}`,
            kind: 2,
            startTimeUnixNano: "1700000000000000000",
            endTimeUnixNano: "1700000000100000000",
          })),
        },
      ],
    },
  ],
});
const limitsOn = settings.ENFORCE_LIMITS === "true" && (settings.USAGE_FEATURES ?? "").includes("traces=spans");
// The spans request of step 6, in a file so the printed command stays short.
const spansFile = join(persistDir, "demo-spans.json");
writeFileSync(spansFile, spans);

console.log(`
Tollgate is running:
  billing Worker   ${stack.billingUrl}   (admin token: ${settings.ADMIN_TOKEN})
  ingest Worker    ${stack.ingestUrl}
  Autumn stand-in  ${stack.autumnUrl}
${sinkLine()}
${eventsLine()}
Grace period: ${settings.GRACE_PERIOD}. Demo org "${DEMO_ORG}" has a fresh ingest key.

Try it:
  export TOLLGATE_INGEST_KEY=${key}
  # 1. send OTLP JSON as the demo org (200, and the sink counts it)
  curl -sS -X POST ${stack.ingestUrl}/v1/logs -H "Authorization: Bearer $TOLLGATE_INGEST_KEY" -H 'content-type: application/json' -d '${otlp}'
  # 2. the demo org misses a payment: Autumn's stand-in sends a signed webhook, the org turns overdue;
  #    within 5 s step 1 answers with a partialSuccess warning naming the deadline and where to pay
  curl -sS -X POST ${stack.autumnUrl}/_control/customers/${DEMO_ORG}/past-due
  npm run tollgate -- org ${DEMO_ORG}
  # 3. wait ${settings.GRACE_PERIOD}: the org is suspended and step 1 answers 402 naming where to pay (pay_url);
  #    parking is on here, so each refused batch is kept (${settings.PARK_RETENTION ?? "72h"}) and the sink gets nothing yet
  # 4. pay: ingestion resumes at once, and the batches refused while suspended reach the sink
  curl -sS -X POST ${stack.autumnUrl}/_control/customers/${DEMO_ORG}/pay
  curl -sS ${stack.sinkUrl}/_control/stats
  # 5. a lost webhook: another org goes past due (an invoice 10 days old) and Autumn never tells Tollgate;
  #    the reconciliation sweep finds it: overdue now, suspended only after MIN_NOTICE (${settings.MIN_NOTICE})
  curl -sS -X POST ${stack.autumnUrl}/_control/customers -H 'content-type: application/json' -d '{"id": "quiet-org"}'
  curl -sS -X POST '${stack.autumnUrl}/_control/customers/quiet-org/past-due?deliver=0' -H 'content-type: application/json' -d '{"at": '$(( $(date +%s) * 1000 - 864000000 ))'}'
  npm run tollgate -- reconcile --wait
  npm run tollgate -- org quiet-org
${
  limitsOn
    ? `  # 6. plan limits: an allowance of 100 spans that resets in a day; 25 spans a request, every 3 s,
  #    until a request is refused 429 plan_limit_reached naming the feature, the reset and where to upgrade
  #    (usage reaches Autumn within a few seconds, so a request or two past the allowance may still get in)
  curl -sS -o /dev/null -w 'allowance set: %{http_code}\\n' -X POST ${stack.autumnUrl}/_control/customers/${DEMO_ORG}/balances/spans -H 'content-type: application/json' -d '{"granted": 100, "next_reset_at": '$(( ($(date +%s) + 86400) * 1000 ))'}'
  for i in 1 2 3 4 5 6 7 8; do curl -sS -w ' [%{http_code}]\\n' -X POST ${stack.ingestUrl}/v1/traces -H "Authorization: Bearer $TOLLGATE_INGEST_KEY" -H 'content-type: application/json' -d @${spansFile}; sleep 3; done
  npm run tollgate -- org ${DEMO_ORG}
  #    an upgrade (Autumn's billing.updated) lifts it within about 5 s (the edge's verdict cache):
  curl -sS -o /dev/null -w 'upgraded: %{http_code}\\n' -X POST ${stack.autumnUrl}/_control/customers/${DEMO_ORG}/balances/spans -H 'content-type: application/json' -d '{"granted": 100000, "webhook": "billing.updated"}'
`
    : ""
}
Ctrl-C stops everything.
`);
