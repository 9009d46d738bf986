import { afterEach, describe, expect, it } from "vitest";
import { MAX_STREAM_GAPS } from "../../src/billing/usage/stream-marks.ts";
import { usageRetryDelaySeconds } from "../../src/ingest/usage/consumer.ts";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, orgState, orgStub, uniqueOrg } from "../support/billing.ts";

/**
 * Promise: usage the consumer retries (with backoff up to an hour) is folded into the ledger exactly once.
 * Found by a reviewer (issue 18): before the fix, past MAX_STREAM_GAPS the oldest gaps were abandoned, so
 * batches still waiting on the queue were taken for duplicates when they came back, and their usage lost.
 */

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

describe("usage retried by the consumer is folded exactly once", () => {
  it("an isolate's batches held back by the consumer's backoff while later ones fold are all counted when they come back", async () => {
    expect(usageRetryDelaySeconds(8)).toBeGreaterThanOrEqual(600); // a few failures in, a retry waits 10+ min
    const org = uniqueOrg("brkgaps");
    await autumn.createCustomer(org, { webhook: false });
    const at = Date.now();
    const n = MAX_STREAM_GAPS + 44; // 300 held-back batches
    const batch = (seq: number) => ({ id: `q_${seq}`, stream: "iso_flaky", seq, counts: { traces: 1 }, first_at: at, last_at: at });
    // Even batches fold (their consumer batch succeeded); odd ones failed and wait for their retry.
    for (let i = 0; i < n; i += 50) {
      const evens = Array.from({ length: 50 }, (_, k) => batch(2 * (i + k) + 2)).filter((b) => b.seq <= 2 * n);
      expect(await orgStub(org).recordUsage(evens)).toMatchObject({ ok: true });
    }
    // The retries come back (same messages, later).
    let recorded = 0;
    for (let i = 0; i < n; i += 50) {
      const odds = Array.from({ length: 50 }, (_, k) => batch(2 * (i + k) + 1)).filter((b) => b.seq < 2 * n);
      const answer = await orgStub(org).recordUsage(odds);
      if (!answer.ok) throw new Error(answer.error);
      recorded += answer.recorded;
    }
    const spans = (await orgState(org)).usage.features.find((f) => f.feature_id === "spans")!;
    expect({ recordedRetries: recorded, received: spans.received }).toEqual({ recordedRetries: n, received: 2 * n });
  });
});
