import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkFigures, runScale, UsageError, type ScenarioResult } from "../../bench/scale/run.ts";

/**
 * The scale runner (`npm run bench -- --scale`) runs whatever scenario files exist, each in its own process: a file
 * exporting run() is a scenario, one without is a helper and skipped; a scenario that throws or returns something
 * other than flat figures is reported as failed without stopping the others; `--only` keeps the other results.
 */
let dir: string;
const scenarios = () => join(dir, "scenarios");
const results = () => join(dir, "results");
const read = () => JSON.parse(readFileSync(join(results(), "scale.json"), "utf8")) as { scenarios: Record<string, ScenarioResult> };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "scale-runner-"));
  const files: Record<string, string> = {
    "alpha.ts": `export async function run() { return { first_page_ms: 12.5, orgs: 100000, note: "fine" }; }`,
    "helper.ts": `export const shared = 1;`,
    "broken.ts": `export async function run() { throw new Error("the stack did not start"); }`,
    "nested.ts": `export async function run() { return { latency: { p50: 1 } }; }`,
  };
  mkdirSync(scenarios(), { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(scenarios(), name), text);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the scale runner", () => {
  it("runs every scenario file, skips helpers, and reports failures beside the figures", { timeout: 60_000 }, async () => {
    expect(await runScale(null, { scenarios: scenarios(), results: results() })).toBe(false);
    const written = read().scenarios;
    expect(Object.keys(written)).toEqual(["alpha", "broken", "nested"]);
    expect(written.alpha).toMatchObject({ figures: { first_page_ms: 12.5, orgs: 100000, note: "fine" }, error: null });
    expect(written.broken).toMatchObject({ figures: null, error: "the stack did not start" });
    expect(written.nested!.figures).toBeNull();
    expect(written.nested!.error).toContain("latency");
    const table = readFileSync(join(results(), "scale.md"), "utf8");
    expect(table).toContain("### alpha");
    expect(table).toContain("| first_page_ms | 12.50 |");
    expect(table).toContain("| orgs | 100,000 |");
    expect(table).toContain("**Failed:** the stack did not start");
  });

  it("--only runs the named ones and keeps the others' last results; an unknown name is a usage mistake", { timeout: 60_000 }, async () => {
    const before = read().scenarios;
    writeFileSync(join(scenarios(), "broken.ts"), `export async function run() { return { fixed: 1 }; }`);
    expect(await runScale(["broken"], { scenarios: scenarios(), results: results() })).toBe(true);
    const after = read().scenarios;
    expect(after.broken).toMatchObject({ figures: { fixed: 1 }, error: null });
    expect(after.alpha).toEqual(before.alpha);
    expect(after.nested).toEqual(before.nested);
    await expect(runScale(["nope"], { scenarios: scenarios(), results: results() })).rejects.toBeInstanceOf(UsageError);
  });

  it("takes only flat records of numbers and strings as figures", () => {
    expect(checkFigures({ a: 1, b: "x" })).toEqual({ a: 1, b: "x" });
    for (const bad of [null, [], 5, { a: { b: 1 } }, { a: [1] }, { a: true }]) expect(() => checkFigures(bad)).toThrow();
  });
});
