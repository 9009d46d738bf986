/**
 * `npm run tollgate -- <command>`: the admin API for operators and demos, as a function of its arguments
 * and its io (`runCli`); tollgate.ts runs it as the executable.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { Webhook } from "standardwebhooks";
import type { OrgView } from "../../src/billing/org/view.ts";
import type { SweepView } from "../../src/billing/reconcile/sweep-record.ts";
import type { OrgStatus } from "../../src/ingest/status/answer.ts";
import type { DeadLetterPageView, IndexEntryView } from "../../src/billing/org/view.ts";
import type { MintBatchResult } from "../../src/billing/admin/mint-answer.ts";
import { formatDeadLetter, formatIndexEntry, formatOrg, formatStatus, formatSweep, formatSweepProgress } from "./format.ts";
import { readOrgsFile } from "./orgs-file.ts";
import { applyEnv, EnvOption, envHelp } from "./env-options.ts";

/** Where one run of the CLI reads its environment and writes its output. */
export type CliIo = {
  env: Record<string, string | undefined>;
  /** Text for stdout, newlines included. */
  out(text: string): void;
  /** Text for stderr, newlines included. */
  err(text: string): void;
  /** The terminals' widths, for wrapping help; unset (not a terminal), help wraps at 80, as commander does for a pipe. */
  columns?: { out?: number; err?: number };
};

/** A failure the run reports as one line, "tollgate: <message>", exiting 1. */
class CliError extends Error {
  /** The HTTP status when the admin API answered with an error. */
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

type Globals = { url: string; token?: string; json?: boolean };

/** One run's state, so runs in one process share nothing: its io, the command's globals and its exit code. */
class Run {
  readonly io: CliIo;
  globals: Globals = { url: "" };
  exitCode = 0;
  constructor(io: CliIo) {
    this.io = io;
  }

  /** A line on stdout. */
  out(line: string): void {
    this.io.out(`${line}\n`);
  }

  /** A line on stderr. */
  err(line: string): void {
    this.io.err(`${line}\n`);
  }

  /** A line beside the answer: on stderr with --json, so stdout stays JSON. */
  aside(line: string): void {
    if (this.globals.json) this.err(line);
    else this.out(line);
  }

  /** The answer: raw JSON with --json, else `human()`. */
  print(value: unknown, human: () => string): void {
    this.out(this.globals.json ? JSON.stringify(value, null, 2) : human());
  }
}

/**
 * The whole `tollgate` program for `argv` (the arguments after the script), in this process: its exit code.
 * It reads the environment only from `io.env`, writes only through `io` and never exits the process, so
 * the tests run it in-process; tollgate.ts is the executable around it.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const run = new Run(io);
  const program = buildProgram(run);
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (error) {
    // Commander has already written its message or the help (through io); its exit code is the run's.
    if (error instanceof CommanderError) return error.exitCode;
    run.err(`tollgate: ${error instanceof CliError ? error.message : (error as Error).stack}`);
    return 1;
  }
  return run.exitCode;
}

/**
 * A fresh program for one run. Commander would exit the process on an error or after help, print through
 * process.stdout/stderr and size help to the process's terminal: exitOverride makes those a thrown
 * CommanderError (with its exit code) and configureOutput sends the text through `io`, so the run's text
 * and code are the executable's. Colours are off: the help is plain text, so there is nothing to colour.
 * Subcommands inherit these settings, so they are set before any command is added.
 */
function buildProgram(run: Run): Command {
  const { io } = run;
  const program = new Command()
    .name("tollgate")
    .description("Operate Tollgate through the billing Worker's admin API; `status` reads an org's standing from the ingest Worker with its ingest key.")
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.out(text),
      writeErr: (text) => io.err(text),
      getOutHelpWidth: () => io.columns?.out ?? 80,
      getErrHelpWidth: () => io.columns?.err ?? 80,
      getOutHasColors: () => false,
      getErrHasColors: () => false,
    })
    .configureHelp(envHelp)
    .showHelpAfterError()
    // Ancestors' preAction hooks run first: the options read from io.env are set before a command's own hook reads them.
    .hook("preAction", (_program, action) => applyEnv(action, io.env));
  addOrgCommands(run, program);
  addReconcile(run, program);
  addMintKeys(run, program);
  addListCommands(run, program);
  addKeyCommands(run, program);
  addStatus(run, program);
  addWebhook(run, program);
  return program;
}

/** Every admin command takes --url, --token and --json. */
function adminCommand(run: Run, parent: Command, spec: string): Command {
  return parent
    .command(spec)
    .addOption(new EnvOption("--url <url>", "billing Worker URL", "TOLLGATE_URL").default("http://127.0.0.1:8787"))
    .addOption(new EnvOption("--token <token>", "admin token (ADMIN_TOKEN)", "TOLLGATE_ADMIN_TOKEN"))
    .option("--json", "print the raw JSON answer")
    .hook("preAction", (_parent, action) => {
      const options = action.opts<Globals>();
      run.globals = { ...options, token: options.token ?? run.io.env.ADMIN_TOKEN ?? (isLocal(options.url) ? "local-admin-token" : undefined) };
    });
}

function isLocal(url: string): boolean {
  return /^https?:\/\/(127\.0\.0\.1|localhost)(:|\/|$)/.test(url);
}

async function call<T>(run: Run, method: string, path: string, body?: unknown): Promise<T> {
  const { url, token } = run.globals;
  if (!token) throw new CliError("no admin token: pass --token or set TOLLGATE_ADMIN_TOKEN");
  const init = { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) };
  return request<T>(`${url.replace(/\/+$/, "")}/admin${path}`, init, `${method} ${path}`, `cannot reach ${url}`, "is `npm start` running, or is --url right?");
}

/** One call to a Worker: its JSON answer, or a CliError naming the route, the status and the Worker's error code and message. */
async function request<T>(target: string, init: RequestInit, route: string, unreachable: string, hint: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(target, init);
  } catch (error) {
    throw new CliError(`${unreachable}: ${(error as Error).message} (${hint})`);
  }
  const text = await response.text();
  const parsed = parseOrText(text);
  if (!response.ok) {
    const err = parsed as { error?: string; message?: string };
    throw new CliError(`${route} answered ${response.status}${err.error ? ` ${err.error}` : ""}: ${err.message ?? text}`, response.status);
  }
  return parsed as T;
}

function addOrgCommands(run: Run, program: Command): void {
  adminCommand(run, program, "org <orgId>")
    .description("an org's state, deadline, evidence and history as a timeline")
    .action(async (orgId: string) => {
      const org = await call<OrgView>(run, "GET", `/orgs/${encodeURIComponent(orgId)}`);
      run.print(org, () => formatOrg(org));
    });

  adminCommand(run, program, "resync <orgId>")
    .description("read Autumn now and apply the policy")
    .action(async (orgId: string) => {
      const org = await call<OrgView>(run, "POST", `/orgs/${encodeURIComponent(orgId)}/resync`);
      run.print(org, () => formatOrg(org));
    });

  adminCommand(run, program, "override <orgId> <action>")
    .description("exempt | suspend | unsuspend | clear, with a note for the history")
    .requiredOption("--note <text>", "who asked and why")
    .option("--until <iso>", "end of the override (ISO 8601)")
    .action(async (orgId: string, action: string, options: { note: string; until?: string }) => {
      if (!["exempt", "suspend", "unsuspend", "clear"].includes(action)) throw new CliError(`unknown action "${action}": use exempt, suspend, unsuspend or clear`);
      const org = await call<OrgView>(run, "POST", `/orgs/${encodeURIComponent(orgId)}/override`, { action, note: options.note, ...(options.until ? { until: options.until } : {}) });
      run.print(org, () => formatOrg(org));
    });

  adminCommand(run, program, "enforcement <orgId> <mode>")
    .description("enforce | observe | default: the org's own enforcement mode against the Workers' ENFORCEMENT (a canary), with a note")
    .requiredOption("--note <text>", "who asked and why")
    .action(async (orgId: string, mode: string, options: { note: string }) => {
      if (!["enforce", "observe", "default"].includes(mode)) throw new CliError(`unknown mode "${mode}": use enforce, observe or default`);
      const org = await call<OrgView>(run, "POST", `/orgs/${encodeURIComponent(orgId)}/enforcement`, { mode, note: options.note });
      run.print(org, () => formatOrg(org));
    });
}

/** The current or last sweep; null before the first one. */
async function sweepStatus(run: Run): Promise<SweepView | null> {
  try {
    return await call<SweepView>(run, "GET", "/reconcile");
  } catch (error) {
    if (error instanceof CliError && error.status === 404) return null;
    throw error;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls until the sweep is no longer running, printing a progress line whenever it moves.
 * Progress goes to stderr with --json, so stdout stays one JSON document.
 */
async function waitFor(run: Run, sweep: SweepView, intervalMs: number): Promise<SweepView> {
  run.aside(`waiting for ${sweep.id} (Ctrl-C stops waiting; the sweep goes on)`);
  let last = "";
  let current = sweep;
  for (;;) {
    const line = formatSweepProgress(current);
    if (line !== last) run.aside(line);
    last = line;
    if (current.status !== "running") return current;
    await sleep(intervalMs);
    const next = await sweepStatus(run);
    if (next === null) throw new CliError(`${sweep.id} is gone: the billing Worker reports no sweep`);
    if (next.id !== sweep.id) {
      // Ours finished and another (the cron's) started between two polls: report the newest.
      run.aside(`${sweep.id} is over; a newer sweep ${next.id} is running now`);
      return next;
    }
    current = next;
  }
}

function addReconcile(run: Run, program: Command): void {
  adminCommand(run, program, "reconcile")
    .description("start a reconciliation sweep with Autumn (or show the one already running); --status only shows the current or last one")
    .option("--status", "do not start a sweep: show the current or last one")
    .option("--wait", "poll until the sweep is no longer running, printing progress; exit 1 if it failed")
    .option("--confirm <sweepId>", "confirm a held sweep (one that would restore too many orgs at once): it then hands its orgs over")
    .addOption(
      new Option("--interval <seconds>", "seconds between polls with --wait").default(1).argParser((value) => {
        const seconds = Number(value);
        if (!Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentError("a positive number of seconds, e.g. 1 or 0.5");
        return seconds;
      }),
    )
    .action(async (options: { status?: boolean; wait?: boolean; confirm?: string; interval: number }) => {
      let sweep: SweepView | null;
      let answer: unknown;
      if (options.confirm !== undefined) {
        answer = sweep = await call<SweepView>(run, "POST", `/reconcile/${encodeURIComponent(options.confirm)}/confirm`);
      } else if (options.status) {
        answer = sweep = await sweepStatus(run);
        if (sweep === null) {
          run.print(null, () => "No reconciliation sweep has run yet (`tollgate reconcile` starts one).");
          return;
        }
      } else {
        const started = await call<SweepView & { started: boolean }>(run, "POST", "/reconcile");
        answer = started;
        sweep = started;
        const note = started.started ? `started ${sweep.id}` : `a sweep is already running: ${sweep.id}`;
        run.aside(note);
      }
      if (options.wait && sweep.status === "running") answer = sweep = await waitFor(run, sweep, options.interval * 1_000);
      const shown = sweep;
      run.print(answer, () => formatSweep(shown));
      if (shown.status === "failed" || shown.status === "held") run.exitCode = 1;
    });
}

/** Orgs per batch call: the API's MAX_BATCH_ORGS (src/billing/admin/requests.ts). */
const MINT_CHUNK = 1_000;

function addMintKeys(run: Run, program: Command): void {
  adminCommand(run, program, "mint-keys")
    .description("mint one ingest key for each org in a file (one id a line; blank lines and # comments skipped), 1,000 orgs a call; prints org,key lines (each key shown once)")
    .requiredOption("--orgs-file <file>", "the org ids, one a line")
    .action(async (options: { orgsFile: string }) => {
      const orgs = readOrgsFile(options.orgsFile, (message) => new CliError(message));
      let minted = 0;
      let failed = 0;
      for (let start = 0; start < orgs.length; start += MINT_CHUNK) {
        const chunk = orgs.slice(start, start + MINT_CHUNK);
        let answer: MintBatchResult;
        try {
          answer = await call<MintBatchResult>(run, "POST", "/ingest-keys:batch", { orgs: chunk.map((org) => org.id) });
        } catch (error) {
          if (!(error instanceof CliError)) throw error;
          const first = chunk[0]!;
          const unsure = error.status === undefined || error.status >= 500 ? " (a lost answer or a 5xx may still have minted some of that call's keys, unseen: `tollgate keys list` shows them, `keys revoke` removes them)" : "";
          throw new CliError(`${error.message}\n${orgs.length - start} orgs got no key, from ${first.id} (line ${first.line}) on${unsure}; the keys above were minted`, error.status);
        }
        // Printed as each call answers: the keys are never all held at once, and a later failure loses none.
        for (const key of answer.keys) run.out(run.globals.json ? JSON.stringify(key) : `${key.org_id},${key.key}`);
        for (const failure of answer.failed) run.err(`${failure.org_id}: ${failure.error}: ${failure.message}`);
        minted += answer.keys.length;
        failed += answer.failed.length;
      }
      run.err(`minted ${minted} keys for ${orgs.length} orgs${failed > 0 ? `; ${failed} failed (named above)` : ""}`);
      if (failed > 0) run.exitCode = 1;
    });
}

/** A positive whole number up to `max`, for --limit. */
function limitOption(max: number) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`a whole number from 1 to ${max}`);
    return n;
  };
}

/**
 * Shows a list a page at a time: one page (and the cursor to the next), or with `all` every page in turn,
 * each printed before the next is asked for, so no list is ever held whole. With --json, one JSON line per item.
 */
async function showPages<T>(run: Run, options: { cursor?: string; all?: boolean }, fetchPage: (cursor: string | undefined) => Promise<{ items: T[]; next: string | null; count?: number }>, line: (item: T) => string): Promise<void> {
  let cursor = options.cursor;
  let shown = 0;
  for (;;) {
    const page = await fetchPage(cursor);
    for (const item of page.items) run.out(run.globals.json ? JSON.stringify(item) : line(item));
    shown += page.items.length;
    if (page.next === null) return;
    if (!options.all) {
      const of = page.count === undefined ? "" : `${shown} of ${page.count} shown; `;
      const hint = `${of}more: --cursor ${page.next} (or --all)`;
      run.aside(hint);
      return;
    }
    cursor = page.next;
  }
}

const STATES = ["overdue", "suspended", "ok"];
function addListCommands(run: Run, program: Command): void {
  adminCommand(run, program, "orgs")
    .description("the orgs in a billing state, from the index, a page at a time; --all follows the cursor to the end")
    .addOption(
      new Option("--state <state>", "overdue | suspended | ok").makeOptionMandatory().argParser((value) => {
        if (!STATES.includes(value)) throw new InvalidArgumentError("use overdue, suspended or ok");
        return value;
      }),
    )
    .option("--limit <n>", "orgs per page (at most 200; default 50, 200 with --all)", limitOption(200))
    .option("--cursor <cursor>", "the page after this one (the previous page's cursor)")
    .option("--all", "every page, one after another")
    .action(async (options: { state: string; limit?: number; cursor?: string; all?: boolean }) => {
      const limit = options.limit ?? (options.all ? 200 : 50);
      await showPages(
        run,
        options,
        async (cursor) => {
          const query = new URLSearchParams({ state: options.state, limit: String(limit), ...(cursor === undefined ? {} : { cursor }) });
          const page = await call<{ orgs: IndexEntryView[]; next_cursor: string | null }>(run, "GET", `/orgs?${query}`);
          return { items: page.orgs, next: page.next_cursor };
        },
        formatIndexEntry,
      );
    });

  adminCommand(run, program, "dead-letters <orgId>")
    .description("an org's undelivered events (newest first), a page at a time; --all follows the cursor to the end")
    .option("--limit <n>", "letters per page (at most 100; default 20, 100 with --all)", limitOption(100))
    .option("--cursor <cursor>", "the page after this one (the previous page's cursor)")
    .option("--all", "every page, one after another")
    .action(async (orgId: string, options: { limit?: number; cursor?: string; all?: boolean }) => {
      const limit = options.limit ?? (options.all ? 100 : 20);
      await showPages(
        run,
        options,
        async (cursor) => {
          const query = new URLSearchParams({ limit: String(limit), ...(cursor === undefined ? {} : { cursor }) });
          const page = await call<DeadLetterPageView>(run, "GET", `/orgs/${encodeURIComponent(orgId)}/dead-letters?${query}`);
          return { items: page.dead_letters, next: page.next_cursor, count: page.count };
        },
        formatDeadLetter,
      );
    });
}

function addKeyCommands(run: Run, program: Command): void {
  const keys = program.command("keys").description("ingest keys");
  adminCommand(run, keys, "create <orgId>")
    .description("mint an ingest key (shown once)")
    .action(async (orgId: string) => {
      const key = await call<{ key_id: string; key: string; created_at: string }>(run, "POST", `/orgs/${encodeURIComponent(orgId)}/ingest-keys`);
      run.print(key, () => `key id: ${key.key_id}\nkey:    ${key.key}\n(store it now: it is not shown again)`);
    });
  adminCommand(run, keys, "list <orgId>")
    .description("the org's active keys: at most 20 (MAX_ACTIVE_KEYS), so one answer, no paging")
    .action(async (orgId: string) => {
      const listed = await call<{ keys: { key_id: string; created_at: string }[] }>(run, "GET", `/orgs/${encodeURIComponent(orgId)}/ingest-keys`);
      run.print(listed, () => (listed.keys.length === 0 ? "no active keys" : listed.keys.map((k) => `${k.key_id}  created ${k.created_at}`).join("\n")));
    });
  adminCommand(run, keys, "revoke <orgId> <keyId>")
    .action(async (orgId: string, keyId: string) => {
      const revoked = await call<{ key_id: string }>(run, "DELETE", `/orgs/${encodeURIComponent(orgId)}/ingest-keys/${encodeURIComponent(keyId)}`);
      run.print(revoked, () => `revoked ${revoked.key_id} (refused everywhere within about a minute)`);
    });
}

/**
 * What a customer's engineers can run: the org's standing as the ingest Worker tells it (GET /v1/status),
 * with the org's ingest key, no admin token. Exits 0 whatever the state; 1 when the key is refused or the Worker cannot be reached.
 */
function addStatus(run: Run, program: Command): void {
  program
    .command("status")
    .description("an org's billing standing, as its ingest key reads it from the ingest Worker (GET /v1/status)")
    .addOption(new EnvOption("--key <key>", "the org's ingest key (tg_ik_...)", "TOLLGATE_INGEST_KEY"))
    .addOption(new EnvOption("--url <url>", "ingest Worker URL", "TOLLGATE_INGEST_URL").default("http://127.0.0.1:8788"))
    .option("--json", "print the raw JSON answer")
    .action(async (options: { key?: string; url: string; json?: boolean }) => {
      run.globals = { url: options.url, json: options.json };
      if (!options.key) throw new CliError("no ingest key: pass --key or set TOLLGATE_INGEST_KEY");
      const status = await request<OrgStatus>(`${options.url.replace(/\/+$/, "")}/v1/status`, { headers: { authorization: `Bearer ${options.key}` } }, "GET /v1/status", `cannot reach ${options.url}`, "is `npm start` running, or is --url the ingest Worker's URL?");
      run.print(status, () => formatStatus(status));
    });
}

/** An endpoint's answer as JSON, or its text when it is not JSON (an endpoint may accept with a plain "ok"). */
function parseOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function addWebhook(run: Run, program: Command): void {
  program
    .command("webhook")
    .description("send a signed Autumn webhook")
    .command("send")
    .description("sign billing.updated for a customer the way Svix does and POST it")
    .requiredOption("--customer <id>", "Autumn customer id (the org id)")
    .requiredOption("--url <url>", "the webhook endpoint, e.g. https://billing.example.com/api/billing/autumn/webhook")
    .requiredOption("--secret <whsec>", "the endpoint's signing secret (whsec_...)")
    .option("--type <type>", "event type", "billing.updated")
    .option("--json", "print the raw JSON answer")
    .action(async (options: { customer: string; url: string; secret: string; type: string; json?: boolean }) => {
      run.globals = { url: options.url, json: options.json };
      const id = `msg_${crypto.randomUUID().replaceAll("-", "")}`;
      const now = new Date();
      const data = options.type === "customer.products.updated" ? { scenario: "renew", customer: { id: options.customer } } : { object: options.type, customer_id: options.customer, entity_id: null, plan_changes: [], tags: [] };
      const body = JSON.stringify({ type: options.type, data });
      let signature: string;
      try {
        signature = new Webhook(options.secret).sign(id, now, body);
      } catch (error) {
        throw new CliError(`--secret is not a whsec_ secret: ${(error as Error).message}`);
      }
      const response = await fetch(options.url, {
        method: "POST",
        headers: { "content-type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(now.getTime() / 1000)), "svix-signature": signature },
        body,
      }).catch((error: Error) => {
        throw new CliError(`cannot reach ${options.url}: ${error.message}`);
      });
      const answer = await response.text();
      if (!response.ok) throw new CliError(`the endpoint answered ${response.status}: ${answer}`);
      run.print({ message_id: id, status: response.status, answer: parseOrText(answer) }, () => `sent ${options.type} ${id} → ${response.status} ${answer}`);
    });
}
