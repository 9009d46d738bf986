import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, normalize, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../tools/paths.ts";

/**
 * The house's shape (issue 19): no module of `src/` reaches itself through its imports (type-only
 * imports included: a loop of types is still a loop a reader has to untangle), and the billing
 * Worker's folder keeps its parts in subfolders, with at most 4 files directly in it. On the ingest
 * side the request path runs one way: `request/` and the routes call `customer/`, `usage/` and
 * `parking/`, which never import `request/` back (an OTLP request visits `request/` once, in order).
 * `docs/architecture.md`'s webhook walk is held to the code: each module it names exists and is
 * imported by one named above it, and the path to the mirror write stays within 12 modules.
 */

const SRC = join(REPO_ROOT, "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.ts$/.test(name) && !name.endsWith(".d.ts") ? [path] : [];
  });
}

/** Relative imports and re-exports (static and dynamic) of one file, resolved to repository paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specifiers = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']|\bimport\s*\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)|(?:^|\n)\s*import\s*["'](\.{1,2}\/[^"']+)["']/g)];
  return specifiers.map((match) => normalize(join(dirname(file), (match[1] ?? match[2] ?? match[3])!)));
}

/** Every import cycle's files, in order (each cycle reported once, from its smallest path). */
function importCycles(files: string[]): string[][] {
  const graph = new Map(files.map((file) => [file, importsOf(file).filter((target) => target.endsWith(".ts"))]));
  const cycles = new Map<string, string[]>();
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === "open") {
        const cycle = stack.slice(stack.indexOf(next));
        const start = cycle.indexOf([...cycle].sort()[0]!);
        const rotated = [...cycle.slice(start), ...cycle.slice(0, start)].map((path) => relative(REPO_ROOT, path));
        cycles.set(rotated.join(" -> "), rotated);
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of files) if (!state.has(file)) visit(file);
  return [...cycles.values()];
}

/** Imports from a file under one of `from` into a file under `to` (folders relative to the repository), as "file -> target". */
function importsAcross(files: string[], from: string[], to: string): string[] {
  const under = (path: string, dir: string) => relative(REPO_ROOT, path).startsWith(`${dir}/`);
  return files
    .filter((file) => from.some((dir) => under(file, dir)))
    .flatMap((file) => importsOf(file).filter((target) => under(target, to)).map((target) => `${relative(REPO_ROOT, file)} -> ${relative(REPO_ROOT, target)}`));
}

describe("the layout of src/", () => {
  it("has no import cycles", () => {
    expect(importCycles(sourceFiles(SRC)).map((cycle) => cycle.join(" -> "))).toEqual([]);
  });

  it("finds a cycle when there is one (the check itself works)", () => {
    const dir = mkdtempSync(join(tmpdir(), "layout-"));
    try {
      writeFileSync(join(dir, "a.ts"), 'import type { B } from "./b.ts";\nexport type A = B;\n');
      writeFileSync(join(dir, "b.ts"), 'export { c } from "./c.ts";\nexport type B = number;\n');
      writeFileSync(join(dir, "c.ts"), 'export const c = () => import("./a.ts");\n');
      writeFileSync(join(dir, "d.ts"), 'import "./a.ts";\n');
      const cycles = importCycles(sourceFiles(dir));
      expect(cycles.map((cycle) => cycle.map((path) => path.slice(-4)))).toEqual([["a.ts", "b.ts", "c.ts"].map((name) => name.padStart(4, "/"))]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps the ingest request path one way: customer/, usage/ and parking/ never import request/", () => {
    const leaves = ["src/ingest/customer", "src/ingest/usage", "src/ingest/parking"];
    expect(importsAcross(sourceFiles(SRC), leaves, "src/ingest/request")).toEqual([]);
    // The check itself works: request/ does import customer/ (admit.ts's refusals).
    expect(importsAcross(sourceFiles(SRC), ["src/ingest/request"], "src/ingest/customer")).not.toEqual([]);
  });

  it("keeps at most 4 files directly in src/billing/ (the Worker's entry, its settings, and at most two more)", () => {
    const top = readdirSync(join(SRC, "billing")).filter((name) => statSync(join(SRC, "billing", name)).isFile());
    expect(top.length, `directly in src/billing/: ${top.join(", ")}`).toBeLessThanOrEqual(4);
    expect(top).toEqual(expect.arrayContaining(["worker.ts", "config.ts"]));
  });
});

/**
 * `docs/architecture.md`'s webhook table, as [module, row text] in order: the module in the
 * second cell, with " again" rows included (a module visited a second time).
 */
function webhookRows(doc: string): { module: string; text: string }[] {
  const section = doc.split(/^## /m).find((part) => part.startsWith("One Autumn webhook"));
  if (section === undefined) throw new Error('docs/architecture.md has no "## One Autumn webhook" section');
  return section
    .split("\n")
    .map((line) => /^\|\s*(?:\d+|—)\s*\|\s*`([^`]+)`(?: again)?\s*\|(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ module: match[1]!, text: match[2]! }));
}

/** The distinct modules of the rows up to and including the first whose text names `marker`. */
function modulesUpTo(rows: { module: string; text: string }[], marker: string): string[] {
  const end = rows.findIndex((row) => row.text.includes(marker));
  if (end < 0) throw new Error(`no row of the webhook table names ${marker}`);
  return [...new Set(rows.slice(0, end + 1).map((row) => row.module))];
}

describe("docs/architecture.md's webhook path against the code", () => {
  const doc = readFileSync(join(REPO_ROOT, "docs", "architecture.md"), "utf8");
  const rows = webhookRows(doc);

  it("names modules that exist, each reached through an import of a module on an earlier row", () => {
    expect(rows.length).toBeGreaterThan(0);
    for (const [i, row] of rows.entries()) {
      expect(statSync(join(REPO_ROOT, row.module)).isFile(), row.module).toBe(true);
      if (i === 0) continue;
      const earlier = new Set(rows.slice(0, i).map((before) => before.module));
      const importers = [...earlier].filter((module) => importsOf(join(REPO_ROOT, module)).some((target) => relative(REPO_ROOT, target) === row.module));
      // A row revisiting a module needs no importer: control came back to it.
      if (!earlier.has(row.module)) expect(importers, `row ${i + 1}, ${row.module}: imported by no module above it`).not.toEqual([]);
    }
  });

  it("visits at most 12 modules from fetch to the BILLING_STATE.put, and says how many", () => {
    const toPut = modulesUpTo(rows, "BILLING_STATE.put");
    expect(toPut.length, toPut.join(", ")).toBeLessThanOrEqual(12);
    expect(doc).toContain(`**Count: ${toPut.length} modules** from \`fetch\` to the \`BILLING_STATE.put\` itself, **${new Set(rows.map((row) => row.module)).size}** with the index upsert`);
  });

  it("counts a revisited module once (the check itself works)", () => {
    const sample = "## One Autumn webhook\n| 1 | `a.ts` | x |\n| 2 | `b.ts` | y |\n| — | `a.ts` again | `BILLING_STATE.put` |\n| 3 | `c.ts` | z |\n## Next\n| 9 | `d.ts` | w |\n";
    const sampleRows = webhookRows(sample);
    expect(sampleRows.map((row) => row.module)).toEqual(["a.ts", "b.ts", "a.ts", "c.ts"]);
    expect(modulesUpTo(sampleRows, "BILLING_STATE.put")).toEqual(["a.ts", "b.ts"]);
  });
});
