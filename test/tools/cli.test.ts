import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_POLICY, NO_USAGE } from "../../src/billing/config.ts";
import { usageView } from "../../src/billing/usage/usage-view.ts";
import { newOrgRecord, type HistoryEntry } from "../../src/billing/org/record.ts";
import { orgView } from "../../src/billing/org/view.ts";
import { newSweep, sweepView, type SweepRecord, type SweepView } from "../../src/billing/reconcile/sweep-record.ts";
import { listen } from "../../tools/listen.ts";
import { formatOrg, formatStatus, formatSweep, formatSweepProgress } from "../../tools/cli/format.ts";
import { runCli } from "../../tools/cli/program.ts";
import type { OrgStatus } from "../../src/ingest/status/answer.ts";

const CLI = fileURLToPath(new URL("../../tools/cli/tollgate.ts", import.meta.url));
const TOKEN = "cli-test-token";
const T0 = Date.parse("2026-03-01T12:00:00.000Z");

/** A sweep as the admin API shows it, built by the real record and view code. */
function sweep(changes: Partial<SweepRecord> = {}): SweepView {
  return sweepView({ ...newSweep("sweep_test", "admin", T0), ...changes });
}

type Call = { method: string; path: string; authorization: string | undefined };

/** A stand-in for the billing Worker's admin API: POST answers `started`, each GET the next scripted sweep. */
async function fakeAdmin(script: { post?: { status: number; body: unknown }; gets: { status: number; body: unknown }[] }) {
  const calls: Call[] = [];
  let next = 0;
  const server: Server = createServer((request, response) => {
    calls.push({ method: request.method!, path: request.url!, authorization: request.headers.authorization });
    const answer = request.method === "POST" ? script.post! : script.gets[Math.min(next++, script.gets.length - 1)]!;
    response.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body));
  });
  const { url } = await listen(server);
  servers.push(server);
  return { url, calls };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

type Result = { code: number | null; stdout: string; stderr: string };

/**
 * The CLI run in this process (runCli), with an environment of its own: no admin token or ingest key
 * unless the test gives one, and nothing of this process's. A spawned Node costs about 0.3 s of CPU per call.
 */
async function run(args: string[], env: Record<string, string> = {}): Promise<Result> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, { env: { TOLLGATE_ADMIN_TOKEN: "", ADMIN_TOKEN: "", TOLLGATE_INGEST_KEY: "", ...env }, out: (text) => (stdout += text), err: (text) => (stderr += text) });
  return { code, stdout, stderr };
}

/** The real executable (tools/cli/tollgate.ts) in its own Node, for the tests that hold its wiring: exit code, stdout, stderr. */
async function spawnCli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TOLLGATE_ADMIN_TOKEN: "", ADMIN_TOKEN: "", TOLLGATE_INGEST_KEY: "", ...env } });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

const handedOver = { unknown_past_due: 2, no_longer_past_due: 1, missing_from_autumn: 0, limit_reached: 0, limit_lifted: 0 };

describe("tollgate reconcile", () => {
  it("--help lists the command and its options (the executable)", async () => {
    const top = await spawnCli(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/reconcile \[options\]\s+start a reconciliation sweep/);
    const own = await run(["reconcile", "--help"]);
    expect(own.stdout).toContain("--wait");
    expect(own.stdout).toContain("--status");
  });

  it("starts a sweep and prints it", async () => {
    const admin = await fakeAdmin({ post: { status: 202, body: { ...sweep(), started: true } }, gets: [] });
    const result = await run(["reconcile", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls).toEqual([{ method: "POST", path: "/admin/reconcile", authorization: `Bearer ${TOKEN}` }]);
    expect(result.stdout).toContain("started sweep_test");
    expect(result.stdout).toContain("sweep sweep_test (admin): RUNNING");
  });

  it("reports the sweep already running instead of starting another", async () => {
    const admin = await fakeAdmin({ post: { status: 200, body: { ...sweep({ pages: 4 }), started: false } }, gets: [] });
    const result = await run(["reconcile", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("a sweep is already running: sweep_test");
    expect(result.stdout).toMatch(/pages:\s+4/);
  });

  it("--wait polls until the sweep ends, printing progress and the summary", async () => {
    const admin = await fakeAdmin({
      post: { status: 202, body: { ...sweep(), started: true } },
      gets: [
        { status: 200, body: sweep({ pages: 1, customers_seen: 1000, orgs_handed_over: { unknown_past_due: 1, no_longer_past_due: 0, missing_from_autumn: 0, limit_reached: 0, limit_lifted: 0 } }) },
        { status: 200, body: sweep({ pages: 1, customers_seen: 1000, orgs_handed_over: { unknown_past_due: 1, no_longer_past_due: 0, missing_from_autumn: 0, limit_reached: 0, limit_lifted: 0 } }) },
        { status: 200, body: sweep({ pages: 2, customers_seen: 1500, orgs_handed_over: handedOver, phase: "missing" }) },
        { status: 200, body: sweep({ pages: 2, customers_seen: 1500, orgs_handed_over: handedOver, status: "finished", phase: "done", finished_at: T0 + 4_000, autumn_calls: 2, object_calls: 3 }) },
      ],
    });
    const result = await run(["reconcile", "--wait", "--interval", "0.01", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls.map((c) => c.method)).toEqual(["POST", "GET", "GET", "GET", "GET"]);
    const lines = result.stdout.split("\n");
    // One progress line per change, not per poll.
    expect(lines.filter((line) => line.includes("1 page · 1000 customers seen · 1 handed over"))).toHaveLength(1);
    expect(result.stdout).toContain("2 pages · 1500 customers seen · 3 handed over");
    expect(result.stdout).toContain("sweep sweep_test (admin): FINISHED");
    expect(result.stdout).toMatch(/finished: .* after 4s/);
    expect(result.stdout).toContain("handed over:  3 (2 past due in Autumn, ok or unknown here; 1 no longer past due in Autumn)");
    expect(result.stdout).toContain("calls:        2 to Autumn, 3 to org objects");
  });

  it("--wait exits 1 when the sweep failed, showing its errors", async () => {
    const failed = sweep({
      status: "failed",
      phase: "done",
      finished_at: T0 + 60_000,
      pages: 1,
      attempts: 8,
      error_count: 1,
      errors: [{ at: T0 + 59_000, page: 2, message: "Autumn answered 503", org_id: null }],
    });
    const admin = await fakeAdmin({ post: { status: 202, body: { ...sweep(), started: true } }, gets: [{ status: 200, body: failed }] });
    const result = await run(["reconcile", "--wait", "--interval", "0.01", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("FAILED");
    expect(result.stdout).toContain("page 2: Autumn answered 503");
  });

  it("--json --wait prints only the final sweep on stdout, progress on stderr", async () => {
    const done = sweep({ status: "finished", phase: "done", finished_at: T0 + 1_000, pages: 1 });
    const admin = await fakeAdmin({ post: { status: 202, body: { ...sweep(), started: true } }, gets: [{ status: 200, body: done }] });
    const result = await run(["reconcile", "--wait", "--json", "--interval", "0.01", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(done);
    expect(result.stderr).toContain("started sweep_test");
  });

  it("--status shows the last sweep without starting one", async () => {
    const done = sweep({ status: "finished", phase: "done", finished_at: T0 + 1_000, customers_seen: 20_000 });
    const admin = await fakeAdmin({ gets: [{ status: 200, body: done }] });
    const result = await run(["reconcile", "--status", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls.map((c) => `${c.method} ${c.path}`)).toEqual(["GET /admin/reconcile"]);
    expect(result.stdout).toContain("customers:    20000 seen");
  });

  it("--confirm <id> confirms a held sweep; a held sweep prints what it would restore and how to confirm, and exits 1", async () => {
    const held = sweep({ status: "held", phase: "held", would_restore: { no_longer_past_due: 7, missing_from_autumn: 1, limit_lifted: 0 }, would_restore_sample: [{ org_id: "org_a", kind: "no_longer_past_due" }], restricted_held: 12, restore_allowance: 5 });
    const text = formatSweep(held, T0);
    expect(text).toContain("HELD:         would move 8 orgs toward ok (7 no longer past due, 1 missing from Autumn, 0 limits lifted) of 12 restricted; more than 5 needs a confirmation");
    expect(text).toContain("org_a  no_longer_past_due");
    expect(text).toContain("tollgate reconcile --confirm sweep_test");
    const admin = await fakeAdmin({ post: { status: 202, body: sweep({ status: "running", phase: "finishing", confirmed: true }) }, gets: [] });
    const result = await run(["reconcile", "--confirm", "sweep_test", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls.map((c) => `${c.method} ${c.path}`)).toEqual(["POST /admin/reconcile/sweep_test/confirm"]);
  });

  it("--status before any sweep says so, and succeeds", async () => {
    const admin = await fakeAdmin({ gets: [{ status: 404, body: { error: "no_sweep", message: "no reconciliation sweep has run yet" } }] });
    const result = await run(["reconcile", "--status", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("No reconciliation sweep has run yet");
  });

  it("names the admin API's error and exits 1 (the executable)", async () => {
    const admin = await fakeAdmin({ post: { status: 401, body: { error: "unauthorized", message: "wrong admin token" } }, gets: [] });
    const result = await spawnCli(["reconcile", "--url", admin.url, "--token", "wrong"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("POST /reconcile answered 401 unauthorized: wrong admin token");
  });

  it("--url and --token may come from TOLLGATE_URL and TOLLGATE_ADMIN_TOKEN (the command line wins), as the help says", async () => {
    const admin = await fakeAdmin({ gets: [{ status: 200, body: sweep() }] });
    const env = { TOLLGATE_URL: admin.url, TOLLGATE_ADMIN_TOKEN: TOKEN };
    expect((await run(["reconcile", "--status"], env)).code).toBe(0);
    expect((await run(["reconcile", "--status", "--token", "from-cli"], env)).code).toBe(0);
    expect(admin.calls.map((c) => c.authorization)).toEqual([`Bearer ${TOKEN}`, "Bearer from-cli"]);
    const help = await run(["reconcile", "--help"]);
    expect(help.stdout).toMatch(/--url <url>\s+billing Worker URL \(default: "http:\/\/127\.0\.0\.1:8787",\s+env: TOLLGATE_URL\)/);
    expect(help.stdout).toContain("admin token (ADMIN_TOKEN) (env: TOLLGATE_ADMIN_TOKEN)");
  });

  it("refuses a non-positive --interval", async () => {
    const result = await run(["reconcile", "--wait", "--interval", "0"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("--interval");
  });
});

describe("formatting", () => {
  it("a sweep retrying a page says when", () => {
    const retrying = sweep({ pages: 3, attempts: 2, next_at: T0 + 90_000, error_count: 2 });
    expect(formatSweepProgress(retrying, T0)).toBe("  3 pages · 0 customers seen · 0 handed over · 2 errors, retrying in 1m 30s (failed 2× so far)");
    expect(formatSweep(retrying, T0)).toContain("now:          page 4 next, retrying in 1m 30s (failed 2× so far)");
  });

  function overdueOrg(history: HistoryEntry[] = []) {
    const anchor = T0 - 3 * 86_400_000 + 3_600_000;
    const record = { ...newOrgRecord("org_cli", T0), state: "overdue" as const, reason: "in_grace_period" as const, anchor, noticed_at: T0, suspend_at: T0 + 86_400_000 };
    return { ...orgView(record, history, [], T0, DEFAULT_POLICY), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, T0) };
  }

  it("an org shows both terms of its deadline and marks the later one", () => {
    const text = formatOrg(overdueOrg(), T0);
    expect(text).toContain("first seen: overdue by Tollgate 2026-03-01T12:00:00.000Z (in 0s) (minimum notice 1d)");
    expect(text).toContain("deadline:   2026-03-02T12:00:00.000Z (in 1d), the later of:");
    expect(text).toMatch(/grace period ends {4}2026-03-01T13:00:00.000Z \(in 1h\)\n/);
    expect(text).toMatch(/minimum notice ends {2}2026-03-02T12:00:00.000Z \(in 1d\) {2}← the deadline/);
  });

  it("an org under the Workers' observe mode says so, though it has no override of its own (a new user's trial found it silent)", () => {
    expect(formatOrg({ ...overdueOrg(), enforcement_mode: "observe" }, T0)).toContain("enforcement: observe (the Workers' ENFORCEMENT): nothing is refused for billing, would-be refusals are only counted");
    expect(formatOrg(overdueOrg(), T0)).toContain("enforcement: enforce (the Workers' ENFORCEMENT)");
  });

  function exemptOrg(until: number | null) {
    const anchor = T0 - 5 * 86_400_000;
    const record = {
      ...newOrgRecord("org_cli", T0), state: "overdue" as const, reason: "exempt" as const, anchor, noticed_at: anchor, notice_from: T0 - 86_400_000,
      suspend_at: until === null ? null : Math.max(T0 + 6 * 86_400_000, until),
      override: { action: "exempt" as const, until, note: "wire pending", at: T0 - 86_400_000 },
    };
    // A week's minimum notice from the exemption's grant: the deadline after it is later than its end.
    return { ...orgView(record, [], [], T0, { ...DEFAULT_POLICY, minNoticeMs: 7 * 86_400_000 }), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, T0) };
  }

  it("while an exemption is in force, an org shows its end and the deadline that applies then, not a running deadline", () => {
    const text = formatOrg(exemptOrg(T0 + 3 * 86_400_000), T0);
    expect(text).not.toContain("← the deadline");
    expect(text).not.toMatch(/^ {2}deadline: /m);
    expect(text).toContain("exempt:     until 2026-03-04 12:00 UTC (in 3d); then the deadline 2026-03-07 12:00 UTC applies (in 6d), the later of:");
    expect(text).toMatch(/minimum notice ends {2}2026-03-07T12:00:00.000Z \(in 6d\) {2}← applies after the exemption \(unless the overdue invoice is paid\)/);
  });

  it("an exemption with no end says so and names no deadline", () => {
    const text = formatOrg(exemptOrg(null), T0);
    expect(text).not.toContain("← the deadline");
    expect(text).toContain("exempt:     with no end (until cleared); no deadline meanwhile");
  });

  it("an org's history names the sweep's finding, and its dead letters are listed", () => {
    const entry: HistoryEntry = { at: T0, kind: "transition", from: "ok", to: "overdue", reason: "in_grace_period", source: "reconcile", message_id: null, note: "unknown_past_due", override: null, evidence: null, limit: null, enforcement: null };
    const view = overdueOrg([entry]);
    const event = { id: "evt_1", type: "org.overdue" as const, org_id: "org_cli", enforcement: "enforce" as const, state: "overdue" as const, previous_state: "ok" as const, reason: "in_grace_period" as const, deadline: null, suspended_at: null, pay_url: null, at: new Date(T0).toISOString() };
    const text = formatOrg({ ...view, follow_up_at: new Date(T0 + 60_000).toISOString(), dead_letters: [{ event, attempts: 40, error: "receiver answered 500", at: new Date(T0).toISOString() }] }, T0);
    expect(text).toContain("reconcile ok → overdue (in_grace_period) — sweep: past due in Autumn, ok or unknown here");
    expect(text).toContain("follow-up:  2026-03-01T12:01:00.000Z (in 1m)");
    expect(text).toContain("org.overdue evt_1 after 40 attempts: receiver answered 500");
  });

  it("an org Autumn does not know is flagged", () => {
    const view = overdueOrg();
    expect(formatOrg(view, T0)).not.toContain("AUTUMN DOES NOT KNOW");
    expect(formatOrg({ ...view, autumn_customer_unknown: true }, T0)).toContain("AUTUMN DOES NOT KNOW THIS CUSTOMER (404 customer_not_found): the state is kept");
  });

  it("an org's parked data, when it has any", () => {
    const view = overdueOrg();
    expect(formatOrg(view, T0)).not.toContain("parked:");
    const parking = { ...view.parking, parked_batches: 4, parked_bytes: 4_096, delivered_batches: 1, delivered_bytes: 1_024, waiting_batches: 3, waiting_bytes: 3_072 };
    expect(formatOrg({ ...view, parking }, T0)).toContain("parked:     4 batches (4096 bytes); delivered 1, expired 0, refused 0; waiting 3 (3072 bytes)");
  });

  it("an org's usage per feature, its limits and what is owed to Autumn; limit history entries", () => {
    const view = overdueOrg([
      { at: T0, kind: "limit_reached", from: "overdue", to: "overdue", reason: "in_grace_period", source: "metering", message_id: null, note: null, override: null, evidence: null, limit: { feature_id: "spans", reset_at: T0 + 86_400_000, usage: 100, granted: 100 }, enforcement: null },
    ]);
    expect(formatOrg(view, T0)).not.toContain("usage:");
    const record = {
      ...newOrgRecord("org_cli", T0),
      limits: [{ feature_id: "spans", signals: ["traces" as const], reset_at: T0 + 86_400_000, since: T0, usage: 100, granted: 100 }],
      evidence: { customer_found: true, past_due_subscriptions: [], open_invoices: [], paid_invoice: null, pay_url: null, paid_checked: "not_needed" as const, recent_invoice_count: 0, balances: { spans: { feature_id: "spans", granted: 100, remaining: 0, usage: 100, unlimited: false, overage_allowed: false, next_reset_at: T0 + 86_400_000 } } },
    };
    const row = { feature_id: "spans", epoch: "e", received: 130, pending: 30, pending_since: T0, report_seq: 1, report_value: null, report_attempts: 0, report_next_at: null, report_first_at: null, reported: 100, reports: 1, duplicates: 0, last_reported_at: T0, last_error: null };
    const text = formatOrg({ ...view, usage: usageView(record, [row], { features: { traces: "spans" }, reportIntervalMs: 30_000, enforce: true }, T0) }, T0);
    expect(text).toContain("usage:      limits enforced; each report to Autumn gathers 30s of usage");
    expect(text).toContain("spans (traces): 100/100 used (Autumn), LIMITED until 2026-03-02T12:00:00.000Z; received 130, reported 100; owed to Autumn 30");
    expect(text).toContain("metering  limit reached: spans 100/100 until 2026-03-02T12:00:00.000Z");
  });
});

/** A status as the ingest Worker answers it (src/ingest/status/view.ts builds it there). */
const OVERDUE_STATUS: OrgStatus = {
  org_id: "org_cli",
  state: "overdue",
  reason: "An invoice is past due since 2026-03-01T12:00:00Z; ingestion stops at 2026-03-04T12:00:00Z unless it is paid. Pay at https://invoice.stripe.com/i/cli.",
  since: new Date(T0).toISOString(),
  deadline: new Date(T0 + 3 * 86_400_000).toISOString(),
  suspended_at: null,
  pay_url: "https://invoice.stripe.com/i/cli",
  limits: [],
  upgrade_url: null,
  parked: { batches: 0, bytes: 0, updated_at: null },
  enforcement: "enforce",
  checked_at: new Date(T0).toISOString(),
  source: "mirror",
};

/** A stand-in for the ingest Worker's GET /v1/status: answers `answer` and records who asked. */
async function fakeIngest(answer: { status: number; body: unknown }) {
  const calls: Call[] = [];
  const server: Server = createServer((request, response) => {
    calls.push({ method: request.method!, path: request.url!, authorization: request.headers.authorization });
    response.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body));
  });
  const { url } = await listen(server);
  servers.push(server);
  return { url, calls };
}

describe("tollgate status", () => {
  it("asks the ingest Worker with the ingest key (no admin token) and prints the standing for people", async () => {
    const ingest = await fakeIngest({ status: 200, body: OVERDUE_STATUS });
    const result = await run(["status", "--key", "tg_ik_cli", "--url", `${ingest.url}/`]);
    expect(result.code).toBe(0);
    expect(ingest.calls).toEqual([{ method: "GET", path: "/v1/status", authorization: "Bearer tg_ik_cli" }]);
    expect(result.stdout).toContain("org_cli: OVERDUE since 2026-03-01T12:00:00.000Z");
    expect(result.stdout).toContain(`why:         ${OVERDUE_STATUS.reason}`);
    expect(result.stdout).toContain("deadline:    2026-03-04T12:00:00.000Z");
    expect(result.stdout).toContain("pay at:      https://invoice.stripe.com/i/cli");
    expect(result.stdout).toContain("parked:      0 batches (0 bytes) waiting");
    expect(result.stdout).toContain("enforcement: enforce");
  });

  it("--json prints the answer as it came; the key may come from TOLLGATE_INGEST_KEY", async () => {
    const ingest = await fakeIngest({ status: 200, body: OVERDUE_STATUS });
    const result = await run(["status", "--json", "--url", ingest.url], { TOLLGATE_INGEST_KEY: "tg_ik_from_env" });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(OVERDUE_STATUS);
    expect(ingest.calls[0]!.authorization).toBe("Bearer tg_ik_from_env");
  });

  it("a refused key exits 1 naming the status and the code; no key at all exits 1 before asking", async () => {
    const ingest = await fakeIngest({ status: 401, body: { error: "unknown_ingest_key", message: "the ingest key is unknown or has been revoked; mint a new one" } });
    const refused = await run(["status", "--key", "tg_ik_gone", "--url", ingest.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("GET /v1/status answered 401 unknown_ingest_key: the ingest key is unknown or has been revoked");
    const missing = await run(["status", "--url", ingest.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no ingest key: pass --key or set TOLLGATE_INGEST_KEY");
    expect(ingest.calls).toHaveLength(1);
  });

  it("formats limits with their resets, the upgrade link and parked data", () => {
    const text = formatStatus(
      {
        ...OVERDUE_STATUS,
        state: "suspended",
        deadline: null,
        suspended_at: new Date(T0 - 3_600_000).toISOString(),
        limits: [
          { feature_id: "spans", signals: ["traces"], reset_at: new Date(T0 + 5 * 86_400_000).toISOString(), enforced: true },
          { feature_id: "ingest_bytes", signals: ["bytes"], reset_at: null, enforced: false },
        ],
        upgrade_url: "https://billing.example.com/upgrade?org=org_cli",
        parked: { batches: 3, bytes: 3072, updated_at: new Date(T0 - 60_000).toISOString() },
      },
      T0,
    );
    expect(text).toContain("suspended:   2026-03-01T11:00:00.000Z (1h ago)");
    expect(text).not.toContain("deadline:");
    expect(text).toContain("limits:      spans (traces) used up until 2026-03-06T12:00:00.000Z (in 5d); refused (429)");
    expect(text).toContain("             ingest_bytes (bytes) used up until the plan changes; not enforced");
    expect(text).toContain("upgrade at:  https://billing.example.com/upgrade?org=org_cli");
    expect(text).toContain("parked:      3 batches (3072 bytes) waiting, as of 2026-03-01T11:59:00.000Z (1m ago)");
  });
});

describe("tollgate enforcement", () => {
  /** A stand-in admin API recording each request's body, answering with an org view. */
  async function recordingAdmin(status = 200, body: unknown = null) {
    const calls: { method: string; path: string; body: unknown }[] = [];
    const server: Server = createServer((request, response) => {
      let text = "";
      request.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      request.on("end", () => {
        calls.push({ method: request.method!, path: request.url!, body: text === "" ? null : JSON.parse(text) });
        const record = { ...newOrgRecord("org cli", T0), enforcement: { mode: "observe" as const, note: "canary (ops-42)", at: T0 } };
        const view = { ...orgView(record, [{ at: T0, kind: "override", from: "ok", to: "ok", reason: "never_synced", source: "admin", message_id: null, note: "canary (ops-42)", override: null, evidence: null, limit: null, enforcement: "observe" }], [], T0, DEFAULT_POLICY), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, T0) };
        response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body ?? view));
      });
    });
    const { url } = await listen(server);
    servers.push(server);
    return { url, calls };
  }

  it("sets an org's mode with its note and prints the org, its enforcement and the history entry", async () => {
    const admin = await recordingAdmin();
    const result = await run(["enforcement", "org cli", "observe", "--note", "canary (ops-42)", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls).toEqual([{ method: "POST", path: "/admin/orgs/org%20cli/enforcement", body: { mode: "observe", note: "canary (ops-42)" } }]);
    expect(result.stdout).toContain('enforcement: observe (this org\'s own override, since 2026-03-01T12:00:00.000Z');
    expect(result.stdout).toContain('admin     enforcement observe — "canary (ops-42)"');
  });

  it("refuses an unknown mode without calling the API, and requires a note", async () => {
    const admin = await recordingAdmin();
    const bad = await run(["enforcement", "org_cli", "off", "--note", "x", "--url", admin.url, "--token", TOKEN]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('unknown mode "off": use enforce, observe or default');
    const noNote = await run(["enforcement", "org_cli", "enforce", "--url", admin.url, "--token", TOKEN]);
    expect(noNote.code).not.toBe(0);
    expect(noNote.stderr).toContain("--note");
    expect(admin.calls).toEqual([]);
  });

  it("names the admin API's error and exits 1", async () => {
    const admin = await recordingAdmin(400, { error: "invalid_request", message: "note: a note is required" });
    const result = await run(["enforcement", "org_cli", "default", "--note", "x", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("answered 400 invalid_request: note: a note is required");
  });
});

/** A stand-in admin API answering by route (`answer`), recording each request with its JSON body. */
async function routedAdmin(answer: (method: string, path: string, body: unknown) => { status: number; body: unknown }) {
  const calls: { method: string; path: string; body: unknown }[] = [];
  const server: Server = createServer((request, response) => {
    let text = "";
    request.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
    request.on("end", () => {
      const body = text === "" ? null : JSON.parse(text);
      calls.push({ method: request.method!, path: request.url!, body });
      const reply = answer(request.method!, request.url!, body);
      response.writeHead(reply.status, { "content-type": "application/json" }).end(JSON.stringify(reply.body));
    });
  });
  const { url } = await listen(server);
  servers.push(server);
  return { url, calls };
}

/** Temporary folders of the orgs files, removed after each test. */
const folders: string[] = [];
afterEach(() => {
  for (const dir of folders.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function orgsFile(lines: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-cli-"));
  folders.push(dir);
  const file = join(dir, "orgs.txt");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

const keyOf = (org: string) => `tg_ik_${org.padEnd(43, "x").slice(0, 43)}`;
/** The batch endpoint's answer: a key for every org, except `full` ones (too_many_keys), 207 then. */
function batchAnswer(orgs: string[], full: Set<string> = new Set()) {
  const keys = orgs.filter((org) => !full.has(org)).map((org) => ({ org_id: org, key_id: `ik_${org}`, key: keyOf(org), created_at: new Date(T0).toISOString() }));
  const failed = orgs.filter((org) => full.has(org)).map((org) => ({ org_id: org, error: "too_many_keys", message: `org ${org} already has 20 active ingest keys: revoke one first` }));
  return { status: failed.length === 0 ? 201 : 207, body: { keys, failed } };
}

describe("tollgate mint-keys", () => {
  it("reads the ids from a file and mints through the batch endpoint in chunks of 1,000, printing org,key lines in the file's order", async () => {
    const orgs = Array.from({ length: 2_500 }, (_, i) => `org_${i}`);
    const admin = await routedAdmin((_method, _path, body) => batchAnswer((body as { orgs: string[] }).orgs));
    const file = orgsFile(["# one org id a line; blank lines and # comments are skipped", ...orgs.slice(0, 10), "", ...orgs.slice(10)]);
    const result = await run(["mint-keys", "--orgs-file", file, "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls.map((c) => `${c.method} ${c.path}`)).toEqual(Array(3).fill("POST /admin/ingest-keys:batch"));
    expect(admin.calls.map((c) => (c.body as { orgs: string[] }).orgs)).toEqual([orgs.slice(0, 1_000), orgs.slice(1_000, 2_000), orgs.slice(2_000)]);
    expect(result.stdout.trim().split("\n")).toEqual(orgs.map((org) => `${org},${keyOf(org)}`));
    expect(result.stderr).toContain("minted 2500 keys for 2500 orgs");
  });

  it("an org the API could not mint for is named on stderr with its error; the rest are minted and it exits 1", async () => {
    const orgs = Array.from({ length: 1_200 }, (_, i) => `org_${i}`);
    const admin = await routedAdmin((_method, _path, body) => batchAnswer((body as { orgs: string[] }).orgs, new Set(["org_3", "org_1100"])));
    const result = await run(["mint-keys", "--orgs-file", orgsFile(orgs), "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(1);
    expect(admin.calls).toHaveLength(2);
    expect(result.stdout.trim().split("\n")).toHaveLength(1_198);
    expect(result.stdout).not.toContain("org_3,");
    expect(result.stderr).toContain("org_3: too_many_keys: org org_3 already has 20 active ingest keys: revoke one first");
    expect(result.stderr).toContain("org_1100: too_many_keys");
    expect(result.stderr).toContain("minted 1198 keys for 1200 orgs; 2 failed");
  });

  it("stops at a chunk the API refused, saying which orgs got no key, and exits 1", async () => {
    const orgs = Array.from({ length: 2_500 }, (_, i) => `org_${i}`);
    let chunk = 0;
    const admin = await routedAdmin((_method, _path, body) => (chunk++ === 1 ? { status: 503, body: { error: "not_configured", message: "INGEST_KEY_PEPPER is not set" } } : batchAnswer((body as { orgs: string[] }).orgs)));
    const result = await run(["mint-keys", "--orgs-file", orgsFile(orgs), "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(1);
    expect(admin.calls).toHaveLength(2);
    expect(result.stdout.trim().split("\n")).toHaveLength(1_000);
    expect(result.stderr).toContain("answered 503 not_configured: INGEST_KEY_PEPPER is not set");
    expect(result.stderr).toContain("1500 orgs got no key, from org_1000 (line 1001) on");
    // The second line of the message starts at its line's start, as before runCli (the refactor indented it by two spaces).
    expect(result.stderr).toMatch(/^1500 orgs got no key, from org_1000 \(line 1001\) on \(a lost answer or a 5xx/m);
  });

  it("refuses a file with an invalid or repeated id before calling anything", async () => {
    const admin = await routedAdmin(() => batchAnswer([]));
    const invalid = await run(["mint-keys", "--orgs-file", orgsFile(["org_a", "bad id!"]), "--url", admin.url, "--token", TOKEN]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('line 2: "bad id!" is not an org id');
    const repeated = await run(["mint-keys", "--orgs-file", orgsFile(["org_a", "org_b", "org_a"]), "--url", admin.url, "--token", TOKEN]);
    expect(repeated.code).toBe(1);
    expect(repeated.stderr).toContain("line 3: org_a is named twice (first on line 1)");
    const missing = await run(["mint-keys", "--orgs-file", "/nonexistent/orgs.txt", "--url", admin.url, "--token", TOKEN]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("cannot read /nonexistent/orgs.txt");
    expect(admin.calls).toEqual([]);
  });
});

describe("list commands page with the API's cursor", () => {
  const entry = (org: string) => ({ org_id: org, reason: "in_grace_period", state: "overdue", since: new Date(T0).toISOString(), version: 3, suspend_at: new Date(T0 + 86_400_000).toISOString(), suspended_at: null, pay_url: null, limits: [] });
  /** Three pages of the index: a, b | c, d | e. */
  function indexPages(_method: string, path: string) {
    const cursor = new URL(path, "http://x").searchParams.get("cursor");
    const pages: Record<string, { orgs: string[]; next: string | null }> = { none: { orgs: ["org_a", "org_b"], next: "2" }, "2": { orgs: ["org_c", "org_d"], next: "4" }, "4": { orgs: ["org_e"], next: null } };
    const page = pages[cursor ?? "none"]!;
    return { status: 200, body: { orgs: page.orgs.map(entry), next_cursor: page.next } };
  }

  it("orgs --state prints one page and the cursor to the next", async () => {
    const admin = await routedAdmin(indexPages);
    const result = await run(["orgs", "--state", "overdue", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls.map((c) => c.path)).toEqual(["/admin/orgs?state=overdue&limit=50"]);
    expect(result.stdout).toMatch(/^org_a\s+overdue\s+in_grace_period\s+deadline 2026-03-02T12:00:00.000Z$/m);
    expect(result.stdout).toContain("more: --cursor 2 (or --all)");
    const next = await run(["orgs", "--state", "overdue", "--cursor", "2", "--limit", "2", "--url", admin.url, "--token", TOKEN]);
    expect(admin.calls.at(-1)!.path).toBe("/admin/orgs?state=overdue&limit=2&cursor=2");
    expect(next.stdout).toContain("org_c");
  });

  it("orgs --all follows next_cursor to the end, one page at a time", async () => {
    const admin = await routedAdmin(indexPages);
    const result = await run(["orgs", "--state", "overdue", "--all", "--url", admin.url, "--token", TOKEN]);
    expect(result.code).toBe(0);
    expect(admin.calls.map((c) => c.path)).toEqual(["/admin/orgs?state=overdue&limit=200", "/admin/orgs?state=overdue&limit=200&cursor=2", "/admin/orgs?state=overdue&limit=200&cursor=4"]);
    expect(result.stdout.match(/^org_\w/gm)).toEqual(["org_a", "org_b", "org_c", "org_d", "org_e"]);
    expect(result.stdout).not.toContain("more:");
  });

  it("orgs --json --all prints one JSON line per org; a missing or unknown --state is refused", async () => {
    const admin = await routedAdmin(indexPages);
    const json = await run(["orgs", "--state", "overdue", "--all", "--json", "--url", admin.url, "--token", TOKEN]);
    expect(json.stdout.trim().split("\n").map((line) => JSON.parse(line).org_id)).toEqual(["org_a", "org_b", "org_c", "org_d", "org_e"]);
    const unknown = await run(["orgs", "--state", "late", "--url", admin.url, "--token", TOKEN]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("overdue, suspended or ok");
    expect(admin.calls).toHaveLength(3);
  });

  it("dead-letters <org> --all follows next_cursor; without it, one page and the cursor", async () => {
    const letter = (n: number) => ({ event: { id: `evt_${n}`, type: "org.overdue" }, attempts: 12, error: "receiver answered 500", at: new Date(T0 + n).toISOString() });
    const admin = await routedAdmin((_method, path) => {
      const cursor = new URL(path, "http://x").searchParams.get("cursor");
      return cursor === null ? { status: 200, body: { dead_letters: [letter(3), letter(2)], count: 3, next_cursor: "2" } } : { status: 200, body: { dead_letters: [letter(1)], count: 3, next_cursor: null } };
    });
    const all = await run(["dead-letters", "org cli", "--all", "--url", admin.url, "--token", TOKEN]);
    expect(all.code).toBe(0);
    expect(admin.calls.map((c) => c.path)).toEqual(["/admin/orgs/org%20cli/dead-letters?limit=100", "/admin/orgs/org%20cli/dead-letters?limit=100&cursor=2"]);
    expect(all.stdout.match(/evt_\d/g)).toEqual(["evt_3", "evt_2", "evt_1"]);
    const one = await run(["dead-letters", "org cli", "--url", admin.url, "--token", TOKEN]);
    expect(one.stdout).toContain("2 of 3 shown; more: --cursor 2 (or --all)");
  });

  it("the org view says when it shows only the newest dead letters, and how to see the rest", () => {
    const record = newOrgRecord("org_cli", T0);
    const event = { id: "evt_45", type: "org.overdue" as const, org_id: "org_cli", enforcement: "enforce" as const, state: "overdue" as const, previous_state: "ok" as const, reason: "in_grace_period" as const, deadline: null, suspended_at: null, pay_url: null, at: new Date(T0).toISOString() };
    const view = { ...orgView(record, [], [{ event, attempts: 40, error: "receiver answered 500", at: T0 }], T0, DEFAULT_POLICY, null, undefined, undefined, { count: 45, next: 44 }), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, T0) };
    expect(formatOrg(view, T0)).toContain("newest 1 of 45: `tollgate dead-letters org_cli --all` lists them all");
    const all = { ...orgView(record, [], [{ event, attempts: 40, error: "receiver answered 500", at: T0 }], T0, DEFAULT_POLICY), enforcement_mode: "enforce" as const, usage: usageView(record, [], NO_USAGE, T0) };
    expect(formatOrg(all, T0)).not.toContain("tollgate dead-letters");
  });
});

/** The executable with its stdout (or stderr) closed by the reader before it writes, as `tollgate ... | head -1` or `| grep -q` do: its exit code and what it wrote to the other stream. */
async function spawnCliReaderGone(args: string[], gone: "stdout" | "stderr"): Promise<{ code: number | null; other: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TOLLGATE_ADMIN_TOKEN: "", ADMIN_TOKEN: "", TOLLGATE_INGEST_KEY: "" } });
  child[gone].destroy();
  let other = "";
  child[gone === "stdout" ? "stderr" : "stdout"].setEncoding("utf8").on("data", (chunk: string) => (other += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, other };
}

describe("the executable's output to a reader that stops early", () => {
  it("an answer or the help piped to `head -1` ends the run as before runCli (console.log ignored EPIPE): exit 0, no stack trace", async () => {
    const admin = await routedAdmin(() => ({ status: 200, body: { org_id: "org_pipe", state: "ok" } }));
    const answer = await spawnCliReaderGone(["org", "org_pipe", "--json", "--url", admin.url, "--token", TOKEN], "stdout");
    expect(answer.other).toBe("");
    expect(answer.code).toBe(0);
    const help = await spawnCliReaderGone(["--help"], "stdout");
    expect(help.other).toBe("");
    expect(help.code).toBe(0);
  });

  it("an error to a closed stderr still exits 1, with nothing on stdout", async () => {
    const unknown = await spawnCliReaderGone(["frobnicate"], "stderr");
    expect(unknown.other).toBe("");
    expect(unknown.code).toBe(1);
  });
});

describe("tollgate webhook send", () => {
  const SECRET = "whsec_dG9sbGdhdGUtY2xpLXRlc3Qtd2ViaG9vay1zZWNyZXQ=";
  async function endpoint(status: number, body: string, type: string) {
    const server = createServer((_request, response) => response.writeHead(status, { "content-type": type }).end(body));
    const { url } = await listen(server);
    servers.push(server);
    return url;
  }

  it("an endpoint that accepts with a body that is not JSON: the answer is printed as text, no stack trace, exit 0", async () => {
    const url = await endpoint(200, "ok thanks", "text/plain");
    const human = await run(["webhook", "send", "--customer", "org_hook", "--url", url, "--secret", SECRET]);
    expect(human.stderr).toBe("");
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^sent billing\.updated msg_[0-9a-f]{32} → 200 ok thanks\n$/);
    const json = await run(["webhook", "send", "--customer", "org_hook", "--url", url, "--secret", SECRET, "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 200, answer: "ok thanks" });
  });

  it("a JSON answer is kept as JSON with --json", async () => {
    const url = await endpoint(200, '{"received":true}', "application/json");
    const json = await run(["webhook", "send", "--customer", "org_hook", "--url", url, "--secret", SECRET, "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 200, answer: { received: true } });
  });
});
