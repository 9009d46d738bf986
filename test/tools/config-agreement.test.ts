import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseEnv } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { unstable_getVarsForDev, unstable_readConfig } from "wrangler";
import { BILLING_VARS, envFileText, INGEST_VARS, LOCAL_DEFAULTS, loadLocalSettings, readWorkerSettingNames, WORKER_CONFIGS } from "../../tools/dev/settings.ts";
import { REPO_ROOT } from "../../tools/paths.ts";

/**
 * Every setting is named in five places: the Configuration tables (docs/configuration.md), each Worker's
 * wrangler config (`vars` and `secrets.required`), `.env.example`, the settings `npm start`
 * passes, and what `wrangler dev` lets through from an env file. Names are derived from
 * those sources, never listed here, so adding a setting consistently keeps this green.
 */
type Documented = { name: string; kind: string; defaultCell: string };
type Worker = keyof typeof WORKER_CONFIGS;
const WORKERS = Object.keys(WORKER_CONFIGS) as Worker[];

/** Where the Configuration tables live (moved out of the README, issue 22). */
const CONFIGURATION_DOC = join("docs", "configuration.md");

/** docs/configuration.md's tables: one per wrangler config, introduced by a line naming it in backticks, before the first `## `. */
function documentedSettings(): Record<string, Documented[]> {
  const doc = readFileSync(join(REPO_ROOT, CONFIGURATION_DOC), "utf8");
  const section = /^# Configuration\n([\s\S]*?)(?=^## )/m.exec(doc)?.[1];
  if (section === undefined) throw new Error(`${CONFIGURATION_DOC} has no "# Configuration" title followed by a "## " section`);
  const tables: Record<string, Documented[]> = {};
  let current: Documented[] | null = null;
  for (const line of section.split("\n")) {
    const intro = /\(`([^`]*wrangler\.jsonc)`\):\s*$/.exec(line);
    if (intro) tables[intro[1]!] = current = [];
    const row = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|/.exec(line);
    if (row && current) current.push({ name: row[1]!, kind: row[2]!, defaultCell: row[3]! });
  }
  return tables;
}

function wranglerConfig(worker: Worker) {
  return unstable_readConfig({ config: join(REPO_ROOT, WORKER_CONFIGS[worker]) }, { hideWarnings: true });
}

const documented = documentedSettings();
const tableOf = (worker: Worker) => documented[WORKER_CONFIGS[worker]] ?? [];
const settingNames = (worker: Worker) => tableOf(worker).filter((s) => s.kind === "var" || s.kind === "secret").map((s) => s.name);
const allSettingNames = () => new Set(WORKERS.flatMap(settingNames));
const passedByNpmStart: Record<Worker, readonly string[]> = { billing: BILLING_VARS, ingest: INGEST_VARS };

const scratch = mkdtempSync(join(tmpdir(), "tollgate-config-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A `.env` giving every documented setting of every Worker a value of its own. */
function dotEnvWithEverySetting(): { path: string; values: Record<string, string> } {
  const values = Object.fromEntries([...allSettingNames()].map((name) => [name, `from-dotenv-${name.toLowerCase()}`]));
  const path = join(scratch, ".env");
  writeFileSync(path, Object.entries(values).map(([name, value]) => `${name}=${value}`).join("\n") + "\n");
  return { path, values };
}

/** What `wrangler dev --config <worker's config> --env-file <file>` hands the Worker, computed by wrangler itself. */
function reachingTheWorker(worker: Worker, envFile: string): Record<string, unknown> {
  const config = wranglerConfig(worker);
  const bindings = unstable_getVarsForDev(config.userConfigPath, [envFile], config.vars, undefined, true, config.secrets);
  return Object.fromEntries(Object.entries(bindings).map(([name, binding]) => [name, (binding as { value: unknown }).value]));
}

describe("configuration names agree everywhere", () => {
  it("docs/configuration.md has a Configuration table for each Worker", () => {
    for (const worker of WORKERS) expect(tableOf(worker).length, `${CONFIGURATION_DOC} table for ${WORKER_CONFIGS[worker]}`).toBeGreaterThan(0);
    expect(Object.keys(documented).sort()).toEqual(Object.values(WORKER_CONFIGS).sort());
  });

  it.each(WORKERS)("the %s Worker's Configuration table lists exactly its config's vars and required secrets", (worker) => {
    const config = wranglerConfig(worker);
    const table = tableOf(worker);
    expect(table.filter((s) => !["var", "secret", "binding"].includes(s.kind))).toEqual([]);
    expect(table.filter((s) => s.kind === "var").map((s) => s.name).sort()).toEqual(Object.keys(config.vars).sort());
    expect(table.filter((s) => s.kind === "secret").map((s) => s.name).sort()).toEqual([...(config.secrets?.required ?? [])].sort());
    // Optional bindings are documented and shown, commented out, in the config.
    const configText = readFileSync(join(REPO_ROOT, WORKER_CONFIGS[worker]), "utf8");
    for (const binding of table.filter((s) => s.kind === "binding")) expect(configText).toContain(`"${binding.name}"`);
  });

  it.each(WORKERS)("the %s Worker's documented defaults are its config's var values", (worker) => {
    const vars = wranglerConfig(worker).vars as Record<string, unknown>;
    for (const setting of tableOf(worker).filter((s) => s.kind === "var")) {
      // Only a single literal such as `3d` is comparable; prose ("empty (off)", "placeholder") is not.
      const literal = /^`([^`]*)`$/.exec(setting.defaultCell)?.[1];
      if (literal !== undefined) expect(String(vars[setting.name]), setting.name).toBe(literal);
    }
  });

  it("tools/dev/settings.ts reads the wrangler configs as wrangler does", () => {
    for (const worker of WORKERS) {
      const config = wranglerConfig(worker);
      expect([...readWorkerSettingNames(join(REPO_ROOT, WORKER_CONFIGS[worker]))].sort()).toEqual([...Object.keys(config.vars), ...(config.secrets?.required ?? [])].sort());
    }
  });

  it(".env.example names every documented setting and the local stack's own settings, and nothing else", () => {
    const text = readFileSync(join(REPO_ROOT, ".env.example"), "utf8");
    const named = new Set([...text.matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
    const localOnly = Object.keys(LOCAL_DEFAULTS).filter((name) => !allSettingNames().has(name));
    expect([...named].sort()).toEqual([...new Set([...allSettingNames(), ...localOnly])].sort());
  });

  it("every embedded demo default is a documented setting or a local port", () => {
    for (const name of Object.keys(LOCAL_DEFAULTS)) expect(allSettingNames().has(name) || /_PORT$/.test(name), name).toBe(true);
  });

  it.each(WORKERS)("npm start passes the %s Worker every setting it declares", (worker) => {
    expect([...passedByNpmStart[worker]].sort()).toEqual(settingNames(worker).sort());
  });
});

describe("every documented setting in .env reaches its Worker", () => {
  it.each(WORKERS)("under a plain wrangler dev (the %s Worker's config and that .env)", (worker) => {
    const dotEnv = dotEnvWithEverySetting();
    const reached = reachingTheWorker(worker, dotEnv.path);
    for (const name of settingNames(worker)) {
      expect(Object.keys(reached), `${name} reaches the ${worker} Worker`).toContain(name);
      // wrangler also lets the process environment through; compare values only where it is silent.
      if (process.env[name] === undefined) expect(reached[name], name).toBe(dotEnv.values[name]);
    }
  });

  it.each(WORKERS)("under npm start (the env file it writes for the %s Worker)", (worker) => {
    const dotEnv = dotEnvWithEverySetting();
    const settings = loadLocalSettings({ root: scratch, env: {} });
    const written = join(scratch, `${worker}.env`);
    writeFileSync(written, envFileText(settings, passedByNpmStart[worker]));
    expect(parseEnv(readFileSync(written, "utf8"))).toEqual(Object.fromEntries(settingNames(worker).map((name) => [name, dotEnv.values[name]])));
    const reached = reachingTheWorker(worker, written);
    for (const name of settingNames(worker)) {
      expect(Object.keys(reached), `${name} reaches the ${worker} Worker`).toContain(name);
      if (process.env[name] === undefined) expect(reached[name], name).toBe(dotEnv.values[name]);
    }
  });

  it("npm start passes a setting missing from .env only when it has a demo default, so the config's own default applies otherwise", () => {
    const settings = loadLocalSettings({ root: null, env: {} });
    for (const [worker, names] of Object.entries(passedByNpmStart)) {
      const written = parseEnv(envFileText(settings, names));
      for (const name of Object.keys(written)) expect(name in LOCAL_DEFAULTS || name === "AUTUMN_API_URL" || name === "UPSTREAM_OTLP_URL", `${worker}: ${name}`).toBe(true);
    }
  });
});
