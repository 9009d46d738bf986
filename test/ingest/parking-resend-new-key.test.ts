import { createExecutionContext, createMessageBatch, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { handleDeliveries } from "../../src/ingest/parking/deliveries.ts";
import { orgPrefix } from "../../src/ingest/parking/store.ts";
import { gate, logThrottle } from "../../src/ingest/request/isolate.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { billingAdmin, bodyOf, INGEST, mintKey, override, sink } from "../support/ingest.ts";

/**
 * Break: "Kept once" (digest markers) meets "Revoked keys" (decision 10d). The digest of a refused
 * batch covers its route and bytes, not the key it came with. A batch refused with key A is parked
 * (carrying key_id A) and marked; the org rotates to key B and revokes A (the README's advice is to
 * revoke a rotated-out key only after paying, but the resend here comes WITH THE NEW KEY, so its data
 * should not depend on A); the job resends the same bytes with B and is told "kept ... delivered once
 * the invoice is paid", yet nothing was kept for B: at delivery the only copy carries A and is
 * discarded. The client was promised delivery and the data is lost.
 */

const bucket = (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST;
const noQueue = { send: async () => {}, sendBatch: async () => {} };
const parkingEnv = () => ({ ...env, PARKING: bucket, DELIVERIES: noQueue, PARK_MAX_BYTES: "4MiB", PARK_RETENTION: "72h" }) as unknown as IngestEnv;

async function send(workerEnv: object, path: string, key: string, init: RequestInit = {}) {
  const { default: worker } = await import("../../src/ingest/worker.ts");
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${key}`);
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`${INGEST}${path}`, { method: "POST", ...init, headers }) as never, workerEnv as IngestEnv, ctx);
  const text = await response.text();
  await waitOnExecutionContext(ctx);
  return { status: response.status, text };
}

async function deliver(workerEnv: object, orgId: string) {
  const batch = createMessageBatch("tollgate-deliveries", [{ id: `m-${orgId}-${Math.random()}`, timestamp: new Date(), attempts: 1, body: { org_id: orgId } }]);
  return (await handleDeliveries(batch, workerEnv as never))[0]!;
}

let org: string;
beforeEach(() => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("brkdigkey");
});
afterEach(async () => {
  await sink.clearFaults();
  await deleteAllAlarms();
});

describe("break: a 402 'kept' answer is honoured (digest marker x revoked key)", () => {
  it("a batch resent with an active key after the first copy's key was revoked is told 'kept' and must reach upstream after payment", async () => {
    const a = await mintKey(org);
    const b = await mintKey(org);
    const workerEnv = parkingEnv();
    await override(org, "suspend");
    const body = new Uint8Array(120).fill(7);
    const proto = { "content-type": "application/x-protobuf" };

    const first = await send(workerEnv, "/v1/traces", a.key, { headers: proto, body });
    expect(first.status).toBe(402);
    expect(first.text).toContain("kept for");

    // Key rotation: A is revoked, the exporter now sends with B and resends the refused batch.
    expect((await billingAdmin(`/orgs/${org}/ingest-keys/${a.key_id}`, { method: "DELETE" })).ok).toBe(true);
    gate.reset();
    const resend = await send(workerEnv, "/v1/traces", b.key, { headers: proto, body });
    expect(resend.status).toBe(402);
    // The client with the active key B is told its batch is kept and will be delivered once paid.
    expect(resend.text).toContain("kept for");

    await override(org, "clear");
    const run = await deliver(workerEnv, org);
    expect((await bucket.list({ prefix: orgPrefix(org) })).objects).toHaveLength(0);
    // Promise: what was answered "kept" with an active key reaches upstream after payment.
    const bodies = (await sink.requests(org)).map(bodyOf);
    expect({ delivered: bodies.length, revoked: run.revoked }).toEqual({ delivered: 1, revoked: 0 });
  });
});
