/**
 * Rate-limits repetitive log lines per key (an org and what happened to it) in one isolate:
 * the first event in a window is logged at once; the ones after it are only counted, and
 * the count travels on the next line logged for that key once the window has passed. A
 * flood of 3,000 refusals from one org is one line per window, not 3,000.
 *
 * Counts still pending when the isolate goes away (or when the key is evicted) are never
 * logged: logs are for reading, exact numbers live in Analytics Engine. Memory is bounded
 * by `capacity` keys; the least recently logged key is evicted first.
 */
export class LogThrottle {
  private readonly entries = new Map<string, { windowStart: number; pending: number }>();
  readonly windowMs: number;
  private readonly capacity: number;

  constructor(options: { windowMs: number; capacity: number }) {
    this.windowMs = options.windowMs;
    this.capacity = options.capacity;
  }

  /**
   * Counts one event. Returns how many events this line stands for (this one and those
   * counted silently since the key's last line) when a line is due, or null when not.
   */
  hit(key: string, now: number): number | null {
    const entry = this.entries.get(key);
    if (entry !== undefined && now >= entry.windowStart && now < entry.windowStart + this.windowMs) {
      entry.pending++;
      return null;
    }
    const count = (entry?.pending ?? 0) + 1;
    this.entries.delete(key);
    this.entries.set(key, { windowStart: now, pending: 0 });
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return count;
  }

  get size(): number {
    return this.entries.size;
  }

  /** For tests: forget every window. */
  reset(): void {
    this.entries.clear();
  }
}

/** How often one kind of refusal or upstream trouble of one org is logged per isolate. */
export const DECISION_LOG_WINDOW_MS = 10_000;

/**
 * The isolate's throttle of decision lines (refusals, upstream trouble, parking, uncounted
 * usage): the first per org and kind in a 10 s window, then one line with the count. One
 * throttle for all of them, so the request path and the leaf modules it calls share one bound:
 * 10,000 keys at most (a few hundred KiB).
 */
export const logThrottle = new LogThrottle({ windowMs: DECISION_LOG_WINDOW_MS, capacity: 10_000 });
