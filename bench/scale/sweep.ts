import { fileURLToPath } from "node:url";
import { workerdRssMib } from "../proc.ts";
import { benchSetup, startBenchRuntime } from "../runtime.ts";
import { http, logger, pool, rssMib, startStandInProcess } from "./support/stack.ts";

/**
 * Scale scenario (issue 23): one reconciliation sweep over a million Autumn customers. The stand-in
 * (its own process) is seeded in bulk: SCALE_SWEEP_PAST_DUE of them past due, none of which Tollgate
 * has heard of (lost webhooks); and SCALE_SWEEP_MISSING orgs Tollgate holds overdue (told by signed
 * webhooks) that are then deleted from Autumn, so the listing never shows them. The bar
 * (docs/scale.md, Reconciler): Autumn calls = ceil(customers / 1,000) list pages + per-customer reads
 * of disagreeing customers only; object calls = one per disagreeing org.
 * Sizes can be lowered by environment for a trial run; the scenario is a million.
 */
const CUSTOMERS = Number(process.env.SCALE_SWEEP_CUSTOMERS ?? 1_000_000);
const PAST_DUE = Number(process.env.SCALE_SWEEP_PAST_DUE ?? Math.round(CUSTOMERS / 100));
const MISSING = Number(process.env.SCALE_SWEEP_MISSING ?? Math.round(CUSTOMERS / 1_000));
const BASE_PORT = Number(process.env.SCALE_SWEEP_PORT ?? 31_787);
/** A sweep still running then is a failure, not a figure. */
const TIMEOUT_MS = Number(process.env.SCALE_SWEEP_TIMEOUT_MS ?? 90 * 60_000);
/** customers.list page size the sweeper asks for (src/billing/reconcile/sweeper.ts PAGE_SIZE). */
const PAGE = 1_000;

type SweepView = {
  id: string;
  status: string;
  started_at: string;
  finished_at: string | null;
  pages: number;
  customers_seen: number;
  orgs_handed_over: Record<string, number>;
  hand_over_failures: number;
  autumn_calls: number;
  object_calls: number;
  index_calls: number;
  error_count: number;
  errors: { message: string }[];
};

export async function run(): Promise<Record<string, number | string>> {
  const log = logger("sweep");
  const { settings, persistDir } = benchSetup(BASE_PORT, "scale-sweep");
  const standIn = await startStandInProcess(BASE_PORT + 20, settings.AUTUMN_SECRET_KEY);
  // The Workers read the stand-in in its own process; the bench runtime's in-process one stays empty.
  settings.AUTUMN_API_URL = standIn.url;
  const peak = { standIn: 0, workerd: 0 };
  const sample = () => {
    peak.standIn = Math.max(peak.standIn, rssMib(standIn.process.pid!));
    peak.workerd = Math.max(peak.workerd, workerdRssMib());
  };
  const sampler = setInterval(sample, 500);
  let stack: Awaited<ReturnType<typeof startBenchRuntime>> | null = null;
  try {
    log("bundling the Workers and starting the runtime ...");
    stack = await startBenchRuntime(settings, persistDir);
    const { admin, control, webhook } = http(settings, stack.billingUrl, standIn.url);
    const before = await admin("GET", "/reconcile");
    if (before.status !== 404) throw new Error(`a sweep exists before the scenario started one: ${before.status}`);

    log(`seeding ${CUSTOMERS.toLocaleString("en")} customers, ${PAST_DUE.toLocaleString("en")} past due ...`);
    let started = performance.now();
    const seeded = await control<{ created: number; past_due_ids: string[] }>("POST", "/seed", { count: CUSTOMERS, past_due: PAST_DUE, prefix: "scale-" });
    const seedS = (performance.now() - started) / 1000;
    sample();
    const standInAfterSeed = rssMib(standIn.process.pid!);
    if (seeded.created !== CUSTOMERS || seeded.past_due_ids.length !== PAST_DUE) throw new Error(`seed: ${seeded.created} created, ${seeded.past_due_ids.length} past due`);

    // Orgs Tollgate holds overdue that Autumn no longer has: past due (a day ago, in grace), told by webhook, then deleted.
    log(`${MISSING.toLocaleString("en")} orgs overdue in Tollgate, then deleted from Autumn ...`);
    started = performance.now();
    const missing = Array.from({ length: MISSING }, (_, i) => `gone-${String(i).padStart(5, "0")}`);
    const notProcessed: string[] = [];
    await pool(missing, 16, async (org) => {
      await control("POST", "/customers", { id: org });
      await control("POST", `/customers/${org}/past-due`, { at: Date.now() - 86_400_000 });
      const answer = await webhook(org);
      if (answer !== "processed") notProcessed.push(`${org}: ${answer}`);
      await control("DELETE", `/customers/${org}`);
    });
    if (notProcessed.length > 0) throw new Error(`setup webhooks not processed: ${notProcessed.slice(0, 3).join("; ")}`);
    const setupMissingS = (performance.now() - started) / 1000;

    await control("DELETE", "/stats");
    await control("DELETE", "/calls");
    log("sweeping ...");
    started = performance.now();
    const start = await admin("POST", "/reconcile");
    let view = (await start.json()) as SweepView & { started: boolean };
    if (start.status !== 202 || !view.started) throw new Error(`POST /admin/reconcile did not start a sweep: ${start.status} ${JSON.stringify(view)}`);
    const sweepId = view.id;
    let lastLog = performance.now();
    while (view.status === "running") {
      if (performance.now() - started > TIMEOUT_MS) throw new Error(`the sweep still runs after ${TIMEOUT_MS / 1000} s: ${view.pages} pages`);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      view = (await (await admin("GET", "/reconcile")).json()) as SweepView & { started: boolean };
      if (performance.now() - lastLog > 30_000) {
        lastLog = performance.now();
        log(`... ${view.pages} pages, ${view.customers_seen.toLocaleString("en")} customers, handed over ${JSON.stringify(view.orgs_handed_over)}`);
      }
    }
    const wallS = (performance.now() - started) / 1000;
    if (view.id !== sweepId) throw new Error(`another sweep ran meanwhile: ${view.id}`);

    const stats = await control<{ paths: Record<string, { total: number }> }>("GET", "/stats");
    const { customers: byCustomer } = await control<{ customers: Record<string, Record<string, number>> }>("GET", "/stats/customers");
    const pastDueSet = new Set(seeded.past_due_ids);
    const missingSet = new Set(missing);
    const calls = { past_due: 0, missing: 0, agreeing: 0 };
    let agreeingCustomers = 0;
    for (const [customer, paths] of Object.entries(byCustomer)) {
      const n = Object.values(paths).reduce((a, b) => a + b, 0);
      if (pastDueSet.has(customer)) calls.past_due += n;
      else if (missingSet.has(customer)) calls.missing += n;
      else (calls.agreeing += n), agreeingCustomers++;
    }
    const path = (p: string) => stats.paths[p]?.total ?? 0;
    const listCalls = path("/v1/customers.list");
    const perCustomerPaths = Object.keys(stats.paths).filter((p) => p !== "/v1/customers.list");
    const perCustomerCalls = perCustomerPaths.reduce((sum, p) => sum + path(p), 0);

    log("checking every org's state ...");
    let pastDueNotOverdue = 0;
    let missingChanged = 0;
    await pool([...seeded.past_due_ids, ...missing], 16, async (org) => {
      const state = ((await (await admin("GET", `/orgs/${org}`)).json()) as { state: string }).state;
      if (state !== "overdue") pastDueSet.has(org) ? pastDueNotOverdue++ : missingChanged++;
    });
    sample();

    const expectedPages = Math.ceil(CUSTOMERS / PAGE);
    const failures = [
      view.status !== "finished" && `status ${view.status}`,
      listCalls !== expectedPages && `${listCalls} list pages, expected ${expectedPages}`,
      calls.agreeing !== 0 && `${calls.agreeing} calls for ${agreeingCustomers} agreeing customers`,
      perCustomerCalls !== calls.past_due + calls.missing && `${perCustomerCalls - calls.past_due - calls.missing} per-customer calls named no disagreeing customer`,
      view.orgs_handed_over.unknown_past_due !== PAST_DUE && `${view.orgs_handed_over.unknown_past_due} unknown past due handed over of ${PAST_DUE}`,
      view.orgs_handed_over.missing_from_autumn !== MISSING && `${view.orgs_handed_over.missing_from_autumn} missing handed over of ${MISSING}`,
      view.object_calls !== PAST_DUE + MISSING && `${view.object_calls} org object calls, expected ${PAST_DUE + MISSING}`,
      view.index_calls !== view.pages + 2 && `${view.index_calls} index calls, expected pages + 2 = ${view.pages + 2}`,
      pastDueNotOverdue !== 0 && `${pastDueNotOverdue} past-due orgs not overdue after`,
    ].filter((failure): failure is string => typeof failure === "string");
    const sweepS = view.finished_at === null ? wallS : (Date.parse(view.finished_at) - Date.parse(view.started_at)) / 1000;
    const figures = {
      customers: CUSTOMERS,
      past_due_unknown_to_tollgate: PAST_DUE,
      held_missing_from_autumn: MISSING,
      seed_s: seedS,
      setup_missing_orgs_s: setupMissingS,
      sweep_status: view.status,
      sweep_wall_s: wallS,
      sweep_s: sweepS,
      pages: view.pages,
      customers_seen: view.customers_seen,
      ms_per_listed_customer: (sweepS * 1000) / Math.max(1, view.customers_seen),
      handed_over_unknown_past_due: view.orgs_handed_over.unknown_past_due ?? 0,
      handed_over_missing_from_autumn: view.orgs_handed_over.missing_from_autumn ?? 0,
      handed_over_other: Object.entries(view.orgs_handed_over).reduce((sum, [kind, n]) => sum + (["unknown_past_due", "missing_from_autumn"].includes(kind) ? 0 : n), 0),
      hand_over_failures: view.hand_over_failures,
      sweep_errors: view.error_count,
      autumn_calls_total: stats.paths ? Object.values(stats.paths).reduce((sum, s) => sum + s.total, 0) : 0,
      autumn_customers_list_pages: listCalls,
      autumn_customers_get: path("/v1/customers.get"),
      autumn_invoices_list: path("/v1/invoices.list"),
      autumn_other_calls: perCustomerCalls - path("/v1/customers.get") - path("/v1/invoices.list"),
      per_customer_calls_past_due_orgs: calls.past_due,
      per_customer_calls_missing_orgs: calls.missing,
      per_customer_calls_agreeing_customers: calls.agreeing,
      sweeper_counted_autumn_calls: view.autumn_calls,
      org_object_calls: view.object_calls,
      index_calls: view.index_calls,
      past_due_orgs_not_overdue_after: pastDueNotOverdue,
      missing_orgs_state_changed: missingChanged,
      standin_rss_after_seed_mib: standInAfterSeed,
      peak_rss_standin_mib: peak.standIn,
      peak_rss_workerd_mib: peak.workerd,
      bar: failures.length === 0 ? `met: ${expectedPages} pages + per-customer reads of the ${(PAST_DUE + MISSING).toLocaleString("en")} disagreeing orgs only` : `NOT met: ${failures.join("; ")}`,
    };
    log(JSON.stringify(figures));
    return figures;
  } finally {
    clearInterval(sampler);
    await stack?.stop();
    await standIn.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(JSON.stringify(await run(), null, 2));
