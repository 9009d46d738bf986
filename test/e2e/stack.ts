import { readFileSync } from "node:fs";
import { inject } from "vitest";

/** Helpers for end-to-end tests against the running local stack (see global-setup.ts). */
export const stack = inject("e2e");

export async function json<T = unknown>(response: Response): Promise<T> {
  const text = await response.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`expected JSON, got ${response.status}: ${text.slice(0, 200)}`);
  }
}

export async function admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`${stack.billingUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await json<T>(response) };
}

/** The Autumn stand-in's control API: every change also delivers a Svix-signed webhook to the billing Worker. */
export async function autumnControl(path: string, body: unknown = {}): Promise<{ webhook: { delivered: { status: number } | { error: string } | null; headers: Record<string, string>; body: string } }> {
  const response = await fetch(`${stack.autumnUrl}/_control${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`stand-in ${path} answered ${response.status}: ${await response.text()}`);
  return json(response);
}

export async function newCustomer(id: string): Promise<void> {
  await autumnControl("/customers", { id });
}

export async function mintKey(orgId: string): Promise<string> {
  const { status, body } = await admin<{ key: string }>("POST", `/orgs/${orgId}/ingest-keys`);
  if (status !== 201) throw new Error(`minting answered ${status}`);
  return body.key;
}

export async function orgState(orgId: string): Promise<{ state: string; reason: string; history: unknown[] }> {
  return (await admin<{ state: string; reason: string; history: unknown[] }>("GET", `/orgs/${orgId}`)).body;
}

export async function sinkStats(): Promise<{ tenants: Record<string, { requests: number; bytes: number; paths: Record<string, { requests: number }> }> }> {
  return json(await fetch(`${stack.sinkUrl}/_control/stats`));
}

export async function sinkRequests(tenant: string): Promise<{ path: string; tenant: string; content_type: string; content_encoding: string | null }[]> {
  return (await json<{ requests: never[] }>(await fetch(`${stack.sinkUrl}/_control/requests?tenant=${encodeURIComponent(tenant)}`))).requests;
}

/** How many requests the ingest Worker answered with `status` so far (wrangler dev logs one line per request). */
export function ingestAnswers(status: number): number {
  const log = readFileSync(stack.workerLog, "utf8");
  return log.split("\n").filter((line) => line.startsWith("[ingest]") && new RegExp(`\\] POST /v1/\\S+ ${status} `).test(line)).length;
}

export async function waitFor<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last value ${JSON.stringify(value).slice(0, 300)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
