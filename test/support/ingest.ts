import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach, beforeEach } from "vitest";
import { fakeUrl } from "./fake-urls.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "./billing.ts";
import billingWorker from "../../src/billing/worker.ts";
import { TEST_ADMIN_TOKEN, TEST_INGEST_KEY_PEPPER } from "./secrets.ts";
import { hashIngestKey } from "../../src/shared/ingest-key.ts";
import { ingestKeyHashKey } from "../../src/shared/storage-keys.ts";

export const INGEST = "http://ingest.test";

/** The billing Worker's admin API, driven in this test Worker with the same bindings. */
export async function billingAdmin(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${TEST_ADMIN_TOKEN}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  const ctx = createExecutionContext();
  const request = new Request(`http://billing.test/admin${path}`, { ...init, headers }) as Request<unknown, IncomingRequestCfProperties>;
  const response = await billingWorker.fetch(request, env as unknown as BillingEnv, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

export async function mintKey(orgId: string): Promise<{ key_id: string; key: string }> {
  const response = await billingAdmin(`/orgs/${orgId}/ingest-keys`, { method: "POST" });
  if (response.status !== 201) throw new Error(`minting a key answered ${response.status}: ${await response.text()}`);
  return response.json();
}

export async function override(orgId: string, action: "suspend" | "clear" | "exempt" | "unsuspend", note = "test"): Promise<void> {
  const response = await billingAdmin(`/orgs/${orgId}/override`, { method: "POST", body: JSON.stringify({ action, note }) });
  if (!response.ok) throw new Error(`override answered ${response.status}: ${await response.text()}`);
}

/** The ingest Worker called directly with a different env (an outage, an optional binding). */
export async function ingestWithEnv(workerEnv: object, path: string, init: RequestInit & { key?: string } = {}): Promise<Response> {
  const { default: worker } = await import("../../src/ingest/worker.ts");
  const headers = new Headers(init.headers);
  if (init.key) headers.set("authorization", `Bearer ${init.key}`);
  const request = new Request(`${INGEST}${path}`, { method: "POST", ...init, headers }) as Request<unknown, IncomingRequestCfProperties>;
  return worker.fetch(request, workerEnv as IngestEnv, createExecutionContext());
}

export function ingest(path: string, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.key) headers.set("authorization", `Bearer ${init.key}`);
  return exports.default.fetch(`${INGEST}${path}`, { method: "POST", ...init, headers });
}

/** The sink's request record (tools/upstream-sink RequestRecordJson), restated: that module is Node code. */
export type SinkRecord = {
  path: string;
  tenant: string | null;
  content_type: string | null;
  content_encoding: string | null;
  bytes: number;
  sha256: string;
  headers: Record<string, string>;
  body_base64: string;
};

async function sinkControl<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${fakeUrl("sinkUrl")}/_control${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!response.ok) throw new Error(`sink ${method} ${path} answered ${response.status}`);
  return (await response.json()) as T;
}

/**
 * A `slow` sink fault for the timeout tests: far past the 1 s UPSTREAM_TIMEOUT they set, because a runtime starved
 * of CPU on a loaded machine runs its overdue timer and the sink's answer in the same turn, and twice in CI (the sink
 * at 1.5 s, then at 5 s) the answer came first. It never holds a test up: the Worker gives up at 1 s.
 */
export const SLOW_UPSTREAM_MS = 20_000;

export const sink = {
  requests: async (tenant: string) => (await sinkControl<{ requests: SinkRecord[] }>("GET", `/requests?tenant=${encodeURIComponent(tenant)}`)).requests,
  fault: (fault: { mode: "status" | "slow" | "reset" | "partial"; status?: number; retry_after?: number; delay_ms?: number; count?: number; tenant?: string; rejected?: number; message?: string }) =>
    sinkControl("POST", "/faults", fault),
  clearFaults: () => sinkControl("DELETE", "/faults"),
  /** Requests the sink accepted from one tenant, counted without bound (the request records keep only the last 1,000). */
  accepted: async (tenant: string) => (await sinkControl<{ tenants: Record<string, { requests: number }> }>("GET", "/stats")).tenants[tenant]?.requests ?? 0,
};

export function bodyOf(record: SinkRecord): Uint8Array {
  return Uint8Array.from(atob(record.body_base64), (c) => c.charCodeAt(0));
}

export async function sha256Hex(bytes: Uint8Array | string): Promise<string> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", data))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function gzip(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
}

/**
 * For a test file whose tests each send as a fresh paying org: empties the isolate's caches, mints the
 * org a key before each test (handed to `use`), and clears the sink's faults and every alarm after.
 */
export function freshOrgPerTest(prefix: string, use: (orgId: string, key: string) => void): void {
  beforeEach(async () => {
    gate.reset();
    logThrottle.reset();
    const orgId = uniqueOrg(prefix);
    use(orgId, (await mintKey(orgId)).key);
  });
  afterEach(async () => {
    await sink.clearFaults();
    await deleteAllAlarms();
  });
}

/** The real env with every KV read and object call counted (a fresh env: fresh gate sources). */
export function countingEnv() {
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
    env: {
      ...env,
      INGEST_KEYS: counted("INGEST_KEYS"),
      BILLING_STATE: counted("BILLING_STATE"),
      ORG_BILLING: { getByName: (name: string) => (reads.object++, objects.getByName(name)) },
    },
  };
}

/**
 * A key whose KV entry carries `verdict`, as the org's publication writes it; any shape (older entries
 * included), and `null` leaves the entry without one.
 */
export async function keyWithVerdict(org: string, verdict: Record<string, unknown> | null): Promise<string> {
  const { key } = await mintKey(org);
  const hashKey = ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, key));
  const { verdict: _dropped, ...record } = (await env.INGEST_KEYS.get(hashKey, "json")) as Record<string, unknown>;
  await env.INGEST_KEYS.put(hashKey, JSON.stringify(verdict === null ? record : { ...record, verdict }));
  return key;
}

/** The test env with KV's mirror reads, the org's object, or both failing (a dependency down), for `ingestWithEnv`. */
export function outageEnv(parts: { kv?: boolean; object?: boolean }) {
  const fail = () => Promise.reject(new Error("simulated outage"));
  return {
    ...env,
    BILLING_STATE: parts.kv ? { get: fail } : env.BILLING_STATE,
    ORG_BILLING: parts.object ? { getByName: () => ({ verdict: fail }) } : env.ORG_BILLING,
  };
}
