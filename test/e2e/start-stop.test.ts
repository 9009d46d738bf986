import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../tools/paths.ts";

/**
 * `npm start` stops on a signal to the process npm started (issue 22). Before, npm handed SIGTERM
 * to `sh -c`, which died without passing it on, and the Workers (in process groups of their own)
 * kept running with their ports. This starts the real thing on free ports with its own state,
 * sends SIGTERM to npm alone, and checks that every process under it is gone and every port free.
 */
const READY_TIMEOUT_MS = 90_000;
const STOP_BOUND_MS = 20_000;
/** `--inspector-port` is the Worker's port + 11,000 (tools/dev/stack.ts). */
const INSPECTOR_OFFSET = 11_000;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** Four consecutive free ports whose inspector ports are free too. */
async function freePorts(): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const ports = [base, base + 1, base + 2, base + 3];
    const all = [...ports, base + INSPECTOR_OFFSET, base + 1 + INSPECTOR_OFFSET];
    if ((await Promise.all(all.map(portIsFree))).every(Boolean)) return ports;
  }
  throw new Error("no free ports found");
}

/** Every process below `root`, with its command line (ps, so it works wherever ps does). */
function descendants(root: number): { pid: number; command: string }[] {
  const rows = execFileSync("ps", ["-A", "-o", "pid=,ppid=,args="], { encoding: "utf8" })
    .split("\n")
    .flatMap((line) => {
      const match = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
      return match ? [{ pid: Number(match[1]), ppid: Number(match[2]), command: match[3]! }] : [];
    });
  const found: { pid: number; command: string }[] = [];
  const parents = [root];
  while (parents.length > 0) {
    const parent = parents.pop()!;
    for (const row of rows.filter((r) => r.ppid === parent)) {
      found.push({ pid: row.pid, command: row.command });
      parents.push(row.pid);
    }
  }
  return found;
}

/** Running, not merely a zombie waiting for its parent to reap it. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !execFileSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" }).trim().startsWith("Z");
  } catch {
    return false;
  }
}

const stateDir = mkdtempSync(join(tmpdir(), "tollgate-start-stop-"));
let npm: ChildProcess | undefined;
let started: { pid: number; command: string }[] = [];

afterAll(() => {
  // Whatever this test started and the signal did not stop is stopped here, so a failure leaves nothing behind.
  for (const { pid } of started) if (running(pid)) process.kill(pid, "SIGKILL");
  if (npm?.pid !== undefined && running(npm.pid)) process.kill(npm.pid, "SIGKILL");
  rmSync(stateDir, { recursive: true, force: true });
});

describe("npm start", () => {
  it("stops everything it started, and frees every port, on SIGTERM to the npm process", { timeout: READY_TIMEOUT_MS + STOP_BOUND_MS + 10_000 }, async () => {
    const [billing, ingest, autumn, sink] = await freePorts();
    const ports = [billing!, ingest!, autumn!, sink!, billing! + INSPECTOR_OFFSET, ingest! + INSPECTOR_OFFSET];
    npm = spawn("npm", ["start"], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, BILLING_PORT: String(billing), INGEST_PORT: String(ingest), AUTUMN_PORT: String(autumn), SINK_PORT: String(sink), NOTIFY_URL: "", TOLLGATE_STATE_DIR: stateDir },
    });
    let output = "";
    npm.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    npm.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    const exited = new Promise<number | null>((resolve) => npm!.once("exit", (code) => resolve(code)));

    const readyBy = Date.now() + READY_TIMEOUT_MS;
    while (!output.includes("Tollgate is running:") && Date.now() < readyBy && npm.exitCode === null) await new Promise((r) => setTimeout(r, 200));
    expect(output, "npm start's output").toContain("Tollgate is running:");
    // The banner comes last: wrangler's own start-up tables are not printed before it.
    expect(output).not.toContain("Your Worker has access to the following bindings");

    started = descendants(npm.pid!);
    expect(started.filter((p) => p.command.includes("workerd")).length, started.map((p) => p.command).join("\n")).toBeGreaterThanOrEqual(2);
    expect(started.filter((p) => p.command.includes("wrangler")).length).toBeGreaterThanOrEqual(2);
    for (const port of ports) expect(await portIsFree(port), `port ${port} in use while running`).toBe(false);

    const signalledAt = Date.now();
    process.kill(npm.pid!, "SIGTERM");
    const stopBy = signalledAt + STOP_BOUND_MS;
    let left = started.filter((p) => running(p.pid));
    while ((left.length > 0 || npm.exitCode === null) && Date.now() < stopBy) {
      await new Promise((r) => setTimeout(r, 250));
      left = started.filter((p) => running(p.pid));
    }
    expect(left.map((p) => p.command), "processes left running").toEqual([]);
    expect(npm.exitCode ?? npm.signalCode, "npm exited").not.toBeNull();
    await exited;
    for (const port of ports) expect(await portIsFree(port), `port ${port} still in use`).toBe(true);
    console.log(`stopped ${started.length} processes in ${Date.now() - signalledAt} ms`);
  });
});
