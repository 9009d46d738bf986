/**
 * A bounded isolate-memory cache. Entries expire for `get` but stay readable through
 * `peek` (the last value seen, for failing open) until capacity evicts the oldest.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number; stamp: number }>();

  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get(key: string, now: number): V | undefined {
    const entry = this.entries.get(key);
    return entry !== undefined && entry.expires > now ? entry.value : undefined;
  }

  /** The value if it has not expired, or expired at most `graceMs` before `now`. */
  recent(key: string, now: number, graceMs: number): V | undefined {
    const entry = this.entries.get(key);
    return entry !== undefined && entry.expires + graceMs > now ? entry.value : undefined;
  }

  peek(key: string): V | undefined {
    return this.entries.get(key)?.value;
  }

  /**
   * `read.at`: when what `value` says was read. A value read before the one held is not stored (false): a slow lookup
   * that began first must not put back what a later one already replaced. `read.firm` false (a stand-in for an answer
   * that could not be had) never holds off another value, whenever that one was read.
   */
  set(key: string, value: V, expires: number, read: { at: number; firm: boolean } = { at: 0, firm: false }): boolean {
    const held = this.entries.get(key);
    if (held !== undefined && held.stamp > read.at) return false;
    this.entries.delete(key);
    this.entries.set(key, { value, expires, stamp: read.firm ? read.at : 0 });
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return true;
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
