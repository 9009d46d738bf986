import { fileURLToPath } from "node:url";
import { workerdRssMib } from "../proc.ts";
import { benchSetup, startBenchRuntime } from "../runtime.ts";
import { http, logger, pool } from "./support/stack.ts";

/**
 * Scale scenario (issue 23): a burst of 20,000 Svix-signed webhooks over 2,000 orgs, CONCURRENCY at a
 * time, against the billing Worker. Each org gets ten: five in a first half, five in a second (in each,
 * four new message ids and one Svix redelivery of an earlier id), shuffled across orgs. Between the halves
 * the "recovers" orgs pay (no webhook of their own: the second half's tell). Every org's state is then
 * checked against what its last event implies (each decision is a fresh Autumn read, so that is Autumn's
 * state then): 0 wrong orgs is the bar. The transitions each org's history holds are checked too.
 */
const ORGS = Number(process.env.SCALE_BURST_ORGS ?? 2_000);
const PER_ORG = 10;
const CONCURRENCY = Number(process.env.SCALE_BURST_CONCURRENCY ?? 64);
const BASE_PORT = Number(process.env.SCALE_BURST_PORT ?? 30_287);
const DAY = 86_400_000;

const SITUATIONS = ["paying", "in_grace", "never_paid", "lapsed", "recovers"] as const;
type Situation = (typeof SITUATIONS)[number];
/** The state each org's last event implies, and the transitions its history must hold (MIN_NOTICE is 24 h here: nobody is suspended). */
const EXPECTED: Record<Situation, { state: string; transitions: number }> = {
  paying: { state: "ok", transitions: 0 },
  in_grace: { state: "overdue", transitions: 1 },
  never_paid: { state: "overdue", transitions: 1 },
  lapsed: { state: "overdue", transitions: 1 },
  recovers: { state: "ok", transitions: 2 },
};

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

export async function run(): Promise<Record<string, number | string>> {
  const log = logger("burst");
  const { settings, persistDir } = benchSetup(BASE_PORT, "scale-burst");
  let peakWorkerd = 0;
  const sampler = setInterval(() => (peakWorkerd = Math.max(peakWorkerd, workerdRssMib())), 500);
  let stack: Awaited<ReturnType<typeof startBenchRuntime>> | null = null;
  try {
    log("bundling the Workers and starting the runtime ...");
    stack = await startBenchRuntime(settings, persistDir);
    const { admin, control, webhook } = http(settings, stack.billingUrl, stack.autumnUrl);
    const now = Date.now();
    const orgs = Array.from({ length: ORGS }, (_, i) => ({ id: `burst-${String(i).padStart(5, "0")}`, situation: SITUATIONS[i % SITUATIONS.length]! }));
    log(`${ORGS.toLocaleString("en")} orgs in Autumn ...`);
    await pool(orgs, 16, async ({ id, situation }) => {
      await control("POST", "/customers", { id });
      if (situation === "lapsed") await control("POST", `/customers/${id}/invoices`, { status: "paid", total: 49, created_at: now - 90 * DAY });
      if (situation === "in_grace" || situation === "recovers") await control("POST", `/customers/${id}/past-due`, { at: now });
      if (situation === "never_paid" || situation === "lapsed") await control("POST", `/customers/${id}/past-due`, { at: now - 10 * DAY });
    });

    const halves = [0, 1].map(() =>
      shuffle(
        orgs.flatMap(({ id }) => {
          const ids = Array.from({ length: PER_ORG / 2 - 1 }, () => `msg_${crypto.randomUUID().replaceAll("-", "")}`);
          return [...ids, ids[0]!].map((messageId) => ({ org: id, messageId }));
        }),
      ),
    );
    const latencies: number[] = [];
    const outcomes: Record<string, number> = { processed: 0, duplicate: 0, failed: 0 };
    const failures: string[] = [];
    let burstMs = 0;
    const halfS: number[] = [];
    const send = async (deliveries: { org: string; messageId: string }[]) => {
      const started = performance.now();
      await pool(deliveries, CONCURRENCY, async ({ org, messageId }) => {
        const sent = performance.now();
        const answer = await webhook(org, messageId);
        latencies.push(performance.now() - sent);
        const outcome = answer.startsWith("failed") ? "failed" : answer;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        if (outcome === "failed" && failures.length < 3) failures.push(`${org}: ${answer}`);
      });
      burstMs += performance.now() - started;
      halfS.push((performance.now() - started) / 1000);
    };
    log(`first half: ${halves[0]!.length.toLocaleString("en")} webhooks, ${CONCURRENCY} at a time ...`);
    await send(halves[0]!);
    const payStarted = performance.now();
    await pool(
      orgs.filter((org) => org.situation === "recovers"),
      16,
      async ({ id }) => void (await control("POST", `/customers/${id}/pay`, {})),
    );
    const payS = (performance.now() - payStarted) / 1000;
    log(`second half: ${halves[1]!.length.toLocaleString("en")} webhooks ...`);
    await send(halves[1]!);

    log("checking every org ...");
    const wrong: Record<Situation, number> = { paying: 0, in_grace: 0, never_paid: 0, lapsed: 0, recovers: 0 };
    let wrongTransitions = 0;
    const examples: string[] = [];
    await pool(orgs, 16, async ({ id, situation }) => {
      const view = (await (await admin("GET", `/orgs/${id}`)).json()) as { state: string; history: { kind: string }[] };
      const transitions = view.history.filter((h) => h.kind === "transition").length;
      if (view.state !== EXPECTED[situation].state) {
        wrong[situation]++;
        if (examples.length < 3) examples.push(`${id} (${situation}) ${view.state}`);
      }
      if (transitions !== EXPECTED[situation].transitions) wrongTransitions++;
    });
    latencies.sort((a, b) => a - b);
    const total = halves[0]!.length + halves[1]!.length;
    const wrongOrgs = Object.values(wrong).reduce((a, b) => a + b, 0);
    const figures = {
      webhooks: total,
      orgs: ORGS,
      concurrency: CONCURRENCY,
      burst_s: burstMs / 1000,
      webhooks_per_s: total / (burstMs / 1000),
      first_half_s: halfS[0] ?? 0,
      second_half_s: halfS[1] ?? 0,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      processed: outcomes.processed ?? 0,
      duplicate: outcomes.duplicate ?? 0,
      failed: outcomes.failed ?? 0,
      other_answers: total - (outcomes.processed ?? 0) - (outcomes.duplicate ?? 0) - (outcomes.failed ?? 0),
      recovering_orgs_paid_between_halves_s: payS,
      wrong_orgs: wrongOrgs,
      orgs_with_wrong_transition_count: wrongTransitions,
      peak_rss_workerd_mib: peakWorkerd,
      bar: wrongOrgs === 0 && (outcomes.failed ?? 0) === 0 ? "met: 0 wrong orgs, 0 failed deliveries" : `NOT met: ${wrongOrgs} wrong orgs (${examples.join(", ")}), ${outcomes.failed ?? 0} failed (${failures.join("; ")})`,
    };
    log(JSON.stringify(figures));
    return figures;
  } finally {
    clearInterval(sampler);
    await stack?.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(JSON.stringify(await run(), null, 2));
