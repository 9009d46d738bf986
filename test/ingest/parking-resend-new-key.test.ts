import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { orgPrefix } from "../../src/ingest/parking/store.ts";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { billingAdmin, bodyOf, mintKey, override, sink } from "../support/ingest.ts";
import { deliver, parkingBucket as bucket, parkingEnv, send } from "../support/parking.ts";

/**
 * Promise: a batch answered "kept" to an active key reaches the upstream after payment, even when the
 * first copy came with a key since revoked.
 * Found by a reviewer (issue 18): before the fix, the digest marker ignored the key, so a resend with the
 * new key was told "kept" while the only parked copy carried the revoked key and was discarded at delivery.
 */

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

describe("a 402 'kept' answer is honoured (digest marker x revoked key)", () => {
  it("a batch resent with an active key after the first copy's key was revoked is told 'kept' and must reach upstream after payment", async () => {
    const a = await mintKey(org);
    const b = await mintKey(org);
    const workerEnv = parkingEnv();
    await override(org, "suspend");
    const body = new Uint8Array(120).fill(7);
    const proto = { "content-type": "application/x-protobuf" };

    const first = await send(workerEnv, "/v1/traces", a.key, { headers: proto, body }, true);
    expect(first.status).toBe(402);
    expect(first.text).toContain("kept for");

    // Key rotation: A is revoked, the exporter now sends with B and resends the refused batch.
    expect((await billingAdmin(`/orgs/${org}/ingest-keys/${a.key_id}`, { method: "DELETE" })).ok).toBe(true);
    gate.reset();
    const resend = await send(workerEnv, "/v1/traces", b.key, { headers: proto, body }, true);
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
