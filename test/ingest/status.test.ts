import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import type { FeatureLimit } from "../../src/shared/usage.ts";
import { PARKED_PUBLISH_INTERVAL_MS } from "../../src/billing/org/parking.ts";
import { cleanupParked } from "../../src/ingest/parking/deliveries.ts";
import { GATE_TIMINGS } from "../../src/ingest/request/gate.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { autumn } from "../support/autumn.ts";
import { alarmOf, deleteAllAlarms, mirrorOf, orgStub, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";
import { billingAdmin, countingEnv, ingestWithEnv, keyWithVerdict, mintKey, override } from "../support/ingest.ts";
import { parkingEnv, send } from "../support/parking.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";
import { pastDue, readable, status, statusOf } from "../support/status.ts";

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

  it("observe mode: a suspended org, and a limited one, are told their data still goes through, not that they are cut off", async () => {
    const org = uniqueOrg("status_observed");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const observing = { ...env, ENFORCEMENT: "observe" };
    const body = await statusOf(observing, key);
    expect(body).toMatchObject({ state: "suspended", enforcement: "observe" });
    expect(body.reason).toContain("Enforcement is only observed for now: exports are still accepted, and would be refused (402) once it is enforced.");
    gate.reset();
    const enforced = await statusOf(env, key);
    expect(enforced).toMatchObject({ state: "suspended", enforcement: "enforce" });
    expect(enforced.reason).not.toContain("only observed");

    const limited = uniqueOrg("status_observed_limit");
    const limits: FeatureLimit[] = [{ feature_id: "spans", signals: ["traces"], reset_at: null }];
    const limitedKey = await keyWithVerdict(limited, { state: "ok", since: clock.now - DAY, version: 1_000, suspend_at: null, suspended_at: null, pay_url: null, limits, enforcement: null });
    gate.reset();
    const limitedBody = await statusOf({ ...observing, ENFORCE_LIMITS: "true" }, limitedKey);
    expect(limitedBody.reason).toContain("those signals would be refused (429) until then, but enforcement is only observed for now: they are still accepted");
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

describe("parked figures set by a listing, and their time", () => {
  it("the cleanup's listing sets the waiting batches outright: a report of a batch that never reached R2 leaves no phantom", async () => {
    const org = uniqueOrg("status_listed");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const parking = parkingEnv();
    expect((await send2(parking, key)).status).toBe(402);
    const stub = orgStub(org);
    const real = (await stub.verdict()).parked!;
    expect(real).toMatchObject({ batches: 1 });
    // A report of a second batch whose put never landed (nothing of it is in R2).
    await stub.recordParking({ parked_batches: 1, parked_bytes: 10 });
    expect((await stub.verdict()).parked).toMatchObject({ batches: 2, bytes: real.bytes + 10 });
    clock.set(clock.now + 1_000);
    await cleanupParked(parking as never, clock.now);
    expect((await stub.verdict()).parked).toMatchObject({ batches: 1, bytes: real.bytes, updated_at: clock.now });
  });

  it("a listing from before listed_batches (bytes only) keeps at least one batch beside its bytes, and none beside zero", async () => {
    const org = uniqueOrg("status_oldlisting");
    await mintKey(org);
    const stub = orgStub(org);
    await stub.recordParking({ parked_batches: 2, parked_bytes: 200, expired_batches: 2, expired_bytes: 100 });
    expect((await stub.verdict()).parked).toMatchObject({ batches: 0, bytes: 100 });
    await stub.recordParking({ listed_bytes: 100 });
    expect((await stub.verdict()).parked).toMatchObject({ batches: 1, bytes: 100 });
    await stub.recordParking({ listed_bytes: 0 });
    expect((await stub.verdict()).parked).toMatchObject({ batches: 0, bytes: 0 });
  });

  it("parked.updated_at moves with the figures only: a report that moves none keeps it, one that moves one sets it", async () => {
    const org = uniqueOrg("status_changed_at");
    await mintKey(org);
    const stub = orgStub(org);
    const t0 = clock.now;
    await stub.recordParking({ parked_batches: 1, parked_bytes: 100 });
    clock.set(t0 + 5_000);
    await stub.recordParking({ listed_bytes: 100 });
    clock.set(t0 + 7_000);
    expect(await stub.recordParking({ listed_bytes: 100, listed_batches: 1 })).toEqual({ ok: true, waiting_bytes: 100 });
    expect((await stub.verdict()).parked).toEqual({ batches: 1, bytes: 100, updated_at: t0 });
    clock.set(t0 + 9_000);
    await stub.recordParking({ delivered_batches: 1, delivered_bytes: 100 });
    expect((await stub.verdict()).parked).toEqual({ batches: 0, bytes: 0, updated_at: t0 + 9_000 });
    // The admin view still shows when the last report came (its own updated_at), as before.
    const view = (await (await billingAdmin(`/orgs/${org}`)).json()) as { parking: Record<string, unknown> };
    expect(view.parking).toMatchObject({ updated_at: new Date(t0 + 9_000).toISOString(), waiting_batches: 0, waiting_bytes: 0 });
    expect(view.parking).not.toHaveProperty("figures_changed_at");
  });
});

describe("a KV outage", () => {
  /** An env whose BILLING_STATE reads fail while `down.kv` is set (fresh settings, the shared gate). */
  function kvFlaky() {
    const down = { kv: false };
    const billingState = new Proxy(env.BILLING_STATE, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop === "get") return (...args: unknown[]) => (down.kv ? Promise.reject(new Error("KV is down")) : (value as (...a: unknown[]) => unknown).apply(target, args));
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    return { down, env: { ...env, BILLING_STATE: billingState } };
  }

  it("longer than the gate's fail-open hold: the status keeps the verdict last known (overdue, unconfirmed) while exports are still accepted", async () => {
    const org = uniqueOrg("status_kvdown");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    await pastDue(org, clock.now);
    const flaky = kvFlaky();
    const before = await statusOf(flaky.env, key);
    expect(before).toMatchObject({ state: "overdue", source: "mirror" });
    clock.set(clock.now + GATE_TIMINGS.stateTtlMs + 1);
    flaky.down.kv = true;
    for (let round = 0; round < 3; round++) {
      const body = await statusOf(flaky.env, key);
      expect(body).toMatchObject({ state: "overdue", source: "unconfirmed", deadline: before.deadline, since: before.since, pay_url: before.pay_url });
      // The gate's fail-open is unchanged: an org nothing says is suspended is accepted.
      expect((await ingestWithEnv(flaky.env, "/v1/traces", { key, headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] })).status).toBe(200);
      clock.set(clock.now + GATE_TIMINGS.failOpenTtlMs);
    }
    flaky.down.kv = false;
    expect(await statusOf(flaky.env, key)).toMatchObject({ state: "overdue", source: "mirror" });
  });

  it("an org last seen in good standing reads ok, unconfirmed (not a 503); one never seen reads 503", async () => {
    const org = uniqueOrg("status_kvdown_ok");
    const { key } = await mintKey(org);
    const flaky = kvFlaky();
    expect((await statusOf(flaky.env, key)).state).toBe("ok");
    clock.set(clock.now + GATE_TIMINGS.stateTtlMs + 1);
    flaky.down.kv = true;
    expect(await statusOf(flaky.env, key)).toMatchObject({ state: "ok", source: "unconfirmed" });
    flaky.down.kv = false;
    // An org this isolate never saw, whose key entry carries no verdict: nothing is known.
    const { key: otherKey } = await mintKey(uniqueOrg("status_kvdown_new"));
    const hashKey = ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, otherKey));
    const { verdict: _dropped, ...withoutVerdict } = (await env.INGEST_KEYS.get(hashKey, "json")) as Record<string, unknown>;
    await env.INGEST_KEYS.put(hashKey, JSON.stringify(withoutVerdict));
    flaky.down.kv = true;
    const unknown = await status(flaky.env, otherKey);
    expect(unknown.status).toBe(503);
    expect(((await unknown.json()) as { error: string }).error).toBe("status_unavailable");
  });
});

describe("keys minted before anything is published", () => {
  it("the first mint keeps the org's new record, which owes nothing: no alarm, no mirror entry, and later keys carry its since", async () => {
    const org = uniqueOrg("status_firstkey");
    const t0 = clock.now;
    const { key: first } = await mintKey(org);
    expect(await alarmOf(org)).toBeNull();
    expect(await mirrorOf(org)).toBeNull();
    clock.set(t0 + DAY);
    const { key: second } = await mintKey(org);
    for (const key of [first, second]) {
      gate.reset();
      expect(await statusOf(env, key)).toMatchObject({ state: "ok", since: new Date(t0).toISOString(), source: "mirror" });
    }
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
