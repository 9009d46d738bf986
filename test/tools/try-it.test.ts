import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadLocalSettings } from "../../tools/dev/settings.ts";
import { tryItBlock, WARNING_INTERVAL_TEXT } from "../../tools/dev/try-it.ts";
import { REPO_ROOT } from "../../tools/paths.ts";

/**
 * The README shows the "try it" block `npm start` prints (issue 22); this keeps the copy equal to
 * what tools/dev/try-it.ts prints with the embedded defaults, and the block's words true to the code.
 */
const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
const defaults = loadLocalSettings({ root: null, env: {} });
const url = (port: string) => `http://127.0.0.1:${port}`;
const printedWithDefaults = tryItBlock({
  ingestUrl: url(defaults.INGEST_PORT),
  billingUrl: url(defaults.BILLING_PORT),
  autumnUrl: url(defaults.AUTUMN_PORT),
  sinkUrl: url(defaults.SINK_PORT),
  adminToken: defaults.ADMIN_TOKEN,
  key: "tg_ik_...",
  org: "demo-org",
  gracePeriod: defaults.GRACE_PERIOD,
  parkRetention: defaults.PARK_RETENTION ?? "72h",
  minNotice: defaults.MIN_NOTICE,
  spansFile: ".wrangler/state/demo-spans.json",
  limitsOn: defaults.ENFORCE_LIMITS === "true",
});

describe("the README's try-it block", () => {
  it("is the block npm start prints with the embedded defaults", () => {
    const shown = /^The "try it" block, as printed[^\n]*\n\n```sh\n([\s\S]*?)\n```$/m.exec(readme)?.[1];
    expect(shown, "README.md has no try-it block after 'The \"try it\" block, as printed'").toBeDefined();
    expect(shown!.split("\n")).toEqual(printedWithDefaults);
  });

  it("pipes every curl reply but the admin poll through the one-line formatter", () => {
    const curls = printedWithDefaults.filter((line) => line.includes("curl ") && !line.includes("/admin/orgs/"));
    expect(curls.length).toBeGreaterThan(5);
    for (const line of curls) expect(line, line).toMatch(/curl -sS -w '\\n%\{http_code\}' .*\| node tools\/dev\/reply\.mjs(; sleep \d+; done)?$/);
  });

  it("says how often the overdue warning comes, as the ingest Worker's limiter has it", () => {
    const limiter = readFileSync(join(REPO_ROOT, "src/ingest/customer/warning-limiter.ts"), "utf8");
    const intervalMs = Number(/this\.intervalMs = options\.intervalMs \?\? ([\d_]+);/.exec(limiter)?.[1]?.replaceAll("_", ""));
    expect(intervalMs).toBe(60_000);
    expect(WARNING_INTERVAL_TEXT).toBe("a minute");
    expect(printedWithDefaults.join("\n")).toContain(`at most once ${WARNING_INTERVAL_TEXT} per org and isolate`);
  });

  it("waits for the parked batches before reading the sink's stats", () => {
    const wait = printedWithDefaults.findIndex((line) => line.includes('"waiting_batches":0'));
    const stats = printedWithDefaults.findIndex((line) => line.includes("/_control/stats"));
    const pay = printedWithDefaults.findIndex((line) => line.includes("/pay "));
    expect(pay).toBeGreaterThan(-1);
    expect(wait).toBeGreaterThan(pay);
    expect(stats).toBeGreaterThan(wait);
  });
});
