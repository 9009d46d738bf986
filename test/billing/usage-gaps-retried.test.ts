import { afterEach, describe, expect, it } from "vitest";
import { MAX_STREAM_GAPS } from "../../src/billing/usage/ledger.ts";
import { usageRetryDelaySeconds } from "../../src/ingest/usage/consumer.ts";
import { autumn } from "../support/autumn.ts";
import { deleteAllAlarms, orgState, orgStub, uniqueOrg } from "../support/billing.ts";

/**
 * Break: "exactly once into the ledger" (per-stream high-water mark + gaps) meets the consumer's retry
 * backoff. The consumer retries a failed hand-over with backoff doubling up to an hour
 * (usageRetryDelaySeconds), per message. An org's object that fails intermittently (every other
 * consumer batch for half an hour: overload, a slow storage op, a deploy) leaves one isolate's odd
 * batches on the queue, waiting minutes to an hour, while its even batches fold: one gap each, all
 * still owed and all still on the queue (well within the 4-day window). Past MAX_STREAM_GAPS (256:
 * ~8.5 minutes of one batch a second) the oldest gaps are abandoned, and when their batches come back
 * from the queue they are taken for duplicates: usage that was accepted and delivered is lost.
 */

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

describe("break: usage retried by the consumer is folded exactly once", () => {
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
