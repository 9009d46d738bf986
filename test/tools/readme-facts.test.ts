import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

describe("the README and docs agree with the code", () => {
  it("says how many failed attempts of a page fail a sweep (MAX_PAGE_ATTEMPTS)", () => {
    const attempts = Number(/export const MAX_PAGE_ATTEMPTS = (\d+);/.exec(read("src/billing/reconcile/sweeper.ts"))?.[1]);
    expect(attempts).toBeGreaterThan(0);
    const said = /A page that fails (\d+) times in a row/.exec(read("docs/reconciliation.md"))?.[1];
    expect(Number(said)).toBe(attempts);
  });
});
