import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import { PARKED_PUBLISH_INTERVAL_MS } from "../../src/billing/org/parking.ts";
import { GATE_TIMINGS } from "../../src/ingest/request/gate.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import type { OrgStatus } from "../../src/ingest/status/answer.ts";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, mirrorOf, orgStub, sitOutMinimumNotice, uniqueOrg } from "../support/billing.ts";
import { deliver, parkingEnv, send } from "../support/parking.ts";
import { fakeClock } from "../support/clock.ts";
import { billingAdmin, ingestWithEnv, keyWithVerdict, mintKey, override } from "../support/ingest.ts";
import { OTLP_JSON } from "./fixtures/otlp.ts";
import { pastDue, status, statusOf } from "../support/status.ts";

// An adversarial second read of GET /v1/status (issue 21) where it meets suspension, payment, plan
// limits, parking, revocation and outages. A test here that fails is a finding (see the report on
// branch h/break); one that passes checks something test/ingest/status.test.ts does not.

const clock = fakeClock();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

beforeEach(() => {
  gate.reset();
  logThrottle.reset();
});
afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});


/** A fresh env (fresh gate sources and settings) whose BILLING_STATE reads fail while `down.kv` is set, and whose object calls fail while `down.object` is. */
function flakyEnv(extra: Record<string, unknown> = {}) {
  const down = { kv: false, object: false };
  const billingState = new Proxy(env.BILLING_STATE, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "get") {
        return (...args: unknown[]) => {
          if (down.kv) return Promise.reject(new Error("KV is down"));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const objects = env.ORG_BILLING;
  const orgBilling = {
    getByName: (name: string) => {
      if (down.object) throw new Error("the object is unreachable");
      return objects.getByName(name);
    },
  };
  return { down, env: { ...env, BILLING_STATE: billingState, ORG_BILLING: orgBilling, ...extra } };
}

const TRACES = { headers: { "content-type": "application/json" }, body: OTLP_JSON["/v1/traces"] };

/** A suspended org with a key, its object's stub and the time it was suspended: where the parked-figure tests start. */
async function suspendedOrg(prefix: string) {
  const org = uniqueOrg(prefix);
  const { key } = await mintKey(org);
  await override(org, "suspend");
  return { org, key, stub: orgStub(org), t0: clock.now };
}

describe("parked figures: can one stay stale forever?", () => {
  it("a parking report that lands while a publication is in flight is published (not lost until some later change)", async () => {
    const { org, stub } = await suspendedOrg("brk_race");
    // Two reports reach the object together (two isolates' throttled reports): the first publishes at
    // once; the second arrives while that publication's KV writes are in flight.
    await Promise.all([stub.recordParking({ parked_batches: 1, parked_bytes: 100 }), stub.recordParking({ parked_batches: 1, parked_bytes: 200 })]);
    // A quiet period: nothing else happens to the org; whatever the object owes, its alarm does.
    for (let minute = 1; minute <= 3; minute++) {
      clock.set(clock.now + PARKED_PUBLISH_INTERVAL_MS);
      await runDurableObjectAlarm(stub);
    }
    expect((await stub.verdict()).parked).toMatchObject({ batches: 2, bytes: 300 });
    expect((await mirrorOf(org))!.parked).toMatchObject({ batches: 2, bytes: 300 });
  });

  it("after a throttled change, the last change before a quiet period is published by the alarm within a minute", async () => {
    const { org, key, stub, t0 } = await suspendedOrg("brk_quiet");
    await stub.recordParking({ parked_batches: 1, parked_bytes: 100 });
    clock.set(t0 + 70_000);
    await stub.recordParking({ parked_batches: 1, parked_bytes: 100 });
    clock.set(t0 + 80_000);
    await stub.recordParking({ delivered_batches: 1, delivered_bytes: 100 });
    expect((await mirrorOf(org))!.parked).toMatchObject({ batches: 2, bytes: 200 });
    clock.set(t0 + 70_000 + PARKED_PUBLISH_INTERVAL_MS);
    await runDurableObjectAlarm(stub);
    expect((await mirrorOf(org))!.parked).toMatchObject({ batches: 1, bytes: 100, updated_at: t0 + 80_000 });
    expect((await statusOf(env, key)).parked).toMatchObject({ batches: 1, bytes: 100 });
  });

  it("after every batch is delivered the status reads zero batches and zero bytes (not the last figure seen)", async () => {
    const { org, key, stub, t0 } = await suspendedOrg("brk_drained");
    await stub.recordParking({ parked_batches: 2, parked_bytes: 500 });
    await override(org, "clear");
    clock.set(t0 + 5_000);
    // The delivery run: both delivered, and its listing finds nothing left.
    await stub.recordParking({ delivered_batches: 2, delivered_bytes: 500, listed_bytes: 0, listed_at: t0 + 4_000 });
    clock.set(t0 + PARKED_PUBLISH_INTERVAL_MS);
    await runDurableObjectAlarm(stub);
    gate.reset();
    const body = await statusOf(env, key);
    expect(body.state).toBe("ok");
    expect(body.parked).toEqual({ batches: 0, bytes: 0, updated_at: new Date(t0 + 5_000).toISOString() });
  });

  it("parked.updated_at is when the figures last changed (docs), not when a report that changed nothing last came", async () => {
    const { org, key, stub, t0 } = await suspendedOrg("brk_updated");
    await stub.recordParking({ parked_batches: 1, parked_bytes: 100 });
    // Two minutes later a cleanup's listing confirms the same bytes: no figure changes (and nothing is published for it).
    clock.set(t0 + 2 * PARKED_PUBLISH_INTERVAL_MS);
    await stub.recordParking({ listed_bytes: 100 });
    // Then the org is published for another reason (support lifts the suspension).
    clock.set(t0 + 3 * PARKED_PUBLISH_INTERVAL_MS);
    await override(org, "clear");
    expect((await mirrorOf(org))!.parked).toEqual({ batches: 1, bytes: 100, updated_at: t0 });
    gate.reset();
    expect((await statusOf(env, key)).parked).toEqual({ batches: 1, bytes: 100, updated_at: new Date(t0).toISOString() });
  });

  it("a cleanup listing that finds nothing parked leaves no phantom batch beside zero bytes", async () => {
    const { key, stub, t0 } = await suspendedOrg("brk_phantom");
    await stub.recordParking({ parked_batches: 1, parked_bytes: 100 });
    // The batch's expiry report was lost; the next cleanup lists the org's prefix and finds nothing.
    clock.set(t0 + 2 * PARKED_PUBLISH_INTERVAL_MS);
    await stub.recordParking({ listed_bytes: 0 });
    clock.set(t0 + 3 * PARKED_PUBLISH_INTERVAL_MS);
    await runDurableObjectAlarm(stub);
    gate.reset();
    const parked = (await statusOf(env, key)).parked;
    expect(parked.bytes).toBe(0);
    // Nothing is waiting in R2: the batch count must not say one is.
    expect(parked.batches).toBe(0);
  });
});

describe("outages", () => {
  it("a KV failure never turns an overdue org's status into 'in good standing' (the fail-open verdict held in memory)", async () => {
    const org = uniqueOrg("brk_failopen");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    await pastDue(org, clock.now);
    const flaky = flakyEnv();
    expect((await statusOf(flaky.env, key)).state).toBe("overdue");
    // The verdict's 5 s in memory run out (the key's 30 s do not), and KV fails for the next read.
    clock.set(clock.now + GATE_TIMINGS.stateTtlMs + 1);
    flaky.down.kv = true;
    const answers: { status: number; state?: string; source?: string }[] = [];
    for (let i = 0; i < 2; i++) {
      const response = await status(flaky.env, key);
      const body = (await response.json()) as Partial<OrgStatus>;
      answers.push({ status: response.status, state: body.state, source: body.source });
    }
    // Each answer is a 503 (we cannot tell) or the truth (overdue); never a confident "ok".
    for (const answer of answers) expect(answer.status === 503 || answer.state === "overdue", JSON.stringify(answers)).toBe(true);
  });

  it("503 status_unavailable only when nothing is known of the org (docs): an org this isolate just saw overdue keeps its status", async () => {
    const org = uniqueOrg("brk_known");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    await pastDue(org, clock.now);
    const flaky = flakyEnv();
    expect((await statusOf(flaky.env, key)).state).toBe("overdue");
    clock.set(clock.now + GATE_TIMINGS.stateTtlMs + 1);
    flaky.down.kv = true;
    const response = await status(flaky.env, key);
    expect(response.status).toBe(200);
    expect(((await response.json()) as OrgStatus).state).toBe("overdue");
  });

  it("an org never seen, with KV down for its mirror and a key entry without a verdict: 503 status_unavailable, no-store, Retry-After", async () => {
    const org = uniqueOrg("brk_unknown");
    const key = await keyWithVerdict(org, null);
    const flaky = flakyEnv();
    flaky.down.kv = true;
    const response = await status(flaky.env, key);
    expect(response.status).toBe(503);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("retry-after")).toBe("5");
    expect(((await response.json()) as { error: string }).error).toBe("status_unavailable");
  });

  it("a suspended org with its object unreachable: 200, suspended, source unconfirmed (never a 402, never ok)", async () => {
    const org = uniqueOrg("brk_objdown");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const flaky = flakyEnv();
    flaky.down.object = true;
    const body = await statusOf(flaky.env, key);
    expect(body).toMatchObject({ state: "suspended", source: "unconfirmed" });
    expect(body.reason).toMatch(/suspended by support/);
  });
});

describe("suspension and payment within the documented bounds", () => {
  it("support lifts a suspension: the status says ok within a second (the object's confirmation), as exports resume", async () => {
    const org = uniqueOrg("brk_lift");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    expect((await statusOf(env, key)).source).toBe("object");
    await override(org, "clear");
    clock.set(clock.now + GATE_TIMINGS.confirmTtlMs);
    const body = await statusOf(env, key);
    expect(body).toMatchObject({ state: "ok", suspended_at: null, pay_url: null, deadline: null });
    expect((await ingestWithEnv(env, "/v1/traces", { key, ...TRACES })).status).toBe(200);
  });

  it("a suspended org's status costs at most one object call a second, like its exports", async () => {
    const org = uniqueOrg("brk_susp_cost");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    let objectCalls = 0;
    const objects = env.ORG_BILLING;
    const counting = { ...env, ORG_BILLING: { getByName: (name: string) => (objectCalls++, objects.getByName(name)) } };
    for (let i = 0; i < 5; i++) expect((await statusOf(counting, key)).state).toBe("suspended");
    expect(objectCalls).toBe(1);
    clock.set(clock.now + GATE_TIMINGS.confirmTtlMs);
    await statusOf(counting, key);
    expect(objectCalls).toBe(2);
  });

  it("an org suspended by support reads 200 on GET /v1/status while the same key gets 402 on every export route", async () => {
    const org = uniqueOrg("brk_402");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    for (const path of ["/v1/traces", "/v1/metrics", "/v1/logs"] as const) {
      expect((await ingestWithEnv(env, path, { key, headers: { "content-type": "application/json" }, body: OTLP_JSON[path] })).status).toBe(402);
    }
    const response = await status(env, key);
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
  });
});

describe("revoked keys", () => {
  it("a revoked key reads 401 unknown_ingest_key once the key's 30 s in memory have run out, without any reset", async () => {
    const org = uniqueOrg("brk_revoke");
    const { key, key_id } = await mintKey(org);
    expect((await statusOf(env, key)).state).toBe("ok");
    expect((await billingAdmin(`/orgs/${org}/ingest-keys/${key_id}`, { method: "DELETE" })).ok).toBe(true);
    clock.set(clock.now + GATE_TIMINGS.keyTtlMs + 1);
    const response = await status(env, key);
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: string }).error).toBe("unknown_ingest_key");
  });
});

describe("plan limits and enforcement", () => {
  it("the status says `observe` exactly when the gate lets a would-be refusal through", async () => {
    const org = uniqueOrg("brk_observe");
    // An entry carrying the org's enforcement override (a canary): the gate and the status read the same entry.
    const key = await keyWithVerdict(org, {
      state: "ok",
      since: clock.now - DAY,
      version: 5,
      suspend_at: null,
      suspended_at: null,
      pay_url: null,
      limits: [{ feature_id: "spans", signals: ["traces"], reset_at: null }],
      enforcement: "observe",
    });
    const enforcing = { ...env, ENFORCE_LIMITS: "true" };
    const body = await statusOf(enforcing, key);
    const observed = await ingestWithEnv(enforcing, "/v1/traces", { key, ...TRACES });
    expect(observed.status).toBe(200);
    expect(body.enforcement).toBe("observe");
  });

  it("a limit reset exactly now is left out of the status, as the gate no longer applies it", async () => {
    const org = uniqueOrg("brk_reset");
    const key = await keyWithVerdict(org, {
      state: "ok",
      since: clock.now - DAY,
      version: 5,
      suspend_at: null,
      suspended_at: null,
      pay_url: null,
      limits: [{ feature_id: "spans", signals: ["traces"], reset_at: clock.now }],
    });
    const enforcing = { ...env, ENFORCE_LIMITS: "true" };
    expect((await statusOf(enforcing, key)).limits).toEqual([]);
    expect((await ingestWithEnv(enforcing, "/v1/traces", { key, ...TRACES })).status).toBe(200);
  });
});

describe("old entries and keys", () => {
  it("the oldest entry shape (no pay_url, limits, enforcement, reason or parked) still answers every documented field", async () => {
    const org = uniqueOrg("brk_oldest");
    const key = await keyWithVerdict(org, { state: "overdue", since: clock.now - HOUR, version: 3, suspend_at: clock.now + DAY, suspended_at: null });
    const body = await statusOf(env, key);
    expect(body).toEqual({
      org_id: org,
      state: "overdue",
      reason: expect.stringContaining(`ingestion stops at ${new Date(clock.now + DAY).toISOString().replace(/\.\d{3}Z$/, "Z")}`),
      since: new Date(clock.now - HOUR).toISOString(),
      deadline: new Date(clock.now + DAY).toISOString(),
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

  it("a key entry without a verdict and no mirror entry (never published): ok, since null (docs)", async () => {
    const org = uniqueOrg("brk_nomirror");
    const key = await keyWithVerdict(org, null);
    await env.BILLING_STATE.delete(billingStateKey(org));
    const body = await statusOf(env, key);
    expect(body).toMatchObject({ state: "ok", since: null, deadline: null, parked: { batches: 0, bytes: 0, updated_at: null }, source: "mirror" });
  });

  it("a mirror entry with a non-https pay link shows no pay_url and no 'Pay at' sentence", async () => {
    const org = uniqueOrg("brk_http");
    const key = await keyWithVerdict(org, { state: "overdue", since: clock.now - HOUR, version: 3, suspend_at: clock.now + DAY, suspended_at: null, pay_url: "http://evil.example/pay" });
    const body = await statusOf(env, key);
    expect(body.pay_url).toBeNull();
    expect(body.reason).not.toContain("evil");
  });
});

describe("methods, paths and headers", () => {
  it("HEAD, OPTIONS, PUT, DELETE and PATCH are 405 with Allow: GET and no-store, without reading the key", async () => {
    const org = uniqueOrg("brk_methods");
    const { key } = await mintKey(org);
    for (const method of ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"]) {
      const response = await status(env, key, { method });
      expect(response.status, method).toBe(405);
      expect(response.headers.get("allow"), method).toBe("GET");
      expect(response.headers.get("cache-control"), method).toBe("no-store");
    }
    expect(gate.counters.keyLookups).toBe(0);
  });

  it("a query string is ignored (and never carries the key); a trailing slash or another case is not the route", async () => {
    const org = uniqueOrg("brk_query");
    const { key } = await mintKey(org);
    expect((await status(env, key, {}, "/v1/status?verbose=1&org=someone_else")).status).toBe(200);
    const viaQuery = await status(env, null, {}, `/v1/status?key=${key}`);
    expect(viaQuery.status).toBe(401);
    expect(((await viaQuery.json()) as { error: string }).error).toBe("missing_ingest_key");
    expect((await status(env, key, {}, "/V1/STATUS")).status).toBe(404);
  });

  it("a huge Authorization header is a 401 malformed_ingest_key, and no log line carries it", async () => {
    const lines = vi.spyOn(console, "log");
    const warns = vi.spyOn(console, "warn");
    try {
      const huge = `tg_ik_${"A".repeat(16_000)}`;
      const response = await status(env, null, { headers: { authorization: `Bearer ${huge}` } });
      expect(response.status).toBe(401);
      expect(((await response.json()) as { error: string }).error).toBe("malformed_ingest_key");
      const logged = JSON.stringify([...lines.mock.calls, ...warns.mock.calls]);
      expect(logged).not.toContain("AAAAAAAAAAAAAAAA");
    } finally {
      lines.mockRestore();
      warns.mockRestore();
    }
  });

  it("a bearer key beside a different x-ingest-key: the bearer key is the one read (the export's rule)", async () => {
    const mine = uniqueOrg("brk_mine");
    const theirs = uniqueOrg("brk_theirs");
    const { key } = await mintKey(mine);
    const { key: other } = await mintKey(theirs);
    const body = (await (await status(env, null, { headers: { authorization: `bearer ${key}`, "x-ingest-key": other } })).json()) as OrgStatus;
    expect(body.org_id).toBe(mine);
  });

  it("no log line of any status answer (200, 401 unknown, 401 revoked) carries the key", async () => {
    const org = uniqueOrg("brk_logs");
    const { key, key_id } = await mintKey(org);
    const spies = [vi.spyOn(console, "log"), vi.spyOn(console, "warn"), vi.spyOn(console, "error")];
    try {
      const sampled = { ...env, LOG_SAMPLE_RATE: "1" };
      await statusOf(sampled, key);
      await status(sampled, `${key.slice(0, -4)}zzzz`);
      await billingAdmin(`/orgs/${org}/ingest-keys/${key_id}`, { method: "DELETE" });
      gate.reset();
      await status(sampled, key);
      const logged = JSON.stringify(spies.flatMap((spy) => spy.mock.calls));
      expect(logged).toContain("ingest_status");
      expect(logged).not.toContain(key.slice(6));
      expect(logged).not.toContain(key.slice(6, -4));
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});

describe("payment, exemption and minting, end to end", () => {
  it("a policy suspension lifted by payment: the status says ok within a second of the object knowing, with no pay link left", async () => {
    const org = uniqueOrg("brk_paid");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    await pastDue(org, clock.now - 10 * DAY);
    await sitOutMinimumNotice(org, clock);
    expect((await statusOf(env, key)).state).toBe("suspended");
    await autumn.pay(org, { webhook: false });
    expect((await billingAdmin(`/orgs/${org}/resync`, { method: "POST" })).ok).toBe(true);
    clock.set(clock.now + GATE_TIMINGS.confirmTtlMs);
    const body = await statusOf(env, key);
    expect(body).toMatchObject({ state: "ok", pay_url: null, deadline: null, suspended_at: null, reason: "In good standing: no invoice is past due." });
  });

  it("an exemption with an end: the status's deadline is the published one (mirror and admin view), and the sentence names the exemption", async () => {
    const org = uniqueOrg("brk_exempt");
    await autumn.createCustomer(org);
    const { key } = await mintKey(org);
    await pastDue(org, clock.now);
    const until = clock.now + 5 * DAY;
    const exempted = await billingAdmin(`/orgs/${org}/override`, { method: "POST", body: JSON.stringify({ action: "exempt", until: new Date(until).toISOString(), note: "test" }) });
    expect(exempted.ok).toBe(true);
    const mirror = (await mirrorOf(org))!;
    const view = (await (await billingAdmin(`/orgs/${org}`)).json()) as { published_deadline: string | null };
    gate.reset();
    const body = await statusOf(env, key);
    expect(mirror.reason).toBe("exempt");
    expect(body.deadline).toBe(view.published_deadline);
    expect(body.deadline).toBe(new Date(mirror.suspend_at!).toISOString());
    expect(Date.parse(body.deadline!)).toBeGreaterThanOrEqual(until);
    expect(body.reason).toContain("support has exempted the org for now, but ingestion stops at");
  });

  it("two keys minted at different times before the org has a record read the same `since`", async () => {
    const org = uniqueOrg("brk_twokeys");
    const { key: first } = await mintKey(org);
    clock.set(clock.now + HOUR);
    const { key: second } = await mintKey(org);
    const a = await statusOf(env, first);
    gate.reset();
    const b = await statusOf(env, second);
    expect(b.since).toBe(a.since);
  });
});

describe("parking through the real routes", () => {
  it("a batch parked while suspended, then delivered after support lifts the suspension: the status goes from one batch to none", async () => {
    const org = uniqueOrg("brk_realpark");
    const { key } = await mintKey(org);
    await override(org, "suspend");
    const parking = parkingEnv();
    const t0 = clock.now;
    expect((await send(parking, "/v1/traces", key, TRACES, true)).status).toBe(402);
    gate.reset();
    expect((await statusOf(parking, key)).parked).toMatchObject({ batches: 1 });
    await override(org, "clear");
    gate.reset();
    expect(await deliver(parking, org)).toMatchObject({ delivered: 1 });
    // The delivery's report came within the minute of the park's publication: held back for the alarm.
    clock.set(t0 + PARKED_PUBLISH_INTERVAL_MS);
    await runDurableObjectAlarm(orgStub(org));
    gate.reset();
    expect((await statusOf(parking, key)).parked).toMatchObject({ batches: 0, bytes: 0 });
  });
});
