/**
 * Exactly-once folding of usage batches without a row per batch (README, "Usage metering"; docs/storage.md,
 * `usage_streams`). Each ingest isolate numbers its batches per org 1, 2, 3, … under a random stream id
 * (src/ingest/usage/batcher.ts), and a retried send repeats the same number. Per stream the org's object keeps
 * the highest number folded (`high`) and the ranges below it not yet seen (`gaps`), each with when it was
 * noticed. The queue may deliver a stream's batches out of order and more than once, so a plain high-water
 * mark would drop a late lower number (lost usage): a number is new when it is above `high` or inside a gap.
 *
 * Why the gaps can be given up after the window: a batch in a gap was sent before the batch that opened the gap,
 * so before the gap was noticed; the queue drops any message older than its retention, so once the window (at
 * least the retention) has passed since the gap was noticed, nothing can fill it. Pure: the ledger does the I/O.
 */

/** A range of sequence numbers not yet seen: `[from, to, noticed_at]`, inclusive. */
export type Gap = [number, number, number];
export type StreamMark = { high: number; gaps: Gap[] };

/**
 * Whether batch `seq` of a stream is new, and the stream's mark after it. A stream never seen starts at 0,
 * so batches 1..seq-1 are owed (a new isolate's first batches may arrive after later ones, and a stream whose
 * row expired can only still send numbers above its old mark: see UsageLedger.fold). Past `maxGaps` the
 * oldest gaps are given up (`abandoned`): a batch from them is then taken for a duplicate.
 */
export function admit(mark: StreamMark | null, seq: number, now: number, maxGaps: number): { mark: StreamMark; fresh: boolean; abandoned: Gap[] } {
  const current = mark ?? { high: 0, gaps: [] };
  if (seq > current.high) {
    const gaps: Gap[] = seq > current.high + 1 ? [...current.gaps, [current.high + 1, seq - 1, now]] : current.gaps;
    const abandoned = gaps.length > maxGaps ? gaps.slice(0, gaps.length - maxGaps) : [];
    return { mark: { high: seq, gaps: gaps.slice(abandoned.length) }, fresh: true, abandoned };
  }
  const index = current.gaps.findIndex(([from, to]) => from <= seq && seq <= to);
  if (index < 0) return { mark: current, fresh: false, abandoned: [] };
  const [from, to, at] = current.gaps[index]!;
  const split: Gap[] = [];
  if (from < seq) split.push([from, seq - 1, at]);
  if (seq < to) split.push([seq + 1, to, at]);
  // Gaps stay in order (oldest numbers first), so the cap gives up the oldest.
  const gaps = [...current.gaps.slice(0, index), ...split, ...current.gaps.slice(index + 1)];
  const abandoned = gaps.length > maxGaps ? gaps.slice(0, gaps.length - maxGaps) : [];
  return { mark: { high: current.high, gaps: gaps.slice(abandoned.length) }, fresh: true, abandoned };
}

/** The gaps still owed at `now`: those noticed within the window. */
export function owedGaps(gaps: readonly Gap[], now: number, windowMs: number): Gap[] {
  return gaps.filter(([, , at]) => at >= now - windowMs);
}
