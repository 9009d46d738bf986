import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, orgState, orgStub, uniqueOrg } from "../support/billing.ts";

/**
 * Break: "exactly once into the ledger" across the v5 deploy. The billing Worker deploys first (README,
 * Deploying), then the ingest Worker, which is both the usage queue's producer and its consumer. During
 * the ingest rollout a new isolate's message (with stream/seq) can be consumed by an old consumer
 * invocation, which hands the object only {id, counts} (the pre-v5 consumer drops stream/seq): the new
 * object folds it under usage_seen by queue message id. If that invocation is cut before its ack (a deploy
 * is exactly when in-flight invocations end), the queue redelivers the message to a new consumer, which
 * hands it with its stream/seq: the object only looks at usage_streams for such a message, never at
 * usage_seen, and folds it a second time.
 */

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

describe("break: a batch is folded once across the deploy that introduced streams", () => {
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
