import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../tools/paths.ts";
import { autumnControl, newCustomer, orgState, stack, waitFor } from "./stack.ts";

/**
 * The operator console in a real browser (Debian's Chromium, driven by playwright-core):
 * log in, find a suspended org, read its timeline, exempt it with a note, see it restored.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DOCS = join(REPO_ROOT, "docs");

let browser: Browser;
beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 60_000);
afterAll(() => browser?.close());

describe("the operator console", () => {
  it("explains a suspended org from the overview and lifts it with a note", { timeout: 60_000 }, async () => {
    // A few orgs, so the overview has something to show.
    const suspended = `acme_${Math.random().toString(36).slice(2, 7)}`;
    await newCustomer(suspended);
    await autumnControl(`/customers/${suspended}/past-due`, { at: Date.now() - 2 * stack.gracePeriodMs });
    const lapsed = `globex_${Math.random().toString(36).slice(2, 7)}`;
    await newCustomer(lapsed);
    await autumnControl(`/customers/${lapsed}/invoices`, { status: "paid", total: 99, created_at: Date.now() - 40 * 86_400_000 });
    await autumnControl(`/customers/${lapsed}/past-due`);
    // Seen past its grace period: suspended once the minimum notice (1 s here) is over.
    await waitFor("suspension after the minimum notice", () => orgState(suspended), (s) => s.state === "suspended", 10_000);

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${stack.billingUrl}/admin`);
    expect(page.url()).toBe(`${stack.billingUrl}/admin/login`);
    await page.fill("#token", stack.adminToken);
    await page.click("button[type=submit]");
    await page.waitForURL(`${stack.billingUrl}/admin`);

    const row = page.locator("section", { hasText: "Recently suspended" }).locator("tr", { hasText: suspended });
    await expect.poll(() => row.count()).toBe(1);
    expect(await row.textContent()).toContain("never paid");
    mkdirSync(DOCS, { recursive: true });
    await page.screenshot({ path: join(DOCS, "console-overview.png"), fullPage: true });

    await row.locator("a").click();
    await page.waitForURL(`${stack.billingUrl}/admin/org/${suspended}`);
    expect(await page.locator("h1 .badge").textContent()).toBe("Suspended");
    const timeline = page.locator("ol.timeline li");
    expect(await timeline.first().textContent()).toMatch(/overdue\s*→\s*suspended\s*grace_elapsed_never_paid/i);
    expect(await page.locator("text=never (no paid invoice with money)").count()).toBe(1);
    // The countdown script runs: relative times are rendered live (the page also reads without it).
    await expect.poll(() => page.evaluate(() => document.querySelectorAll("script[src='/admin/assets/console.js']").length)).toBe(1);
    await page.screenshot({ path: join(DOCS, "console-org.png"), fullPage: true });

    await page.selectOption("#action", "exempt");
    await page.fill("#note", "Ticket 4411: paying by wire this week");
    await page.click("form.override button[type=submit]");
    await page.waitForURL(`${stack.billingUrl}/admin/org/${suspended}?done=override`);
    expect(await page.locator("h1 .badge").textContent()).toBe("Overdue");
    expect(await page.locator("[role=status]").textContent()).toContain("Override applied");
    expect(await timeline.nth(0).textContent()).toMatch(/suspended\s*→\s*overdue\s*exempt/i);
    expect(await timeline.nth(0).textContent()).toContain("Ticket 4411: paying by wire this week");
    expect(await timeline.nth(1).textContent()).toContain("override exempt");
    expect(await orgState(suspended)).toMatchObject({ state: "overdue", reason: "exempt" });
    await page.close();
  });
});
