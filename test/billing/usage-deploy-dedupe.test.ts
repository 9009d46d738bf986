import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, orgState, orgStub, uniqueOrg } from "../support/billing.ts";

/**
 * Promise: a usage batch is folded into the ledger once across the deploy that introduced streams.
 * Found by a reviewer (issue 18): before the fix, a message first folded by an old consumer (under
 * usage_seen, by message id) and redelivered to a new one (with stream/seq) was checked only against
 * usage_streams and folded a second time.
 */

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

describe("a batch is folded once across the deploy that introduced streams", () => {
  it("a queue message folded by id (old consumer) and redelivered with its stream and seq (new consumer) is a duplicate", async () => {
    const org = uniqueOrg("brkdeploy");
    await autumn.createCustomer(org, { webhook: false });
    const at = Date.now();
    // Old consumer: the same queue message, stream/seq stripped.
    expect(await orgStub(org).recordUsage([{ id: "queue_msg_1", counts: { traces: 50 }, first_at: at, last_at: at }])).toEqual({ ok: true, recorded: 1, duplicates: 0 });
    // Redelivered (ack lost) to a new consumer: same queue message id, now with the batch's stream and seq.
    const again = await orgStub(org).recordUsage([{ id: "queue_msg_1", stream: "isolate_new", seq: 1, counts: { traces: 50 }, first_at: at, last_at: at }]);
    const spans = (await orgState(org)).usage.features.find((f) => f.feature_id === "spans")!;
    expect({ again, received: spans.received }).toEqual({ again: { ok: true, recorded: 0, duplicates: 1 }, received: 50 });
  });
});
