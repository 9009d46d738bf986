import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HISTORY_KINDS, HISTORY_SOURCES } from "../../src/billing/org/record.ts";
import { OBJECT_KV_KEYS } from "../../src/billing/org/keys.ts";
import { R2_KEY_FORMATS } from "../../src/ingest/parking/keys.ts";
import { KV_KEY_FORMATS } from "../../src/shared/storage-keys.ts";
import { REPO_ROOT } from "../../tools/paths.ts";

/**
 * docs/storage.md cannot drift from the code (issue 19): every SQL table the code creates, every
 * KV key format, the object's key-value keys, every R2 key format, every history kind and source
 * is checked against the code's own lists, both ways where the doc lists them, and every source
 * path the doc names must exist.
 */

const doc = readFileSync(join(REPO_ROOT, "docs", "storage.md"), "utf8");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [path] : [];
  });
}

/** Every table the code's CREATE TABLE statements make. */
const codeTables = new Set(sourceFiles(join(REPO_ROOT, "src")).flatMap((file) => [...readFileSync(file, "utf8").matchAll(/CREATE TABLE (?:IF NOT EXISTS )?(\w+)/g)].map((match) => match[1]!)));

/** The first cell of every doc table row under a Durable Object's heading: `| \`name\` ...` (headers and key tables excluded by section). */
function docTables(): Set<string> {
  const names = new Set<string>();
  for (const section of doc.split(/^## /m).filter((part) => part.startsWith("Durable Object"))) {
    let inTableOfTables = false;
    for (const line of section.split("\n")) {
      if (/^\|\s*table\s*\|/.test(line)) inTableOfTables = true;
      else if (!line.startsWith("|")) inTableOfTables = false;
      const row = /^\|\s*`(\w+)`/.exec(line);
      if (inTableOfTables && row) names.add(row[1]!);
    }
  }
  return names;
}

/** A `label \`a\` / \`b\` / …` list in the doc's `history` row. */
function historyList(label: string): string[] {
  const row = doc.split("\n").find((line) => line.startsWith("| `history` |"));
  if (row === undefined) throw new Error("docs/storage.md has no `history` row");
  const list = new RegExp(`${label} ((?:\`\\w+\`(?: / )?)+)`).exec(row)?.[1];
  if (list === undefined) throw new Error(`the \`history\` row lists no ${label}s as "${label} \`a\` / \`b\`"`);
  return [...list.matchAll(/`(\w+)`/g)].map((match) => match[1]!);
}

describe("docs/storage.md against the code", () => {
  it("documents every SQL table the code creates, and no other", () => {
    expect([...docTables()].sort()).toEqual([...codeTables].sort());
  });

  it("documents every KV key format, and the object's key-value keys", () => {
    for (const format of [...KV_KEY_FORMATS, ...OBJECT_KV_KEYS]) expect(doc, format).toContain(`\`${format}\``);
  });

  it("documents every R2 key format", () => {
    for (const format of R2_KEY_FORMATS) expect(doc, format).toContain(`\`${format}`);
  });

  it("lists exactly the history kinds and sources the code has", () => {
    expect(historyList("kind").sort()).toEqual([...HISTORY_KINDS].sort());
    expect(historyList("source").sort()).toEqual([...HISTORY_SOURCES].sort());
  });

  it("names only source files that exist", () => {
    const paths = [...doc.matchAll(/`((?:src|tools)\/[\w./-]+\.ts)`/g)].map((match) => match[1]!);
    expect(paths.length).toBeGreaterThan(0);
    expect(paths.filter((path) => !existsSync(join(REPO_ROOT, path)))).toEqual([]);
  });
});
