import { createExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { sessionCookie } from "../../src/billing/console/session.ts";
import worker from "../../src/billing/worker.ts";
import { orgIdFromPath } from "../../src/shared/storage-keys.ts";
import { autumn } from "../support/autumn.ts";
import { admin, BILLING, billingUpdated, deleteAllAlarms, orgState, signWebhook, uniqueOrg } from "../support/billing.ts";
import { TEST_ADMIN_TOKEN } from "../support/secrets.ts";
import { prng, type Rng } from "../support/prng.ts";

/**
 * Seeded fuzzing of every billing route: each request is malformed in at least one way
 * (bytes, content type, encoding, deep JSON, percent-encoding, huge headers, method,
 * signature, token, session). The Worker must answer without a 5xx other than the
 * documented retryable 503 not_configured, and nothing may change: the target org (past due
 * in Autumn, so any processing would turn it overdue) keeps its view, Autumn is never asked
 * about it, and no KV entry or ingest key appears.
 */
afterEach(deleteAllAlarms);

/** 30 seeded requests per route in npm test (issue 22: the whole suite in 90 s); `FUZZ_REQUESTS=1000 npm test` sends more (the same seeds, a longer sequence). */
const REQUESTS_PER_ROUTE = Number((env as unknown as Record<string, string | undefined>).FUZZ_REQUESTS || 30);
/** Thousands of requests in one test: a budget, not an assertion. */
const FUZZ_TIMEOUT_MS = 120_000;

const MALFORMED_SEGMENTS = ["%E0", "%", "%%", "%zz", "%C0%AF", "%ED%A0%80", "%FF%FE", "a%2", "..%2F..%2Fetc", "%00", "%2F", "-leading-dash", "a".repeat(129), "%F0%9F%98"];
const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] as const;
const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-16",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=zzz",
  "multipart/form-data",
  "application/octet-stream",
  "application/x-protobuf",
  "application/json; boundary=%E0",
  ";;;",
  "x".repeat(8_192),
];

function randomSegment(rng: Rng): string {
  if (rng.chance(0.7)) return rng.pick(MALFORMED_SEGMENTS);
  // Random bytes, percent-encoded byte by byte: mostly invalid UTF-8 once decoded.
  return [...rng.bytes(1 + rng.int(40))].map((b) => `%${b.toString(16).padStart(2, "0").toUpperCase()}`).join("");
}

function deepJson(rng: Rng): string {
  const depth = 1_000 + rng.int(5_000);
  return rng.chance(0.5) ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

async function truncatedGzip(text: string): Promise<Uint8Array> {
  const gzipped = new Uint8Array(await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
  return gzipped.slice(0, Math.max(1, gzipped.length >> 1));
}

/** A body that is never a valid request for any route: for override, never a well-formed override. */
async function malformedBody(rng: Rng, orgId: string): Promise<{ body: BodyInit | null; headers: Record<string, string> }> {
  switch (rng.int(12)) {
    case 0:
      return { body: null, headers: {} };
    case 1:
      return { body: rng.bytes(rng.int(4_096)), headers: {} };
    case 2:
      return { body: deepJson(rng), headers: { "content-type": "application/json" } };
    case 3:
      // Over the admin API's 64 KiB, sometimes over the webhook's 256 KiB.
      return { body: "a".repeat(64 * 1024 + 1 + rng.int(256 * 1024)), headers: { "content-type": "application/json" } };
    case 4:
      return { body: Uint8Array.from([0xff, 0xfe, 0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), headers: { "content-type": "application/json" } };
    case 5:
      return { body: rng.pick(["action=exempt&note=", "action=forgive&note=x", "token=%E0", "a=%&b=%zz", "action=exempt&until=tomorrow&note=x", "&&&=="]), headers: { "content-type": "application/x-www-form-urlencoded" } };
    case 6:
      return { body: "--zzz\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n", headers: { "content-type": "multipart/form-data; boundary=zzz" } };
    case 7:
      return { body: await truncatedGzip(JSON.stringify({ action: "exempt", note: "x" })), headers: { "content-type": "application/json", "content-encoding": "gzip" } };
    case 8:
      return { body: JSON.stringify({ action: "exempt", note: "x" }), headers: { "content-type": "application/json", "content-encoding": rng.pick(["gzip", "br", "deflate", "zstd, gzip"]) } };
    case 9:
      // Override-shaped, each invalid: no note, empty note, unknown action, malformed or past until, clear with until.
      return {
        body: JSON.stringify(
          rng.pick([
            { action: "exempt" },
            { action: "suspend", note: "   " },
            { action: "forgive", note: "x" },
            { action: "exempt", note: "x", until: "tomorrow" },
            { action: "exempt", note: "x", until: "2001-01-01T00:00:00Z" },
            { action: ["exempt"], note: "x" },
            { action: "unsuspend", note: { deep: deepJson(rng) } },
            { action: "clear", note: "x".repeat(2_001) },
          ]),
        ),
        headers: { "content-type": "application/json" },
      };
    case 10:
      return { body: JSON.stringify({ type: "billing.updated", data: { customer_id: `${orgId}/../x` } }), headers: { "content-type": rng.pick(CONTENT_TYPES) } };
    default:
      return { body: rng.pick(["", " ", "null", "[]", "{", "\u0000", "\ufeff{}", "1e999999"]), headers: { "content-type": rng.pick(CONTENT_TYPES) } };
  }
}

function hugeHeaders(rng: Rng): Record<string, string> {
  if (!rng.chance(0.2)) return {};
  return { "x-fuzz": "h".repeat(16 * 1024 + rng.int(64 * 1024)), "user-agent": "u".repeat(4_096) };
}

const SECRET_NAMES = ["AUTUMN_WEBHOOK_SECRET", "ADMIN_TOKEN"] as const;

type Outcome = { method: string; path: string; status: number; error?: string };

/**
 * Sends one request: usually through the deployed entry (`exports.default`), sometimes through
 * the same Worker with a secret unset, where 503 not_configured is the documented answer.
 */
async function send(rng: Rng, method: string, path: string, init: { headers: Record<string, string>; body: BodyInit | null }): Promise<Outcome> {
  const request = new Request(`${BILLING}${path}`, { method, headers: init.headers, body: method === "GET" || method === "HEAD" ? null : init.body, redirect: "manual" });
  const unconfigured = rng.chance(0.1);
  const response = unconfigured
    ? await worker.fetch(request as Request<unknown, IncomingRequestCfProperties>, { ...env, [rng.pick(SECRET_NAMES)]: "" } as BillingEnv, createExecutionContext())
    : await exports.default.fetch(request);
  const outcome: Outcome = { method, path: path.slice(0, 120), status: response.status };
  if ((response.headers.get("content-type") ?? "").includes("json")) {
    const body = (await response.json().catch(() => null)) as { error?: unknown } | null;
    if (typeof body?.error === "string") outcome.error = body.error;
  } else await response.body?.cancel();
  return outcome;
}

/** A 5xx is allowed only as the retryable 503 not_configured (a secret unset). */
function unexpected(outcomes: Outcome[]): Outcome[] {
  return outcomes.filter((o) => o.status >= 500 && !(o.status === 503 && o.error === "not_configured"));
}

/** A past-due customer in Autumn that Tollgate has never seen: any processing would change it. */
async function targetOrg(prefix: string): Promise<{ org: string; snapshot: () => Promise<unknown> }> {
  const org = uniqueOrg(prefix);
  await autumn.createCustomer(org);
  await autumn.pastDue(org, { at: Date.now() - 10 * 86_400_000, webhook: false });
  const snapshot = async () => ({
    // `since` of an org never seen is "now"; every stored field must stay as it was.
    view: { ...(await orgState(org)), since: undefined },
    keys: await (await admin(`/orgs/${org}/ingest-keys`)).json(),
    autumnCalls: (await autumn.calls(org)).length,
    mirror: (await env.BILLING_STATE.list()).keys.map((k) => k.name),
    ingestKeys: (await env.INGEST_KEYS.list()).keys.map((k) => k.name),
    // No reconciliation sweep was started (it would read Autumn and find the org past due).
    sweep: (await admin("/reconcile")).status,
  });
  return { org, snapshot };
}

async function expectUnchanged(target: { org: string; snapshot: () => Promise<unknown> }, before: unknown) {
  const after = (await target.snapshot()) as { autumnCalls: number; sweep: number; view: { state: string; history: unknown[] } };
  expect(after).toEqual(before);
  expect(after.autumnCalls).toBe(0);
  expect(after).toMatchObject({ sweep: 404 });
  expect(after.view).toMatchObject({ state: "ok", history: [] });
}

function adminAuthorization(rng: Rng): { headers: Record<string, string>; valid: boolean } {
  switch (rng.int(7)) {
    case 0:
      return { headers: {}, valid: false };
    case 1:
      return { headers: { authorization: "Bearer wrong-token" }, valid: false };
    case 2:
      return { headers: { authorization: rng.pick(["Bearer", "Bearer a b", "Basic dGVzdA==", `Bearer ${TEST_ADMIN_TOKEN}x`, "bearer\t", "Bearer %E0"]) }, valid: false };
    case 3:
      return { headers: { authorization: `Bearer ${"t".repeat(32 * 1024)}` }, valid: false };
    default:
      return { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` }, valid: true };
  }
}

/**
 * Whether a request, if authorized, is a real write: the only well-formed requests the fuzzer
 * can produce by chance (an override or key revocation always has a bad body or unknown key).
 * Routes match with trailing slashes and any query, as itty-router matches them.
 */
function writes(method: string, path: string): boolean {
  if (method !== "POST") return false;
  const route = path.split("?")[0]!.replace(/\/+$/, "");
  if (route === "/admin/reconcile" || route === "/admin/sweep") return true;
  const org = /^\/admin\/orgs?\/([^/]+)\/(?:resync|ingest-keys)$/.exec(route)?.[1];
  return org !== undefined && orgIdFromPath(org) !== null;
}

type AdminRoute = { method: string; path: (org: string, rng: Rng) => string };
const ADMIN_ROUTES: Record<string, AdminRoute> = {
  "POST /admin/reconcile": { method: "POST", path: (_org, rng) => `/admin/reconcile${rng.pick(["", "?%E0", "/", "/%E0"])}` },
  "GET /admin/reconcile": { method: "GET", path: (_org, rng) => `/admin/reconcile${rng.pick(["", "?id=%", "/x"])}` },
  "GET /admin/orgs": { method: "GET", path: (_org, rng) => `/admin/orgs${rng.pick(["", "?state=", "?state=%E0", "?state=overdue&limit=0", "?state=ok&limit=201", "?state=ok&cursor=-1", "?state=ok&cursor=%", "?state=suspended&cursor=1e9999", "?state=ok&state=overdue"])}` },
  "GET /admin/orgs/{orgId}": { method: "GET", path: (org) => `/admin/orgs/${org}` },
  "POST /admin/orgs/{orgId}/resync": { method: "POST", path: (org) => `/admin/orgs/${org}/resync` },
  "POST /admin/orgs/{orgId}/override": { method: "POST", path: (org) => `/admin/orgs/${org}/override` },
  "POST /admin/orgs/{orgId}/ingest-keys": { method: "POST", path: (org) => `/admin/orgs/${org}/ingest-keys` },
  "GET /admin/orgs/{orgId}/ingest-keys": { method: "GET", path: (org) => `/admin/orgs/${org}/ingest-keys` },
  "DELETE /admin/orgs/{orgId}/ingest-keys/{keyId}": { method: "DELETE", path: (org, rng) => `/admin/orgs/${org}/ingest-keys/${rng.chance(0.5) ? randomSegment(rng) : "ik_0123456789abcdef"}` },
};

describe("fuzzing the billing Worker: no 5xx but not_configured, no state change", () => {
  it(`the webhook endpoint, ${REQUESTS_PER_ROUTE * 2} malformed deliveries`, async () => {
    const rng = prng(0x7011_6a7e);
    const target = await targetOrg("fuzz_webhook");
    const before = await target.snapshot();
    const outcomes: Outcome[] = [];
    for (let i = 0; i < REQUESTS_PER_ROUTE * 2; i++) {
      const { body, headers } = await malformedBody(rng, target.org);
      const text = typeof body === "string" ? body : JSON.stringify(billingUpdated(target.org));
      // A genuine signature for the org's billing.updated, to be spoiled below (or a signed malformed body).
      const signed = signWebhook(text, rng.chance(0.2) ? { at: Date.now() - rng.pick([-1, 1]) * (301_000 + rng.int(86_400_000)) } : {});
      let sigHeaders: Record<string, string>;
      let sentBody: BodyInit | null = body;
      switch (rng.int(8)) {
        case 0:
          sigHeaders = {};
          break;
        case 1:
          sigHeaders = { "svix-id": signed.headers["svix-id"]!, "svix-timestamp": signed.headers["svix-timestamp"]! };
          break;
        case 2:
          sigHeaders = { ...signed.headers, "svix-signature": rng.pick(["v1,", "v1", ",", "v1,%E0", "v2,abc", "v1,AAAA", " ".repeat(100)]) };
          break;
        case 3:
          sigHeaders = { ...signed.headers, "svix-signature": Array.from({ length: 33 + rng.int(2_000) }, () => signed.headers["svix-signature"]!).join(" ") };
          break;
        case 4:
          sigHeaders = { ...signed.headers, "svix-timestamp": rng.pick(["", "abc", "1e9", "-1", "99999999999999999999", "1614265330.5"]) };
          break;
        case 5:
          // Mixed header families never verify.
          sigHeaders = { "svix-id": signed.headers["svix-id"]!, "webhook-timestamp": signed.headers["svix-timestamp"]!, "svix-signature": signed.headers["svix-signature"]! };
          break;
        case 6:
          // The signature of the org's real event, sent with another body.
          sigHeaders = { ...signWebhook(billingUpdated(target.org)).headers };
          sentBody = body ?? rng.bytes(64);
          break;
        default:
          // Correctly signed, but the signed body is itself malformed (never the org's billing.updated).
          sigHeaders = signed.headers;
          sentBody = typeof body === "string" ? body : rng.pick(["{}", '{"type":1}', '{"type":"billing.updated","data":{}}', `{"type":"billing.updated","data":{"customer_id":"${target.org}%E0"}}`]);
          if (typeof body !== "string") sigHeaders = signWebhook(sentBody as string).headers;
      }
      const method = rng.chance(0.8) ? "POST" : rng.pick(METHODS);
      outcomes.push(await send(rng, method, rng.chance(0.9) ? "/api/billing/autumn/webhook" : `/api/billing/autumn/webhook/${randomSegment(rng)}`, { headers: { ...headers, ...sigHeaders, ...hugeHeaders(rng) }, body: sentBody }));
    }
    expect(unexpected(outcomes)).toEqual([]);
    await expectUnchanged(target, before);
  }, FUZZ_TIMEOUT_MS);

  it.each(Object.keys(ADMIN_ROUTES))(`%s, ${REQUESTS_PER_ROUTE} malformed requests`, async (name) => {
    const route = ADMIN_ROUTES[name]!;
    const rng = prng([...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16_777_619), 2_166_136_261));
    const target = await targetOrg("fuzz_admin");
    const before = await target.snapshot();
    const outcomes: Outcome[] = [];
    for (let i = 0; i < REQUESTS_PER_ROUTE; i++) {
      const auth = adminAuthorization(rng);
      const method = rng.chance(0.7) ? route.method : rng.pick(METHODS);
      const org = rng.chance(0.4) ? target.org : randomSegment(rng);
      const path = route.path(org, rng);
      // An authorized write is not malformed: send it with a wrong token instead.
      const authorization = auth.valid && writes(method, path) ? { authorization: "Bearer wrong-token" } : auth.headers;
      const { body, headers } = await malformedBody(rng, target.org);
      outcomes.push(await send(rng, method, path, { headers: { ...headers, ...authorization, ...hugeHeaders(rng) }, body }));
    }
    expect(unexpected(outcomes)).toEqual([]);
    // Every refusal carries a stable code (HEAD answers have no body to carry it).
    expect(outcomes.filter((o) => o.status >= 400 && o.method !== "HEAD" && o.error === undefined)).toEqual([]);
    await expectUnchanged(target, before);
  }, FUZZ_TIMEOUT_MS);

  const CONSOLE_PAGES: Record<string, { method: string; path: (org: string, rng: Rng) => string }> = {
    "GET /admin/login": { method: "GET", path: () => "/admin/login" },
    "POST /admin/login": { method: "POST", path: () => "/admin/login" },
    "POST /admin/logout": { method: "POST", path: () => "/admin/logout" },
    "GET /admin": { method: "GET", path: () => "/admin" },
    "POST /admin/sweep": { method: "POST", path: (_org, rng) => `/admin/sweep${rng.pick(["", "?%E0", "/%E0"])}` },
    "GET /admin/list/{state}": { method: "GET", path: (_org, rng) => `/admin/list/${rng.pick(["ok", "overdue", "suspended", "%E0", "nope", "ok%00"])}?cursor=${rng.pick(["", "-1", "%", "1e99", "abc", "99999999999"])}` },
    "GET /admin/org?id=": { method: "GET", path: (org) => `/admin/org?id=${org}` },
    "GET /admin/org/{orgId}": { method: "GET", path: (org) => `/admin/org/${org}` },
    "POST /admin/org/{orgId}/resync": { method: "POST", path: (org) => `/admin/org/${org}/resync` },
    "POST /admin/org/{orgId}/override": { method: "POST", path: (org) => `/admin/org/${org}/override` },
    "unknown console pages": { method: "GET", path: (_org, rng) => `/admin/${randomSegment(rng)}/${randomSegment(rng)}` },
  };

  it.each(Object.keys(CONSOLE_PAGES))(`the console's %s, ${REQUESTS_PER_ROUTE} malformed requests`, async (name) => {
    const page = CONSOLE_PAGES[name]!;
    const rng = prng([...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16_777_619), 0xc0_5013));
    const target = await targetOrg("fuzz_console");
    const before = await target.snapshot();
    const valid = (await sessionCookie(TEST_ADMIN_TOKEN, Date.now())).split(";")[0]!;
    const outcomes: Outcome[] = [];
    for (let i = 0; i < REQUESTS_PER_ROUTE; i++) {
      const session = rng.pick(["none", "garbage", "forged", "expired", "valid", "valid"] as const);
      const cookie = {
        none: undefined,
        garbage: `tollgate_session=${randomSegment(rng)}; ${"c".repeat(rng.int(8_192))}=1`,
        forged: `tollgate_session=${Date.now() + 3_600_000}.${"A".repeat(43)}`,
        expired: `tollgate_session=1000000000000.${"A".repeat(43)}`,
        valid,
      }[session];
      const method = rng.chance(0.7) ? page.method : rng.pick(METHODS);
      const org = rng.chance(0.4) ? target.org : randomSegment(rng);
      const path = page.path(org, rng);
      let origin = rng.pick([BILLING, "https://evil.example", null, "null", "%E0"]);
      // A signed-in same-origin write is real: send it from another origin instead.
      if (session === "valid" && origin === BILLING && writes(method, path)) origin = "https://evil.example";
      const { body, headers } = await malformedBody(rng, target.org);
      outcomes.push(
        await send(rng, method, path, {
          headers: { ...headers, ...(cookie ? { cookie } : {}), ...(origin ? { origin } : {}), ...hugeHeaders(rng) },
          body,
        }),
      );
    }
    expect(unexpected(outcomes)).toEqual([]);
    await expectUnchanged(target, before);
  }, FUZZ_TIMEOUT_MS);

  it(`other paths and methods, ${REQUESTS_PER_ROUTE} requests`, async () => {
    const rng = prng(0x0dd_ba11);
    const target = await targetOrg("fuzz_other");
    const before = await target.snapshot();
    const outcomes: Outcome[] = [];
    for (let i = 0; i < REQUESTS_PER_ROUTE; i++) {
      const path = rng.pick([`/health`, `/${randomSegment(rng)}`, `/api/${randomSegment(rng)}`, `/admin/orgs/${target.org}/${randomSegment(rng)}`, `/admin/orgs/${randomSegment(rng)}/${randomSegment(rng)}/${randomSegment(rng)}`, `/admin/orgs?${randomSegment(rng)}=${randomSegment(rng)}`]);
      const { body, headers } = await malformedBody(rng, target.org);
      const method = rng.pick(METHODS);
      const auth = adminAuthorization(rng);
      outcomes.push(await send(rng, method, path, { headers: { ...headers, ...(auth.valid && writes(method, path) ? {} : auth.headers), ...hugeHeaders(rng) }, body }));
    }
    expect(unexpected(outcomes)).toEqual([]);
    await expectUnchanged(target, before);
  }, FUZZ_TIMEOUT_MS);
});
