import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { MirrorEntry } from "../../src/shared/billing-state.ts";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import type { FeatureLimit } from "../../src/shared/usage.ts";
import { PARKED_PUBLISH_INTERVAL_MS } from "../../src/billing/org/parking.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import type { OrgStatus } from "../../src/ingest/status/answer.ts";
import { autumn } from "../support/autumn.ts";
import { alarmOf, deleteAllAlarms, mirrorOf, orgStub, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { billingAdmin, ingestWithEnv, mintKey, override } from "../support/ingest.ts";
import { parkingEnv, send } from "../support/parking.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";

const clock = fakeClock();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const GRACE = 3 * DAY;
const UPGRADE = "https://billing.example.com/upgrade?org={org_id}";

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});
afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

/** "2026-12-01T10:00:00Z", as the reason sentence writes times. */
const readable = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

const status = (workerEnv: object, key: string | null, init: RequestInit = {}) => ingestWithEnv(workerEnv, "/v1/status", { method: "GET", ...init, ...(key === null ? {} : { key }) });

async function statusOf(workerEnv: object, key: string): Promise<OrgStatus> {
  const response = await status(workerEnv, key);
  expect(response.status).toBe(200);
  expect(response.headers.get("cache-control")).toBe("no-store");
  expect(response.headers.get("content-type")).toContain("application/json");
  return (await response.json()) as OrgStatus;
}

/** A key whose KV entry carries `verdict`, as the org's publication writes it (plan-limits.test.ts does the same). */
async function keyWithVerdict(org: string, verdict: MirrorEntry): Promise<string> {
  const { key } = await mintKey(org);
  const hashKey = ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key));
  const record = (await env.INGEST_KEYS.get(hashKey, "json")) as Record<string, unknown>;
  await env.INGEST_KEYS.put(hashKey, JSON.stringify({ ...record, verdict }));
  return key;
}

/** The org's base plan goes past due on an invoice created `at`, and the object reads it (an operator's resync: this test Worker serves the ingest routes, not the webhook). */
async function pastDue(org: string, at: number): Promise<void> {
  await autumn.pastDue(org, { at, webhook: false });
  const resync = await billingAdmin(`/orgs/${org}/resync`, { method: "POST" });
  expect(resync.ok).toBe(true);
}

const send2 = (workerEnv: object, key: string) => send(workerEnv, "/v1/traces", key, { headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] }, true);

describe("GET /v1/status in every state", () => {
  it("ok: in good standing, nothing due, no pay link, no limits, nothing parked, enforced", async () => {
    const org = uniqueOrg("status_ok");
    const { key } = await mintKey(org);
    const body = await statusOf(env, key);
    expect(body).toEqual({
      org_id: org,
      state: "ok",
      reason: "In good standing: no invoice is past due.",
      since: expect.any(String),
      deadline: null,
      suspended_at: null,
      pay_url: null,
      limits: [],
      upgrade_url: null,
      parked: { batches: 0, bytes: 0, updated_at: null },
      enforcement: "enforce",
      checked_at: new Date(clock.now).toISOString(),
      source: "mirror",
    });
  });

  it("overdue: the deadline and the pay link, and a sentence naming both", async () => {
    const org = uniqueOrg("status_overdue");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    const overdueAt = clock.now;
    await pastDue(org, clock.now);
    const mirror = (await mirrorOf(org))!;
    expect(mirror).toMatchObject({ state: "overdue", suspend_at: overdueAt + GRACE, reason: "in_grace_period" });
    expect(mirror.pay_url).toMatch(/^https:\/\//);

    const body = await statusOf(env, key);
    expect(body).toMatchObject({ state: "overdue", deadline: new Date(overdueAt + GRACE).toISOString(), pay_url: mirror.pay_url, suspended_at: null, since: new Date(mirror.since).toISOString() });
    expect(body.reason).toBe(`An invoice is past due since ${readable(mirror.since)}; ingestion stops at ${readable(overdueAt + GRACE)} unless it is paid. Pay at ${mirror.pay_url}.`);
  });

  it("suspended by the policy: still answered 200 (not 402), with when, why and where to pay", async () => {
    const org = uniqueOrg("status_susp");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    await pastDue(org, clock.now - 10 * DAY);
    await sitOutMinimumNotice(org, clock);
    const mirror = (await mirrorOf(org))!;
    expect(mirror).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid" });
    // The same key is refused on the OTLP routes meanwhile.
    expect((await ingestWithEnv(env, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] })).status).toBe(402);

    const body = await statusOf(env, key);
    expect(body).toMatchObject({ state: "suspended", suspended_at: new Date(mirror.suspended_at!).toISOString(), deadline: null, pay_url: mirror.pay_url });
    expect(body.reason).toBe(
      `Ingestion is suspended since ${readable(mirror.suspended_at!)}: an invoice stayed past due beyond its grace period and no payment was received; ingestion resumes within seconds of payment. Pay at ${mirror.pay_url}.`,
    );
  });

  it("suspended by support: says so, and names no invoice", async () => {
    const org = uniqueOrg("status_manual");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const body = await statusOf(env, key);
    expect(body.state).toBe("suspended");
    expect(body.reason).toMatch(/^Ingestion is suspended by support since \S+Z; contact support to resume it\.$/);
  });

  it("limited: each limit in force with its reset, whether it is enforced, and where to upgrade; a limit already reset is left out", async () => {
    const org = uniqueOrg("status_limited");
    const resetAt = clock.now + 5 * DAY;
    const limits: FeatureLimit[] = [
      { feature_id: "spans", signals: ["traces"], reset_at: resetAt },
      { feature_id: "ingest_bytes", signals: ["bytes"], reset_at: null },
      { feature_id: "log_records", signals: ["logs", "logpush"], reset_at: clock.now - 1 },
    ];
    const key = await keyWithVerdict(org, { state: "ok", since: clock.now - DAY, version: 1_000, suspend_at: null, suspended_at: null, pay_url: null, limits, enforcement: null });
    const enforcing = { ...env, ENFORCE_LIMITS: "true", UPGRADE_URL: UPGRADE };
    const body = await statusOf(enforcing, key);
    const upgradeUrl = `https://billing.example.com/upgrade?org=${encodeURIComponent(org)}`;
    expect(body).toMatchObject({
      state: "ok",
      limits: [
        { feature_id: "spans", signals: ["traces"], reset_at: new Date(resetAt).toISOString(), enforced: true },
        { feature_id: "ingest_bytes", signals: ["bytes"], reset_at: null, enforced: true },
      ],
      upgrade_url: upgradeUrl,
    });
    expect(body.reason).toBe(
      `In good standing: no invoice is past due. The plan's allowance is used up for spans (traces) until ${readable(resetAt)}; ingest_bytes (bytes) until the plan changes: those signals are refused (429) until then.`,
    );

    gate.reset();
    const observed = await statusOf({ ...env, ENFORCE_LIMITS: "false" }, key);
    expect(observed.limits.map((limit) => limit.enforced)).toEqual([false, false]);
    expect(observed.reason).toContain("those signals are still accepted (plan limits are not enforced)");
  });

  it("an entry written before reason and parked existed still answers (the old shape parses)", async () => {
    const org = uniqueOrg("status_old");
    const key = await keyWithVerdict(org, { state: "overdue", since: clock.now - HOUR, version: 7, suspend_at: null, suspended_at: null, pay_url: null, limits: [], enforcement: null });
    const body = await statusOf(env, key);
    expect(body).toMatchObject({ state: "overdue", deadline: null, pay_url: null, parked: { batches: 0, bytes: 0, updated_at: null } });
    expect(body.reason).toBe(`An invoice is past due since ${readable(clock.now - HOUR)}; no date is set for ingestion to stop.`);
  });
});

describe("parked batches in the status", () => {
  it("a suspended org's parked batch shows in the mirror entry and the status: batches and bytes still waiting", async () => {
    const org = uniqueOrg("status_parked");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const parking = parkingEnv();
    const sent = await send2(parking, key);
    expect(sent.status).toBe(402);
    const bytes = new TextEncoder().encode(OTLP_JSON["/v1/traces"]).byteLength;

    expect((await mirrorOf(org))!.parked).toEqual({ batches: 1, bytes, updated_at: clock.now });
    gate.reset();
    const body = await statusOf(parking, key);
    expect(body).toMatchObject({ state: "suspended", parked: { batches: 1, bytes, updated_at: new Date(clock.now).toISOString() } });
  });

  it("parking reports rewrite the mirror entry at most once a minute; the alarm publishes the figures held back", async () => {
    const org = uniqueOrg("status_throttle");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const stub = orgStub(org);
    const lines = vi.spyOn(console, "log");
    const mirrorWrites = () => lines.mock.calls.filter(([line]) => (line as { event?: string; org_id?: string })?.event === "mirror_written" && (line as { org_id?: string }).org_id === org).length;
    try {
      expect(await stub.recordParking({ parked_batches: 1, parked_bytes: 100 })).toEqual({ ok: true, waiting_bytes: 100 });
      const first = (await mirrorOf(org))!;
      expect(first.parked).toMatchObject({ batches: 1, bytes: 100 });

      clock.set(clock.now + 10_000);
      await stub.recordParking({ parked_batches: 2, parked_bytes: 300 });
      clock.set(clock.now + 10_000);
      await stub.recordParking({ parked_batches: 1, parked_bytes: 50 });
      // Held back: the entry still says one batch, and the alarm is set for a minute after the first publication.
      expect((await mirrorOf(org))!.parked).toMatchObject({ batches: 1, bytes: 100 });
      expect(await alarmOf(org)).toBeLessThanOrEqual(first.parked!.updated_at! + PARKED_PUBLISH_INTERVAL_MS);

      clock.set(first.parked!.updated_at! + PARKED_PUBLISH_INTERVAL_MS);
      await runDurableObjectAlarm(stub);
      expect((await mirrorOf(org))!.parked).toMatchObject({ batches: 4, bytes: 450 });
      // Three reports, two publications.
      expect(mirrorWrites()).toBe(2);
      gate.reset();
      expect((await statusOf(env, key)).parked).toMatchObject({ batches: 4, bytes: 450 });
    } finally {
      lines.mockRestore();
    }
  });

  it("a report that changes nothing a customer sees (no batch or byte figure) rewrites nothing", async () => {
    const org = uniqueOrg("status_same");
    await mintKey(org);
    await override(org, "suspend");
    const stub = orgStub(org);
    await stub.recordParking({ parked_batches: 1, parked_bytes: 100 });
    const before = (await mirrorOf(org))!;
    clock.set(clock.now + 2 * PARKED_PUBLISH_INTERVAL_MS);
    // A listing that confirms the same waiting bytes.
    await stub.recordParking({ listed_bytes: 100 });
    expect(await mirrorOf(org)).toEqual(before);
  });
});

describe("who may read it", () => {
  it("401 without a key, with a malformed key, with an unknown key and with a revoked key: the OTLP routes' codes", async () => {
    const org = uniqueOrg("status_auth");
    const { key, key_id } = await mintKey(org);
    const codeOf = async (response: Response) => {
      expect(response.status).toBe(401);
      expect(response.headers.get("cache-control")).toBe("no-store");
      return ((await response.json()) as { error: string }).error;
    };
    expect(await codeOf(await status(env, null))).toBe("missing_ingest_key");
    expect(await codeOf(await status(env, "not-a-key"))).toBe("malformed_ingest_key");
    expect(await codeOf(await status(env, `${key.slice(0, -4)}zzzz`))).toBe("unknown_ingest_key");
    const revoked = await billingAdmin(`/orgs/${org}/ingest-keys/${key_id}`, { method: "DELETE" });
    expect(revoked.ok).toBe(true);
    gate.reset();
    expect(await codeOf(await status(env, key))).toBe("unknown_ingest_key");
    // The same codes as an export's.
    const otlp = await ingestWithEnv(env, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] });
    expect(otlp.status).toBe(401);
    expect(((await otlp.json()) as { error: string }).error).toBe("unknown_ingest_key");
  });

  it("the x-ingest-key header works too; other methods are 405 with Allow: GET", async () => {
    const org = uniqueOrg("status_header");
    const { key } = await mintKey(org);
    expect((await ingestWithEnv(env, "/v1/status", { method: "GET", headers: { "x-ingest-key": key } })).status).toBe(200);
    const post = await ingestWithEnv(env, "/v1/status", { method: "POST", key, body: "{}" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET");
    expect(((await post.json()) as { error: string }).error).toBe("method_not_allowed");
  });
});

/** The real env with every KV read and object call counted (a fresh env: fresh gate sources), as cold-key.test.ts counts them. */
function countingEnv() {
  const reads = { INGEST_KEYS: 0, BILLING_STATE: 0, object: 0 };
  const counted = (name: "INGEST_KEYS" | "BILLING_STATE") =>
    new Proxy(env[name], {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop !== "get" || typeof value !== "function") return typeof value === "function" ? value.bind(target) : value;
        return (...args: unknown[]) => {
          reads[name]++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  const objects = env.ORG_BILLING;
  return {
    reads,
    env: { ...env, INGEST_KEYS: counted("INGEST_KEYS"), BILLING_STATE: counted("BILLING_STATE"), ORG_BILLING: { getByName: (name: string) => (reads.object++, objects.getByName(name)) } },
  };
}

describe("what a status read costs", () => {
  it("cold: one KV read (the key entry carries the verdict), no object call; warm: nothing at all", async () => {
    const org = uniqueOrg("status_cost");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    await pastDue(org, clock.now);
    const counting = countingEnv();
    expect((await statusOf(counting.env, key)).state).toBe("overdue");
    expect(counting.reads).toEqual({ INGEST_KEYS: 1, BILLING_STATE: 0, object: 0 });
    expect((await statusOf(counting.env, key)).source).toBe("memory");
    expect(counting.reads).toEqual({ INGEST_KEYS: 1, BILLING_STATE: 0, object: 0 });
  });

  it("an export and a status read share the gate's cache: a status after an export reads nothing", async () => {
    const org = uniqueOrg("status_shared");
    const { key } = await mintKey(org);
    const counting = countingEnv();
    expect((await ingestWithEnv(counting.env, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] })).status).toBe(200);
    const after = { ...counting.reads };
    expect((await statusOf(counting.env, key)).source).toBe("memory");
    expect(counting.reads).toEqual(after);
  });
});

describe("its log line", () => {
  it("one ingest_status line per read as LOG_SAMPLE_RATE allows (1: every read; 0: none), never the key", async () => {
    const org = uniqueOrg("status_log");
    const { key } = await mintKey(org);
    const lines = vi.spyOn(console, "log");
    try {
      await statusOf({ ...env, LOG_SAMPLE_RATE: "1" }, key);
      const logged = lines.mock.calls.map(([line]) => line as { event?: string }).filter((line) => line?.event === "ingest_status");
      expect(logged).toEqual([{ event: "ingest_status", org_id: org, key_id: expect.any(String), state: "ok", source: "mirror" }]);
      expect(JSON.stringify(logged)).not.toContain(key);
      lines.mockClear();
      await statusOf({ ...env, LOG_SAMPLE_RATE: "0" }, key);
      expect(lines.mock.calls.filter(([line]) => (line as { event?: string })?.event === "ingest_status")).toHaveLength(0);
    } finally {
      lines.mockRestore();
    }
  });
});
