import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");
const ROOT = new URL("../../", import.meta.url).pathname;

describe("the README and docs agree with the code", () => {
  it("says how many failed attempts of a page fail a sweep (MAX_PAGE_ATTEMPTS)", () => {
    const attempts = Number(/export const MAX_PAGE_ATTEMPTS = (\d+);/.exec(read("src/billing/reconcile/sweeper.ts"))?.[1]);
    expect(attempts).toBeGreaterThan(0);
    const said = /A page that fails (\d+) times in a row/.exec(read("docs/reconciliation.md"))?.[1];
    expect(Number(said)).toBe(attempts);
  });
});

describe("the README fits on a screen and its links lead somewhere (issue 22)", () => {
  it("is under 250 lines", () => {
    expect(read("README.md").split("\n").length).toBeLessThan(250);
  });

  it("links every page under docs/", () => {
    const readme = read("README.md");
    for (const page of readdirSync(join(ROOT, "docs")).filter((name) => name.endsWith(".md"))) expect(readme, page).toContain(`](docs/${page}`);
  });

  it("has no relative link, in the README or under docs/, to a file that does not exist", () => {
    const documents = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((name) => name.endsWith(".md")).map((name) => `docs/${name}`)];
    const broken: string[] = [];
    let checked = 0;
    for (const document of documents) {
      for (const [, target] of read(document).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // https:, mailto:
        checked++;
        if (!existsSync(join(ROOT, dirname(document), target!))) broken.push(`${document} → ${target}`);
      }
    }
    expect(checked).toBeGreaterThan(20);
    expect(broken).toEqual([]);
  });
});
