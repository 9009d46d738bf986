import { listDurableObjectIds, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { vi } from "vitest";
import { Webhook } from "standardwebhooks";
import type { OrgView } from "../../src/billing/org/view.ts";
import { MirrorEntry } from "../../src/shared/billing-state.ts";
import { billingStateKey } from "../../src/shared/storage-keys.ts";
import { emptiedByReset, listedStub } from "./listed-objects.ts";
import { TEST_ADMIN_TOKEN, TEST_WEBHOOK_SECRET } from "./secrets.ts";

export const BILLING = "http://billing.test";

export function uniqueOrg(prefix = "org"): string {
  return `${prefix}_${crypto.randomUUID().slice(0, 8)}`;
}

/** A billing.updated for the org, signed now: what Autumn sends after any change to the customer. */
export function deliverNow(orgId: string): Promise<Response> {
  return deliver(signWebhook(billingUpdated(orgId)));
}

/** POSTs a webhook exactly as received (raw body and Svix headers) to the billing Worker. */
export function deliver(webhook: { headers: Record<string, string>; body: string }): Promise<Response> {
  return exports.default.fetch(`${BILLING}/api/billing/autumn/webhook`, { method: "POST", headers: webhook.headers, body: webhook.body });
}

/**
 * Signs with the `standardwebhooks` package (independent of the code under test), at the
 * current (possibly faked) clock so timestamps stay within tolerance after time travel.
 */
export function signWebhook(payload: unknown, options: { id?: string; secret?: string; at?: number } = {}): { headers: Record<string, string>; body: string } {
  const body = typeof payload === "string" ? payload : JSON.stringify(payload);
  const id = options.id ?? `msg_${crypto.randomUUID().replaceAll("-", "")}`;
  const at = new Date(options.at ?? Date.now());
  const signature = new Webhook(options.secret ?? TEST_WEBHOOK_SECRET).sign(id, at, body);
  return {
    headers: { "content-type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(at.getTime() / 1000)), "svix-signature": signature },
    body,
  };
}

export function billingUpdated(customerId: string): unknown {
  return { type: "billing.updated", data: { object: "billing.updated", customer_id: customerId, entity_id: null, plan_changes: [], tags: [] } };
}

/** The admin API with the test token, unless the caller passes its own Authorization (or null for none). */
export function admin(path: string, init: RequestInit & { authorization?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const authorization = init.authorization === undefined ? `Bearer ${TEST_ADMIN_TOKEN}` : init.authorization;
  if (authorization !== null) headers.set("authorization", authorization);
  return exports.default.fetch(`${BILLING}/admin${path}`, { ...init, headers });
}

export async function orgState(orgId: string): Promise<OrgView> {
  const response = await admin(`/orgs/${orgId}`);
  if (!response.ok) throw new Error(`GET /admin/orgs/${orgId} answered ${response.status}`);
  return (await response.json()) as OrgView;
}

export function orgStub(orgId: string) {
  return env.ORG_BILLING.getByName(orgId);
}

export function alarmOf(orgId: string): Promise<number | null> {
  return runInDurableObject(orgStub(orgId), (_instance, state) => state.storage.getAlarm());
}

/**
 * Alarms survive between tests and ignore storage isolation: delete every one a test left behind.
 * Each object is reached by its name (listed-objects.ts); the ones the file's reset emptied are skipped.
 */
export async function deleteAllAlarms(): Promise<void> {
  for (const id of await listDurableObjectIds(env.ORG_BILLING)) {
    if (emptiedByReset.has(id.toString())) continue;
    await runInDurableObject(listedStub(env.ORG_BILLING, id), (_instance, state) => state.storage.deleteAlarm());
  }
}

/** MIN_NOTICE in wrangler.jsonc: no org is suspended sooner after Tollgate first saw it overdue. */
export const MIN_NOTICE_MS = 24 * 3_600_000;

/**
 * An org long past due is first seen overdue and suspended only after the minimum notice:
 * move the (fake) clock past it and let the org's alarm read Autumn.
 */
export async function sitOutMinimumNotice(orgId: string, clock: { now: number; set(ms: number): void }): Promise<void> {
  clock.set(clock.now + MIN_NOTICE_MS);
  await runDurableObjectAlarm(orgStub(orgId));
}

/** The org's KV mirror entry as the ingest Worker reads it; null when none was ever written (ok). */
export async function mirrorOf(orgId: string): Promise<MirrorEntry | null> {
  const raw = await env.BILLING_STATE.get(billingStateKey(orgId));
  return raw === null ? null : MirrorEntry.parse(JSON.parse(raw));
}

/**
 * An env whose namespace's `getByName` is a spy of its own. Counting calls on the runtime's shared `env` also counts
 * background work that other files' requests and objects left running (the runtimes are shared: isolate: false).
 */
export function countedNamespace<K extends "ORG_BILLING" | "ORG_INDEX">(binding: K) {
  const calls = vi.fn((name: string) => env[binding].getByName(name));
  return { env: { ...env, [binding]: { getByName: calls } } as unknown as typeof env, calls };
}
