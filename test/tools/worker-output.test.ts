import { describe, expect, it } from "vitest";
import { outputFilter } from "../../tools/dev/worker-output.ts";

/** What `wrangler dev` 4.164 printed at start for the billing Worker (abridged; colours as printed), offline. */
const STARTUP = [
  " ⛅️ wrangler 4.164.0",
  "────────────────────",
  "[custom build] Running: node tools/build-console.ts",
  "Using secrets defined in .wrangler/state/billing.env",
  "Your Worker has access to the following bindings:",
  "Binding                                                                 Resource                  Mode",
  "env.ORG_BILLING (OrgBilling)                                            Durable Object            local",
  'env.AUTUMN_API_URL ("(hidden)")                                         Environment Variable      local',
  "Service bindings, Durable Object bindings, and Tail consumers connect to other Wrangler or Vite dev processes running locally",
  "[wrangler:warn] Unable to fetch the `Request.cf` object! Falling back to a default placeholder...",
  "Error: getaddrinfo ENOTFOUND workers.cloudflare.com",
  "    at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26)",
  "    at GetAddrInfoReqWrap.callbackTrampoline (node:internal/async_hooks:130:17)",
  "\u001b[33m▲ \u001b[43;33m[\u001b[43;30mWARNING\u001b[43;33m]\u001b[0m \u001b[1mScheduled Workers are not automatically triggered during local development.\u001b[0m",
  "  To manually trigger a scheduled event, run:",
  '    curl "http://127.0.0.1:18787/cdn-cgi/local/scheduled"',
  "  For more details, see \u001b[4mhttps://developers.cloudflare.com/workers/configuration/cron-triggers/#test-cron-triggers-locally\u001b[0m",
  "⎔ Starting local server...",
  "[wrangler:info] Ready on http://127.0.0.1:18787",
  "[wrangler:info] GET /health 200 OK (2778ms)",
  "⎔ Connection status updated",
];

const LOGGED_OBJECT = ["{", "  event: 'sync',", "  org_id: 'demo-org',", "  evidence: {", "    past_due: true", "  },", "  state: 'overdue'", "}"];
const LOGGED_WARNING = [
  "\u001b[33m▲ \u001b[43;33m[\u001b[43;30mWARNING\u001b[43;33m]\u001b[0m \u001b[1m{\u001b[0m",
  "    event: 'ingest_refused',",
  "    detail: {",
  "      code: 'billing_suspended'",
  "    },",
  "    status: 402",
  "  }",
];

const run = (verbose: boolean, lines: string[]) => {
  const filter = outputFilter({ verbose });
  return { shown: lines.flatMap((line) => filter.push(line)), filter };
};

describe("npm start's view of wrangler's output (issue 22)", () => {
  it("hides wrangler's start-up chatter and the offline warning with its stack, and remembers it was offline", () => {
    const { shown, filter } = run(false, STARTUP);
    expect(shown).toEqual([]);
    expect(filter.sawOffline).toBe(true);
  });

  it("is not offline when the warning never came", () => {
    expect(run(false, STARTUP.slice(0, 9)).filter.sawOffline).toBe(false);
  });

  it("folds a logged object, nested ones included, onto one line", () => {
    expect(run(false, LOGGED_OBJECT).shown).toEqual(["{ event: 'sync', org_id: 'demo-org', evidence: { past_due: true }, state: 'overdue' }"]);
  });

  it("folds a logged warning, whose object wrangler indents two spaces more, and keeps its level", () => {
    expect(run(false, LOGGED_WARNING).shown).toEqual(["▲ [WARNING] { event: 'ingest_refused', detail: { code: 'billing_suspended' }, status: 402 }"]);
  });

  it("keeps a Worker's plain log lines, wrangler's other warnings and errors, and stack frames that are not the offline one's", () => {
    const lines = ["hello from a Worker", "[wrangler:warn] something else", "✘ [ERROR] Build failed", "Error: boom", "    at worker.ts:1:1"];
    expect(run(false, lines).shown).toEqual(lines);
  });

  it("prints a one-line warning without wrangler's colour codes (they leaked into a log file)", () => {
    const coloured = "\x1b[33m▲ \x1b[43;33m[\x1b[43;30mWARNING\x1b[43;33m]\x1b[0m \x1b[1m{ event: 'admin_rejected', code: 'unauthorized', path: '/admin/login' }\x1b[0m";
    expect(run(false, [coloured]).shown).toEqual(["▲ [WARNING] { event: 'admin_rejected', code: 'unauthorized', path: '/admin/login' }"]);
  });

  it("shows every line as it came with --verbose, still noting the offline warning", () => {
    const { shown, filter } = run(true, [...STARTUP, ...LOGGED_OBJECT]);
    expect(shown).toEqual([...STARTUP, ...LOGGED_OBJECT]);
    expect(filter.sawOffline).toBe(true);
  });
});
