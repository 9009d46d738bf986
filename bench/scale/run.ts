import { fork } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { REPO_ROOT } from "../../tools/paths.ts";

/**
 * `npm run bench -- --scale` (issue 23): every scale scenario, one after another, each in a process of
 * its own (a million-customer stand-in must not stay in the next scenario's memory, and one scenario's
 * failure must not stop the others). A scenario is a file bench/scale/<name>.ts exporting
 * `run(): Promise<Record<string, number | string>>`; a file here without that export is a helper and is
 * skipped. `--only sweep,burst` runs those and keeps the other scenarios' last figures in the results.
 * Writes bench/results/scale.json and scale.md (a table per scenario).
 */
export type Figures = Record<string, number | string>;
export type ScenarioResult = { measured_at: string; wall_s: number; figures: Figures | null; error: string | null };
type ScaleResults = { machine: Record<string, string | number>; scenarios: Record<string, ScenarioResult> };

const HERE = fileURLToPath(new URL(".", import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const RESULTS = join(REPO_ROOT, "bench", "results");
/** Where the scenarios are and where the results go (tests point both at a temporary folder). */
export type ScaleDirs = { scenarios: string; results: string };
const log = (message: string) => console.log(`[scale ${new Date().toISOString().slice(11, 19)}] ${message}`);

/** The scenario files, by name, in name order. */
export function scenarioFiles(dir = HERE): { name: string; path: string }[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts") && join(dir, file) !== SELF)
    .sort()
    .map((file) => ({ name: basename(file, ".ts"), path: join(dir, file) }));
}

/** Checks what a scenario returned: a flat record of numbers and strings. */
export function checkFigures(value: unknown): Figures {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`run() returned ${JSON.stringify(value)?.slice(0, 100)}, not a record of figures`);
  for (const [key, figure] of Object.entries(value)) {
    if (typeof figure !== "string" && !(typeof figure === "number")) throw new Error(`figure ${key} is ${JSON.stringify(figure)?.slice(0, 100)}: figures are numbers or strings`);
  }
  return value as Figures;
}

/** One scenario in a child process (this file with `--child <path>`): its figures, or why there are none; null when it is a helper. */
function runChild(path: string): Promise<{ helper: true } | { helper: false; figures: Figures | null; error: string | null }> {
  return new Promise((resolve) => {
    let answer: unknown = null;
    const child = fork(SELF, ["--child", path], { stdio: "inherit" });
    child.on("message", (message) => (answer = message));
    child.on("exit", (code, signal) => {
      const reply = answer as { helper?: boolean; figures?: unknown; error?: string } | null;
      if (reply?.helper) return resolve({ helper: true });
      if (reply && reply.error === undefined) {
        try {
          return resolve({ helper: false, figures: checkFigures(reply.figures), error: null });
        } catch (error) {
          return resolve({ helper: false, figures: null, error: String(error instanceof Error ? error.message : error) });
        }
      }
      resolve({ helper: false, figures: null, error: reply?.error ?? `the scenario's process ended (${signal ?? `exit ${code}`}) without figures` });
    });
  });
}

/** The child's side: import the scenario (its run-alone code is guarded by argv), run it, send the figures. */
async function child(path: string): Promise<void> {
  const send = (message: unknown) => new Promise<void>((resolve) => process.send!(message, () => resolve()));
  try {
    const module = (await import(pathToFileURL(path).href)) as { run?: unknown };
    if (typeof module.run !== "function") return await send({ helper: true });
    await send({ figures: await (module.run as () => Promise<unknown>)() });
  } catch (error) {
    await send({ error: error instanceof Error ? `${error.message}` : String(error) });
  }
}

function format(value: number | string): string {
  if (typeof value === "string") return value;
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return Math.abs(value) >= 100 ? value.toFixed(0) : Math.abs(value) >= 1 ? value.toFixed(2) : value.toPrecision(3);
}

export function markdown(results: ScaleResults): string {
  const m = results.machine;
  const lines = [`Scale scenarios (issue 23, \`npm run bench -- --scale\`), on ${m.cores} × ${m.cpu}, ${m.memory_gib} GiB, Node ${m.node}; each scenario in its own process against its own local stack (docs/scale.md says what each checks).`];
  for (const [name, result] of Object.entries(results.scenarios)) {
    lines.push("", `### ${name}`, "", `Measured ${result.measured_at.slice(0, 16).replace("T", " ")} UTC, ${format(result.wall_s)} s in all.`, "");
    if (result.error !== null) lines.push(`**Failed:** ${result.error}`);
    if (result.figures !== null) lines.push("| figure | value |", "|---|---:|", ...Object.entries(result.figures).map(([key, value]) => `| ${key} | ${format(value)} |`));
  }
  return `${lines.join("\n")}\n`;
}

/** Runs the scenarios (all, or those named), writes the results, and answers whether every one ran without error. */
export async function runScale(only: string[] | null = null, dirs: ScaleDirs = { scenarios: HERE, results: RESULTS }): Promise<boolean> {
  const files = scenarioFiles(dirs.scenarios);
  const unknown = (only ?? []).filter((name) => !files.some((file) => file.name === name));
  if (unknown.length > 0) throw new UsageError(`--only: no scenario ${unknown.join(", ")} (there are ${files.map((file) => file.name).join(", ")})`);
  const path = join(dirs.results, "scale.json");
  const previous = only !== null && existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as ScaleResults).scenarios : {};
  const scenarios: Record<string, ScenarioResult> = { ...previous };
  let allOk = true;
  for (const file of files.filter((f) => only === null || only.includes(f.name))) {
    log(`${file.name} ...`);
    const started = performance.now();
    const outcome = await runChild(file.path);
    if (outcome.helper) continue;
    const result: ScenarioResult = { measured_at: new Date().toISOString(), wall_s: (performance.now() - started) / 1000, figures: outcome.figures, error: outcome.error };
    scenarios[file.name] = result;
    allOk &&= result.error === null;
    log(`${file.name}: ${result.error === null ? `done in ${format(result.wall_s)} s` : `FAILED: ${result.error}`}`);
    // Written after each scenario: a long run that is stopped keeps what it measured.
    write(dirs.results, { machine: machine(), scenarios });
  }
  const results = { machine: machine(), scenarios };
  write(dirs.results, results);
  console.log(`\n${markdown(results)}\nWritten to bench/results/scale.json and scale.md.`);
  return allOk;
}

function machine() {
  return { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version, date: new Date().toISOString() };
}

function write(dir: string, results: ScaleResults): void {
  mkdirSync(dir, { recursive: true });
  const ordered = { ...results, scenarios: Object.fromEntries(Object.entries(results.scenarios).sort(([a], [b]) => a.localeCompare(b))) };
  writeFileSync(join(dir, "scale.json"), `${JSON.stringify(ordered, null, 2)}\n`);
  writeFileSync(join(dir, "scale.md"), markdown(ordered));
}

/** A mistake in the command line: printed as a sentence, not a stack. */
export class UsageError extends Error {}

/** The names after `--only`, or null. */
export function onlyArgument(argv: string[]): string[] | null {
  const at = argv.indexOf("--only");
  if (at === -1) return null;
  const names = (argv[at + 1] ?? "").split(",").filter(Boolean);
  if (names.length === 0) throw new UsageError("--only takes a comma-separated list of scale scenarios");
  return names;
}

/** `node bench/scale/run.ts [--only a,b]` and `npm run bench -- --scale`: exit 0 when every scenario ran, 1 when one failed, 2 on a usage mistake. */
export async function main(argv: string[]): Promise<number> {
  try {
    return (await runScale(onlyArgument(argv))) ? 0 : 1;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(error.message);
    return 2;
  }
}

if (process.argv[1] === SELF) {
  const at = process.argv.indexOf("--child");
  if (at !== -1) await child(process.argv[at + 1]!);
  else process.exitCode = await main(process.argv);
}
