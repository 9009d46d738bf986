import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { sessionCookie } from "../../src/billing/console/session.ts";
import type { HandedOrg } from "../../src/billing/index/object.ts";
import { SHARD_NAMES, shardNameOf } from "../../src/shared/index-shard.ts";
import { REPO_ROOT, WRANGLER_BIN } from "../../tools/paths.ts";
import { benchSetup } from "../runtime.ts";
import { workerdRssMib } from "../proc.ts";

/**
 * Issue 23's index at scale: 100,000 non-ok orgs (half overdue, half suspended) in the sharded `OrgIndex`,
 * then the console's overview (`GET /admin`), a console list (`GET /admin/list/suspended`) and the admin
 * API's pages (`GET /admin/orgs?state=overdue`, first and deep), each the median of a few; the whole
 * overdue list walked page by page (every org exactly once); the index's storage summed over its shards.
 *
 * The billing Worker is bundled as `wrangler deploy` would; beside it, a bench-only Worker (never deployed)
 * seeds the shards through `OrgIndex.absorb`, the bulk path the old single object's drain uses, in batches
 * per shard (one publication per org through the org's object would take hours at this count).
 * `node bench/scale/index.ts` runs it alone and prints the figures as JSON.
 */

const ORGS = Number(process.env.SCALE_INDEX_ORGS ?? 100_000);
const SAMPLES = 5;
const BATCH = 2_500;
const BASE_PORT = 9_460;
const HOUR = 3_600_000;

const SEED_WORKER = `
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/absorb") {
      const stub = env.ORG_INDEX.getByName(url.searchParams.get("shard"));
      return Response.json(await stub.absorb(await request.json()));
    }
    if (url.pathname === "/drain-status") {
      return Response.json(await env.ORG_INDEX.getByName("index").drainStatus());
    }
    if (url.pathname === "/stats") {
      const names = url.searchParams.getAll("shard");
      return Response.json(await Promise.all(names.map((name) => env.ORG_INDEX.getByName(name).storageStats())));
    }
    return new Response("not found", { status: 404 });
  },
};`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)]! * 10) / 10;
}

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

/** The org `i` of the seeded set: even ones overdue with deadlines over the next three days, odd ones suspended over the last month. */
function seededOrg(i: number, now: number): HandedOrg {
  const org_id = `scale_org_${String(i).padStart(7, "0")}`;
  const org =
    i % 2 === 0
      ? { state: "overdue" as const, reason: "in_grace_period" as const, since: now - 2 * HOUR, version: 3, suspend_at: now + ((i * 7919) % (72 * 60)) * 60_000, suspended_at: null }
      : { state: "suspended" as const, reason: "grace_elapsed_never_paid" as const, since: now - 5 * HOUR, version: 5, suspend_at: null, suspended_at: now - ((i * 104_729) % (30 * 24 * 60)) * 60_000 };
  return { org_id, org, limits: null, would_refuse: [] };
}

export async function run(): Promise<Record<string, number | string>> {
  const { settings, persistDir } = benchSetup(BASE_PORT, "bench-scale-index");
  const outdir = join(persistDir, "dist");
  mkdirSync(outdir, { recursive: true });
  execFileSync(process.execPath, [WRANGLER_BIN, "deploy", "--dry-run", "--config", "wrangler.jsonc", "--outdir", outdir], {
    cwd: REPO_ROOT,
    stdio: "pipe",
    // The console's custom build runs `node`: this Node (22), also when run alone outside npm.
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` },
  });
  const billingPort = Number(settings.BILLING_PORT);
  const seedPort = billingPort + 9;
  const mf = new Miniflare(
    convertV4MiniflareOptions({
    host: "127.0.0.1",
    port: 0,
    handleStructuredLogs: () => {},
    durableObjectsPersist: join(persistDir, "do"),
    kvPersist: join(persistDir, "kv"),
    workers: [
      {
        name: "tollgate-billing",
        scriptPath: join(outdir, "worker.js"),
        modulesRoot: outdir,
        modules: true,
        compatibilityDate: "2026-11-01",
        durableObjects: {
          ORG_BILLING: { className: "OrgBilling", useSQLite: true },
          ORG_INDEX: { className: "OrgIndex", useSQLite: true },
          RECONCILER: { className: "Reconciler", useSQLite: true },
        },
        kvNamespaces: ["BILLING_STATE", "INGEST_KEYS"],
        bindings: { AUTUMN_API_URL: settings.AUTUMN_API_URL, AUTUMN_SECRET_KEY: settings.AUTUMN_SECRET_KEY, AUTUMN_WEBHOOK_SECRET: settings.AUTUMN_WEBHOOK_SECRET, ADMIN_TOKEN: settings.ADMIN_TOKEN, INGEST_KEY_PEPPER: settings.INGEST_KEY_PEPPER },
        unsafeDirectSockets: [{ host: "127.0.0.1", port: billingPort }],
      },
      {
        name: "index-scale-seed",
        modules: true,
        script: SEED_WORKER,
        compatibilityDate: "2026-11-01",
        durableObjects: { ORG_INDEX: { className: "OrgIndex", scriptName: "tollgate-billing", useSQLite: true } },
        unsafeDirectSockets: [{ host: "127.0.0.1", port: seedPort }],
      },
    ],
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
  );
  try {
    await mf.ready;
    const billing = `http://127.0.0.1:${billingPort}`;
    const seed = `http://127.0.0.1:${seedPort}`;
    const now = Date.now();

    // Seeding: each shard's orgs in batches, four requests at a time.
    const perShard = new Map<string, HandedOrg[]>();
    for (let i = 0; i < ORGS; i++) {
      const org = seededOrg(i, now);
      const name = shardNameOf(org.org_id);
      perShard.set(name, [...(perShard.get(name) ?? []), org]);
    }
    const batches: { shard: string; orgs: HandedOrg[] }[] = [];
    for (const [shard, orgs] of perShard) for (let at = 0; at < orgs.length; at += BATCH) batches.push({ shard, orgs: orgs.slice(at, at + BATCH) });
    const seedInto = (target: (shard: string) => string) =>
      timed(async () => {
        let next = 0;
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            while (next < batches.length) {
              const batch = batches[next++]!;
              const response = await fetch(`${seed}/absorb?shard=${encodeURIComponent(target(batch.shard))}`, { method: "POST", body: JSON.stringify(batch.orgs) });
              if (!response.ok) throw new Error(`seeding ${batch.shard}: ${response.status} ${await response.text()}`);
            }
          }),
        );
      });
    const cookie = (await sessionCookie(settings.ADMIN_TOKEN, Date.now())).split(";")[0]!;
    const statsOf = async () =>
      (await (await fetch(`${seed}/stats?${SHARD_NAMES.map((name) => `shard=${encodeURIComponent(name)}`).join("&")}`)).json()) as { database_bytes: number; orgs: number }[];

    // SCALE_INDEX_VIA=legacy (the default): the rows go into the single "index" object, as an existing deployment
    // has them, and the first console request starts their drain into the shards (the migration, timed).
    // SCALE_INDEX_VIA=shards: straight into each org's shard.
    const viaLegacy = (process.env.SCALE_INDEX_VIA ?? "legacy") !== "shards";
    const seeding = await seedInto((shard) => (viaLegacy ? "index" : shard));
    const migration: Record<string, number> = {};
    if (viaLegacy) {
      const during = await timed(async () => (await fetch(`${billing}/admin`, { headers: { cookie } })).status);
      if (during.value !== 200) throw new Error(`the overview during the drain answered ${during.value}`);
      const drain = await timed(async () => {
        for (;;) {
          if (((await (await fetch(`${seed}/drain-status`)).json()) as { drained: boolean }).drained) return;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      });
      const moved = (await statsOf()).reduce((sum, s) => sum + s.orgs, 0);
      if (moved !== ORGS) throw new Error(`the drain moved ${moved} orgs of ${ORGS}`);
      migration.overview_while_draining_ms = Math.round(during.ms * 10) / 10;
      migration.legacy_drain_s = Math.round((during.ms + drain.ms) / 100) / 10;
    }

    const bearer = { authorization: `Bearer ${settings.ADMIN_TOKEN}` };
    const get = async (path: string, headers: Record<string, string>) => {
      const response = await fetch(`${billing}${path}`, { headers, redirect: "manual" });
      const body = await response.text();
      if (response.status !== 200) throw new Error(`${path}: ${response.status} ${body.slice(0, 200)}`);
      return body;
    };
    const sample = async (path: string, headers: Record<string, string>) => {
      const first = await timed(() => get(path, headers));
      const rest: number[] = [];
      for (let i = 0; i < SAMPLES; i++) rest.push((await timed(() => get(path, headers))).ms);
      return { cold: Math.round(first.ms * 10) / 10, median: median(rest), body: first.value };
    };

    const overview = await sample("/admin", { cookie });
    const shownSuspended = Number(/<strong>(\d+)<\/strong> suspended/.exec(overview.body)?.[1]);
    if (shownSuspended !== ORGS / 2) throw new Error(`the overview shows ${shownSuspended} suspended orgs, not ${ORGS / 2}`);
    const suspendedList = await sample("/admin/list/suspended", { cookie });
    const firstPage = await sample("/admin/orgs?state=overdue&limit=50", bearer);
    const cursor = (JSON.parse(firstPage.body) as { next_cursor: string }).next_cursor;
    const secondPage = await sample(`/admin/orgs?state=overdue&limit=50&cursor=${cursor}`, bearer);

    // The whole overdue list, 200 a page: every org once, in order; and a page deep in it timed like the first.
    let walked = 0;
    let pages = 0;
    const cursors: string[] = [];
    let previous = "";
    const seen = new Set<string>();
    const walk = await timed(async () => {
      let next: string | null = null;
      do {
        const page = JSON.parse(await get(`/admin/orgs?state=overdue&limit=200${next ? `&cursor=${next}` : ""}`, bearer)) as { orgs: { org_id: string; suspend_at: string }[]; next_cursor: string | null };
        for (const org of page.orgs) {
          const key = `${org.suspend_at}|${org.org_id}`;
          if (key < previous) throw new Error(`out of order at ${org.org_id}`);
          previous = key;
          seen.add(org.org_id);
        }
        walked += page.orgs.length;
        pages++;
        if (page.next_cursor) cursors.push(page.next_cursor);
        next = page.next_cursor;
      } while (next !== null);
    });
    if (walked !== ORGS / 2 || seen.size !== ORGS / 2) throw new Error(`the overdue walk saw ${walked} rows, ${seen.size} orgs, of ${ORGS / 2}`);
    // Halfway down the overdue list (25,000 rows in at 100,000 orgs): a keyset page costs what the first does.
    const middle = Math.floor(cursors.length / 2);
    const deepPage = await sample(`/admin/orgs?state=overdue&limit=50&cursor=${cursors[middle]}`, bearer);

    const stats = await statsOf();
    const bytes = stats.reduce((sum, s) => sum + s.database_bytes, 0);
    const rows = stats.map((s) => s.orgs);
    return {
      orgs_non_ok: ORGS,
      shards: SHARD_NAMES.length,
      seeded_into: viaLegacy ? "the old single index object, then drained" : "the shards",
      seed_s: Math.round(seeding.ms / 100) / 10,
      ...migration,
      overview_first_page_ms: overview.median,
      overview_first_page_cold_ms: overview.cold,
      console_list_suspended_ms: suspendedList.median,
      admin_orgs_overdue_first_page_ms: firstPage.median,
      admin_orgs_overdue_cursor_page_ms: secondPage.median,
      admin_orgs_overdue_mid_list_page_ms: deepPage.median,
      admin_orgs_overdue_mid_list_rows_before: (middle + 1) * 200,
      overdue_walk_200_a_page_s: Math.round(walk.ms / 100) / 10,
      overdue_walk_pages: pages,
      index_storage_mib: Math.round((bytes / 1_048_576) * 10) / 10,
      index_storage_bytes_per_org: Math.round(bytes / ORGS),
      shard_rows_min: Math.min(...rows),
      shard_rows_max: Math.max(...rows),
      workerd_rss_mib: Math.round(workerdRssMib()),
    };
  } finally {
    await mf.dispose();
    rmSync(persistDir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  console.log(JSON.stringify(await run(), null, 2));
}
