/**
 * Exactly-once folding of usage batches without a row per batch (README, "Usage metering"; docs/storage.md,
 * `usage_streams`). Each ingest isolate numbers its batches per org 1, 2, 3, … under a random stream id
 * (src/ingest/usage/batcher.ts), and a retried send repeats the same number. Per stream the org's object keeps
 * the highest number folded (`high`) and the ranges below it not yet seen (`gaps`), each with when it was
 * noticed. The queue may deliver a stream's batches out of order and more than once, so a plain high-water
 * mark would drop a late lower number (lost usage): a number is new when it is above `high` or owed by a gap.
 *
 * Why the gaps can be given up after the window: a batch in a gap was sent before the batch that opened the gap,
 * so before the gap was noticed; the queue drops any message older than its retention, so once the window (at
 * least the retention) has passed since the gap was noticed, nothing can fill it. Pure: stream-marks.ts does the I/O (for the ledger, and for the index shards' activity).
 *
 * Why gaps are coalesced, never given up, past the cap: a gap's batches may be waiting out the consumer's own
 * retry backoff (up to an hour a retry, issue 18): they are still on the queue, so taking them for duplicates
 * loses usage. Past `maxGaps` the two neighbouring gaps spanning the fewest numbers become one range with a
 * bitmap of the numbers it still owes (one bit a number, at most MAX_GAP_SPAN numbers), noticed at the later
 * of the two times (a range may be given up only once every batch in it is past the window).
 */

/**
 * A range of sequence numbers not yet seen: `[from, to, noticed_at]`, inclusive; or, coalesced,
 * `[from, to, noticed_at, owed]` where `owed` is a base64 bitmap (bit i: number from + i is still owed).
 */
export type Gap = [number, number, number] | [number, number, number, string];
export type StreamMark = { high: number; gaps: Gap[] };

/** The most numbers one coalesced range covers (its bitmap is at most MAX_GAP_SPAN / 8 bytes: 512). */
export const MAX_GAP_SPAN = 4_096;

/**
 * Whether batch `seq` of a stream is new, and the stream's mark after it. A stream never seen starts at 0,
 * so batches 1..seq-1 are owed (a new isolate's first batches may arrive after later ones, and a stream whose
 * row expired can only still send numbers above its old mark: see stream-marks.ts). Past `maxGaps` neighbouring
 * gaps are coalesced; only if no two neighbours span MAX_GAP_SPAN numbers or fewer (over a million numbers owed
 * across the window, far beyond one batch a second) is the oldest given up (`abandoned`).
 */
export function admit(mark: StreamMark | null, seq: number, now: number, maxGaps: number): { mark: StreamMark; fresh: boolean; abandoned: Gap[] } {
  const current = mark ?? { high: 0, gaps: [] };
  if (seq > current.high) {
    const gaps: Gap[] = seq > current.high + 1 ? [...current.gaps, [current.high + 1, seq - 1, now]] : current.gaps;
    return bounded(seq, gaps, maxGaps, true);
  }
  const index = current.gaps.findIndex(([from, to]) => from <= seq && seq <= to);
  if (index < 0) return { mark: current, fresh: false, abandoned: [] };
  const gap = current.gaps[index]!;
  let replacement: Gap[];
  if (gap.length === 4) {
    const bits = decode(gap[3]);
    const i = seq - gap[0];
    if ((bits[i >> 3]! & (1 << (i & 7))) === 0) return { mark: current, fresh: false, abandoned: [] };
    bits[i >> 3]! &= ~(1 << (i & 7));
    replacement = owedOf(bits, gap[0], gap[1]).length === 0 ? [] : [[gap[0], gap[1], gap[2], encode(bits)]];
  } else {
    const [from, to, at] = gap;
    replacement = [];
    if (from < seq) replacement.push([from, seq - 1, at]);
    if (seq < to) replacement.push([seq + 1, to, at]);
  }
  // Gaps stay in order (oldest numbers first).
  const gaps = [...current.gaps.slice(0, index), ...replacement, ...current.gaps.slice(index + 1)];
  return bounded(current.high, gaps, maxGaps, true);
}

/** Brings the gaps back to `maxGaps` by coalescing neighbours (the closest first), giving up the oldest only as a last resort. */
function bounded(high: number, input: Gap[], maxGaps: number, fresh: boolean): { mark: StreamMark; fresh: boolean; abandoned: Gap[] } {
  const gaps = [...input];
  const abandoned: Gap[] = [];
  while (gaps.length > maxGaps) {
    let best = -1;
    for (let i = 0; i + 1 < gaps.length; i++) {
      const span = gaps[i + 1]![1] - gaps[i]![0] + 1;
      if (span <= MAX_GAP_SPAN && (best < 0 || span < gaps[best + 1]![1] - gaps[best]![0] + 1)) best = i;
    }
    if (best < 0) {
      abandoned.push(gaps.shift()!);
      continue;
    }
    gaps.splice(best, 2, merge(gaps[best]!, gaps[best + 1]!));
  }
  return { mark: { high, gaps }, fresh, abandoned };
}

/** One range owing exactly what the two owed; the numbers between them (seen) are not owed. */
function merge(a: Gap, b: Gap): Gap {
  const from = a[0];
  const to = b[1];
  const bits = new Uint8Array(Math.ceil((to - from + 1) / 8));
  for (const gap of [a, b]) for (const n of owedNumbers(gap)) bits[(n - from) >> 3]! |= 1 << ((n - from) & 7);
  return [from, to, Math.max(a[2], b[2]), encode(bits)];
}

function owedNumbers(gap: Gap): number[] {
  if (gap.length === 4) return owedOf(decode(gap[3]), gap[0], gap[1]);
  return Array.from({ length: gap[1] - gap[0] + 1 }, (_, i) => gap[0] + i);
}

function owedOf(bits: Uint8Array, from: number, to: number): number[] {
  const out: number[] = [];
  for (let n = from; n <= to; n++) if (bits[(n - from) >> 3]! & (1 << ((n - from) & 7))) out.push(n);
  return out;
}

function encode(bits: Uint8Array): string {
  let binary = "";
  for (const byte of bits) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function decode(text: string): Uint8Array {
  const binary = atob(text);
  const bits = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bits[i] = binary.charCodeAt(i);
  return bits;
}

/** The gaps still owed at `now`: those noticed within the window (a coalesced range: its latest gap). */
export function owedGaps(gaps: readonly Gap[], now: number, windowMs: number): Gap[] {
  return gaps.filter(([, , at]) => at >= now - windowMs);
}
