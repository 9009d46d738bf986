import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../tools/paths.ts";
import { OTLP_JSON } from "../ingest/fixtures/otlp.ts";
import { admin, autumnControl, mintKey, newCustomer, orgState, stack, waitFor } from "./stack.ts";

/**
 * The operator console in a real browser (Debian's Chromium, driven by playwright-core):
 * log in, find a suspended org, read its timeline, exempt it with a note, see it restored.
 * Every page is looked at on a laptop (1280 px) and a phone (390 px): the screenshots in docs/
 * are this test's, and a phone must never have to scroll sideways.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DOCS = join(REPO_ROOT, "docs");
const LAPTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

/** Screenshots at both widths (the phone's named -390), and no horizontal overflow on the phone. */
async function lookAtBothWidths(page: Page, name: string): Promise<void> {
  mkdirSync(DOCS, { recursive: true });
  await page.setViewportSize(LAPTOP);
  await page.screenshot({ path: join(DOCS, `${name}.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  expect(await page.evaluate(() => document.documentElement.scrollWidth), `${name} at 390 px`).toBeLessThanOrEqual(PHONE.width);
  // "Sign out" stays in the header, in view.
  const signOut = await page.locator("form.sign-out button").boundingBox();
  expect(signOut!.x + signOut!.width).toBeLessThanOrEqual(PHONE.width);
  await page.screenshot({ path: join(DOCS, `${name}-390.png`), fullPage: true });
  await page.setViewportSize(LAPTOP);
}

/** Signed in, on the overview. */
async function signIn(page: Page): Promise<void> {
  await page.goto(`${stack.billingUrl}/admin/login`);
  await page.fill("#token", stack.adminToken);
  await page.click("button[type=submit]");
  await page.waitForURL(`${stack.billingUrl}/admin`);
}

/** One OTLP/JSON export with the org's key: its status. */
async function exportTraces(key: string): Promise<number> {
  const response = await fetch(`${stack.ingestUrl}/v1/traces`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });
  await response.arrayBuffer();
  return response.status;
}

type Activity = { hours: { hour: string; accepted: number; refused: number; would_refuse: number; parked: number }[] };
const summed = (activity: Activity) => activity.hours.reduce((sum, h) => ({ accepted: sum.accepted + h.accepted, parked: sum.parked + h.parked }), { accepted: 0, parked: 0 });

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
    await lookAtBothWidths(page, "console-overview");

    await row.locator("a").click();
    await page.waitForURL(`${stack.billingUrl}/admin/org/${suspended}`);
    expect(await page.locator("h1 .badge").textContent()).toBe("Suspended");
    const timeline = page.locator("ol.timeline li");
    expect(await timeline.first().textContent()).toMatch(/overdue\s*→\s*suspended\s*grace_elapsed_never_paid/i);
    expect(await page.locator("text=never (no paid invoice with money)").count()).toBe(1);
    // The script runs: every relative time ticks, not only a deadline's countdown (the page also reads without it).
    await expect.poll(() => page.evaluate(() => document.querySelectorAll("script[src='/admin/assets/console.js']").length)).toBe(1);
    const lastRead = page.locator("dt:text-is('Last read from Autumn') + dd");
    expect(await lastRead.textContent()).toMatch(/ago: succeeded$/);
    const lastReadTime = lastRead.locator("time");
    const shown = await lastReadTime.textContent();
    await expect.poll(() => lastReadTime.textContent(), { timeout: 5_000 }).not.toBe(shown);
    const graceEnds = page.locator("dt:text-is('Grace period ends') + dd time");
    const graceShown = await graceEnds.textContent();
    await expect.poll(() => graceEnds.textContent(), { timeout: 5_000 }).not.toBe(graceShown);
    // Every page has its icon.
    expect(await page.locator("link[rel=icon]").getAttribute("href")).toBe("/favicon.ico");
    const icon = await page.request.get(`${stack.billingUrl}/favicon.ico`);
    expect([icon.status(), icon.headers()["content-type"]]).toEqual([200, "image/svg+xml"]);
    await lookAtBothWidths(page, "console-org");

    // The API's address in a signed-in browser shows the console's page, not a JSON 401.
    await page.goto(`${stack.billingUrl}/admin/orgs/${suspended}`);
    expect(page.url()).toBe(`${stack.billingUrl}/admin/org/${suspended}`);

    await page.selectOption("#action", "exempt");
    // The end is typed in UTC, whatever the browser's time zone.
    const until = `${new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 16)}Z`;
    await page.fill("#until", until);
    await page.fill("#note", "Ticket 4411: paying by wire this week");
    await page.click("form.override button[type=submit]");
    await page.waitForURL(`${stack.billingUrl}/admin/org/${suspended}?done=override`);
    expect(await page.locator("h1 .badge").textContent()).toBe("Overdue");
    expect(await page.locator("[role=status]").textContent()).toContain("Override applied");
    expect(await timeline.nth(0).textContent()).toMatch(/suspended\s*→\s*overdue\s*exempt/i);
    expect(await timeline.nth(0).textContent()).toContain("Ticket 4411: paying by wire this week");
    expect(await timeline.nth(1).textContent()).toContain("override exempt");
    expect(await orgState(suspended)).toMatchObject({ state: "overdue", reason: "exempt", override: { until: `${until.slice(0, 16)}:00.000Z` } });
    // While exempt: its end and the deadline that applies then, no running deadline.
    const exempt = await page.locator("dt:text-is('Exempt') + dd").textContent();
    expect(exempt).toContain(`until ${until.slice(0, 10)} ${until.slice(11, 16)} UTC`);
    expect(exempt).toMatch(/then the deadline \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC applies/);
    expect(await page.locator("dt:text-is('Suspension deadline')").count()).toBe(0);
    await lookAtBothWidths(page, "console-org-exempt");
    await page.close();
  });

  it("draws an org's story: data accepted, the org overdue, then suspended with its data parked (issue 21)", { timeout: 90_000 }, async () => {
    const org = `initech_${Math.random().toString(36).slice(2, 7)}`;
    await newCustomer(org);
    const key = await mintKey(org);
    let accepted = 0;
    for (let i = 0; i < 6; i++, accepted++) expect(await exportTraces(key)).toBe(200);
    // Past due from now: overdue through the grace period (4 s here), exports still accepted, then suspended.
    await autumnControl(`/customers/${org}/past-due`);
    await waitFor("overdue", () => orgState(org), (s) => s.state === "overdue", 10_000);
    for (let i = 0; i < 3; i++, accepted++) expect(await exportTraces(key)).toBe(200);
    await waitFor("suspension after the grace period", () => orgState(org), (s) => s.state === "suspended", 20_000);
    // The edge hears of it within its cache's bound (docs/policy.md): accepted until then.
    await waitFor("the first 402", async () => { const status = await exportTraces(key); if (status === 200) accepted++; return status; }, (status) => status === 402, 40_000);
    // Suspended with parking on (the local stack's): each export is kept, and answered 402 saying so.
    for (let i = 0; i < 3; i++) expect(await exportTraces(key)).toBe(402);
    // The counts reach the org's object through the usage queue.
    await waitFor("the activity counted", async () => summed((await admin<{ activity: Activity }>("GET", `/orgs/${org}`)).body.activity), (sum) => sum.accepted === accepted && sum.parked === 4, 20_000);

    const page = await browser.newPage({ viewport: LAPTOP });
    await signIn(page);
    await page.goto(`${stack.billingUrl}/admin/org/${org}`);
    const chart = page.locator("#activity");
    // The 30 days and the last 24 hours: each with the accepted and parked data, and the overdue and suspended periods behind.
    expect(await chart.locator("svg").count()).toBe(2);
    for (const selector of ["path.layer.accepted", "path.layer.parked", "rect.period.overdue", "rect.period.suspended"]) {
      expect(await chart.locator(`svg ${selector}`).count(), selector).toBe(2);
    }
    // The local stack meters (tools/dev/settings.ts): items of what went upstream, requests of what did not, each row naming its unit.
    const row = (label: string) => chart.locator("table.chart-table tr", { has: page.locator(`th:text-is("${label}")`) }).locator("td").allTextContents();
    expect(await row("Parked, requests")).toEqual(["4", "4"]);
    expect(await row("Accepted, requests")).toEqual([String(accepted), String(accepted)]);
    // One span per export.
    expect(await row("Accepted, items")).toEqual([String(accepted), String(accepted)]);
    expect(await chart.locator("ul.periods li").allTextContents()).toEqual([expect.stringMatching(/^Overdue: /), expect.stringMatching(/^Suspended: .* to now$/)]);
    // Read without JavaScript or sight: each drawing has its title and description.
    expect(await chart.locator("svg desc").first().textContent()).toMatch(new RegExp(`^accepted ${accepted} items in ${accepted} requests, refused 0 requests, would be refused 0 items in 0 requests, parked 4 requests in the last 30 days; overdue from .+; suspended from .+ to now\\.$`));
    await lookAtBothWidths(page, "console-org-chart");
    await chart.screenshot({ path: join(DOCS, "console-chart.png") });
    await page.setViewportSize(PHONE);
    await chart.screenshot({ path: join(DOCS, "console-chart-390.png") });
    await page.close();
  });
});

