/**
 * A bounded isolate-memory cache. Entries expire for `get` but stay readable through
 * `peek` (the last value seen, for failing open) until capacity evicts the oldest.
 */
/**
 * When what a value says was read: `at`, when its lookup began, then `version` (the mirror entry's, which its org's
 * object raises with every change) between real answers whose lookups began at the same moment. `firm` false: a
 * stand-in for an answer that could not be had (a failed lookup's decision).
 */
export type Read = { at: number; firm: boolean; version?: number };

export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number; at: number; version: number }>();

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
   * A value read before the one held is not stored (false): a slow lookup that began first must not put back what a
   * later one already replaced. A stand-in (`firm` false) takes the place of what it replaces but keeps its read, so
   * it never holds off a real answer read after that one, and never lets one read before it back in.
   */
  set(key: string, value: V, expires: number, read: Read = { at: 0, firm: false }): boolean {
    const held = this.entries.get(key);
    const version = read.version ?? 0;
    if (held !== undefined && (held.at > read.at || (read.firm && held.at === read.at && held.version > version))) return false;
    const kept = read.firm ? { at: read.at, version } : { at: held?.at ?? 0, version: held?.version ?? 0 };
    this.entries.delete(key);
    this.entries.set(key, { value, expires, ...kept });
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
