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
