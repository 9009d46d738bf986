import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, expect, it, vi } from "vitest";
import { SHARD_NAMES } from "../../src/shared/index-shard.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { autumn } from "../support/autumn.ts";
import { alarmOf, billing, deliverWebhook, drainUsage, ingest, isolateQueue, orgStub, tracesBody, upstream, usageQueue } from "./harness.ts";

/**
 * Promise 8 of the README, beside the model of the whole org (org-model.test.ts) in a file of its own so
 * the two run side by side: no table, KV key or R2 prefix grows with requests.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const FEATURE = "spans";

afterEach(async () => {
  vi.useRealTimers();
  await upstream.up();
});

async function rowsOf(stub: DurableObjectStub): Promise<Record<string, number>> {
  return runInDurableObject(stub, (_instance, state) => {
    const tables = state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").toArray();
    return Object.fromEntries(tables.map(({ name }) => [name, state.storage.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM "${name}"`).one().n]));
  });
}

async function storageCounts(org: string): Promise<Record<string, number>> {
  const kv = async (ns: KVNamespace) => (await ns.list()).keys.length;
  const r2 = (await env.PARKING.list()).objects.length;
  const object = Object.fromEntries(Object.entries(await rowsOf(orgStub(org))).map(([t, n]) => [`org_billing.${t}`, n]));
  // The index is sharded (src/shared/index-shard.ts): each table's rows summed over the shards.
  const index: Record<string, number> = {};
  for (const name of SHARD_NAMES) for (const [t, n] of Object.entries(await rowsOf(env.ORG_INDEX.getByName(name)))) index[`org_index.${t}`] = (index[`org_index.${t}`] ?? 0) + n;
  return { ...object, ...index, "kv.BILLING_STATE": await kv(env.BILLING_STATE), "kv.INGEST_KEYS": await kv(env.INGEST_KEYS), "r2.PARKING": r2 };
}

it("grows no table, key or prefix with requests: the same rows and keys after N and 2N requests (invariant 8)", async () => {
  vi.useFakeTimers({ toFake: ["Date"] });
  try {
    gate.reset();
    usageQueue.take();
    await upstream.up();
    // The org's activity is kept per hour (usage_activity): both runs of traffic (about 3 minutes of the faked
    // clock) stay inside one hour, which a start at the real clock's time crossed when run just before the hour.
    let now = Math.ceil(Date.now() / HOUR) * HOUR + 1_000;
    vi.setSystemTime(now);
    const org = `growth_${crypto.randomUUID().slice(0, 6)}`;
    await autumn.createCustomer(org, { webhook: false });
    await autumn.setAllowance(org, FEATURE, { granted: 1_000_000, next_reset_at: now + 30 * DAY }, { webhook: false });
    const { key } = (await (await billing(`/admin/orgs/${org}/ingest-keys`, { method: "POST" })).json()) as { key: string };
    // A paying org that was once overdue (so it has a history, an index entry and a mirror entry).
    await deliverWebhook((await autumn.pastDue(org, { at: now, webhook: false })).webhook);
    await deliverWebhook((await autumn.pay(org, { at: now, webhook: false })).webhook);
    const N = 20;
    const WINDOWS = 2;
    let sent = 0;
    // One isolate for all the traffic: what an isolate keeps (its batcher's stream) is per isolate, not per request.
    const isolate = isolateQueue();
    /** N requests through the isolate in WINDOWS one-second windows (its batcher sends one message a window), drained and reported. */
    const traffic = async () => {
      for (let i = 0; i < N; i++) {
        if (i % (N / WINDOWS) === 0) {
          now += 1_000;
          vi.setSystemTime(now);
          // The window's flush waits out the batcher's interval in real time.
          await new Promise((resolve) => setTimeout(resolve, 1_050));
        }
        expect((await ingest("/v1/traces", key, tracesBody(`${org}-${sent++}`, 2), "application/json", isolate)).status).toBe(200);
      }
      await new Promise((resolve) => setTimeout(resolve, 1_050));
      await drainUsage();
      for (let i = 0; i < 5; i++) {
        now += 15_000;
        vi.setSystemTime(now);
        if ((await alarmOf(orgStub(org))) !== null) await runDurableObjectAlarm(orgStub(org));
      }
    };
    await traffic();
    const afterN = await storageCounts(org);
    await traffic();
    const after2N = await storageCounts(org);
    if ((env as unknown as Record<string, string>).MODEL_TRACE) console.error("MODEL growth:", JSON.stringify({ afterN, after2N }));
    // The usage dedupe table keeps one row per queue message (an isolate's window) for the queue's retention:
    // it grows with windows, never with requests (N requests here, WINDOWS windows).
    const windowed = "org_billing.usage_seen";
    expect(after2N[windowed]! - afterN[windowed]!, "usage_seen rows added by N requests").toBeLessThanOrEqual(WINDOWS + 1);
    for (const [name, n] of Object.entries(after2N)) {
      if (name === windowed) continue;
      expect(n, `${name}: ${afterN[name]} after ${N} requests, ${n} after ${2 * N}`).toBeLessThanOrEqual(afterN[name] ?? 0);
    }
    expect((await autumn.usageOf(org))[FEATURE]?.value).toBe(2 * N * 2);
  } finally {
    vi.useRealTimers();
  }
});
