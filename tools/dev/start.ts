import { writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { startNotifyReceiver, type NotifyReceiver, type Received } from "../notify-receiver/server.ts";
import { loadLocalSettings, localNotifyPort } from "./settings.ts";
import { REPO_ROOT } from "../paths.ts";
import { startStack, type Stack } from "./stack.ts";
import { DEMO_SPANS, tryItBlock } from "./try-it.ts";
import { OFFLINE_NOTE, outputFilter } from "./worker-output.ts";

/**
 * `npm start`: the whole system locally, a demo org with a fresh ingest key, and a "try it" block.
 * `npm start -- --verbose` shows wrangler's own output as it comes; by default only the Workers'
 * log lines are shown, after the banner. SIGINT, SIGTERM or SIGHUP (npm forwards the first two:
 * the script `exec`s node, so no shell sits in between) stops everything this process started.
 */
const DEMO_ORG = "demo-org";
const verbose = process.argv.slice(2).includes("--verbose");

const settings = loadLocalSettings({ root: REPO_ROOT });
// TOLLGATE_STATE_DIR moves the Workers' state, so a second stack (test/tools/start-stop.test.ts) never shares yours.
const persistDir = process.env.TOLLGATE_STATE_DIR ?? join(REPO_ROOT, ".wrangler", "state");
/** A path as the reader would type it from the repo root. */
const shownPath = (path: string) => (relative(REPO_ROOT, path).startsWith("..") ? path : relative(REPO_ROOT, path));
console.log(`Starting Tollgate locally (state in ${shownPath(persistDir)}) ...${verbose ? "" : " wrangler's own output is hidden: npm start -- --verbose shows it."}`);

/** One line per event the local receiver accepts: what a product would email its customer about. */
function printEvent(received: Received): void {
  try {
    const event = JSON.parse(received.body) as { type?: string; org_id?: string; previous_state?: string; state?: string; reason?: string; deadline?: string | null; enforcement?: string };
    const signature = received.verified === null ? "" : received.verified ? "  (signature ok)" : "  (SIGNATURE INVALID: NOTIFY_SECRET differs)";
    const deadline = event.deadline ? `  deadline ${event.deadline}` : "";
    const change = event.previous_state ? `${event.previous_state} -> ${event.state}` : `still ${event.state}`;
    const observed = event.enforcement === "observe" ? "  [observe: not enforced]" : "";
    console.log(`[events] ${event.type} ${event.org_id}: ${change} (${event.reason})${deadline}${observed}${signature}`);
  } catch {
    console.log(`[events] ${received.body}`);
  }
}

// Worker output: everything as it comes with --verbose; otherwise nothing before the banner, then the
// Workers' own log lines. The last lines are kept either way, to show why a start failed.
const filters = { billing: outputFilter({ verbose }), ingest: outputFilter({ verbose }) };
const recentOutput: string[] = [];
const RECENT_LINES = 200;
let showOutput = verbose;
function onOutput(worker: "billing" | "ingest", line: string): void {
  recentOutput.push(`[${worker}] ${line}`);
  if (recentOutput.length > RECENT_LINES) recentOutput.shift();
  for (const shown of filters[worker].push(line)) if (showOutput) console.log(`[${worker}] ${shown}`);
}

// Stopping: a signal while starting aborts the start (which stops what it began); later it stops the stack.
const starting = new AbortController();
let startup: Promise<Stack> | undefined;
let receiver: NotifyReceiver | undefined;
let stopping = false;

async function stopAll(): Promise<void> {
  const stack = await startup?.catch(() => undefined);
  await stack?.stop();
  await receiver?.close();
}

async function shutdown(why: string, exitCode = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`\n${why}: stopping the Workers and the stand-ins ...`);
  starting.abort();
  await stopAll();
  process.exit(exitCode);
}
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void shutdown(signal));
// If npm is killed outright (SIGKILL) it forwards nothing and this process is re-parented: stop
// rather than leave the Workers running with nobody to stop them.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) void shutdown("npm exited");
}, 1_000).unref();

async function failed(what: string, error: unknown): Promise<never> {
  if (stopping) return new Promise<never>(() => {}); // a signal stopped the start: shutdown() exits
  console.error(`${what}: ${(error as Error).message}`);
  if (!verbose && recentOutput.length > 0) console.error(`wrangler's last ${recentOutput.length} lines:\n${recentOutput.join("\n")}`);
  await shutdown("Start failed", 1);
  return new Promise<never>(() => {});
}

// With NOTIFY_URL on this machine, run the event receiver there before the Workers start sending.
const notifyPort = localNotifyPort(settings);
if (notifyPort !== null) {
  try {
    receiver = await startNotifyReceiver({ port: notifyPort, secret: settings.NOTIFY_SECRET, onEvent: printEvent });
  } catch (error) {
    console.warn(`NOTIFY_URL names port ${notifyPort}, where the local event receiver could not start (${(error as Error).message}); events go to whatever listens there.`);
  }
}

startup = startStack({ settings, persistDir, onOutput, signal: starting.signal });
const stack = await startup.catch((error: unknown) => failed("Could not start the Workers", error));

async function demoKey(): Promise<string> {
  const created = await fetch(`${stack.autumnUrl}/_control/customers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: DEMO_ORG, name: "Demo Org" }) });
  if (!created.ok && created.status !== 409) throw new Error(`creating the demo customer answered ${created.status}`);
  const minted = await fetch(`${stack.billingUrl}/admin/orgs/${DEMO_ORG}/ingest-keys`, { method: "POST", headers: { authorization: `Bearer ${settings.ADMIN_TOKEN}` } });
  if (minted.status !== 201) throw new Error(`minting the demo key answered ${minted.status}: ${await minted.text()}`);
  return ((await minted.json()) as { key: string }).key;
}
const key = await demoKey().catch((error: unknown) => failed("Could not seed the demo org", error));

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

// The spans request of step 6, in a file so the printed command stays short.
const spansFile = join(persistDir, "demo-spans.json");
writeFileSync(spansFile, DEMO_SPANS);
const limitsOn = settings.ENFORCE_LIMITS === "true" && (settings.USAGE_FEATURES ?? "").includes("traces=spans");
const observe = settings.ENFORCEMENT === "observe";
const offline = filters.billing.sawOffline || filters.ingest.sawOffline;

console.log(`
Tollgate is running:
  billing Worker   ${stack.billingUrl}   (admin token: ${settings.ADMIN_TOKEN})
  console          ${stack.billingUrl}/admin   (the org page: ${stack.billingUrl}/admin/org/${DEMO_ORG})
  ingest Worker    ${stack.ingestUrl}
  Autumn stand-in  ${stack.autumnUrl}
${sinkLine()}
${eventsLine()}
Grace period: ${settings.GRACE_PERIOD}. Demo org "${DEMO_ORG}" has a fresh ingest key.${offline ? `\n${OFFLINE_NOTE}` : ""}${observe ? "\nENFORCEMENT=observe: nothing is refused for billing; would-be refusals are logged (ingest_would_refuse) and counted." : ""}

Try it:
${tryItBlock({
  ingestUrl: stack.ingestUrl,
  billingUrl: stack.billingUrl,
  autumnUrl: stack.autumnUrl,
  sinkUrl: stack.sinkUrl,
  adminToken: settings.ADMIN_TOKEN,
  key,
  org: DEMO_ORG,
  gracePeriod: settings.GRACE_PERIOD,
  parkRetention: settings.PARK_RETENTION ?? "72h",
  minNotice: settings.MIN_NOTICE,
  spansFile: shownPath(spansFile),
  limitsOn,
  observe,
})
  .map((line) => `  ${line}`)
  .join("\n")}

Ctrl-C (or SIGTERM to npm) stops everything.${verbose ? "" : " The Workers' log lines follow."}
`);
showOutput = true;
