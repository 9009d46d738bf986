/**
 * What a value says, and when it was read: `at`, when its lookup began (Workers' clock stands still between I/O, so a
 * burst of requests shares one), and `rank`, how its owner orders answers besides (the gate: a mirror entry's
 * version). `firm` false: a stand-in for an answer that could not be had (a failed lookup's decision).
 */
export type Read = { at: number; firm: boolean; rank?: number };

/** A real answer, with its read. */
export type Answer<V> = { value: V; read: Read };

type Entry<V> = { value: V; expires: number; read: Read; real: Answer<V> | undefined };

/** Whether an incoming real answer's read supersedes the real answer's read held (each cache orders its own answers). */
export type Supersedes = (incoming: Read, held: Read) => boolean;

/**
 * A bounded isolate-memory cache. Entries expire for `get` but stay readable through
 * `peek` (the last value seen, for failing open) until capacity evicts the oldest.
 *
 * A real answer is not stored when the read held supersedes it: a slow lookup that began first
 * must not put back what a later one already replaced. A stand-in (`standIn`) takes the place of what it replaces but
 * keeps that one's read, so it never holds off a real answer newer than that one, and never lets an older one back in.
 */
export class TtlCache<V> {
  /** `real`: the newest real answer held for the key: the value itself, or, for a stand-in, the one it replaced. */
  private readonly entries = new Map<string, Entry<V>>();

  private readonly capacity: number;
  private readonly supersedes: Supersedes;

  constructor(capacity: number, supersedes: Supersedes) {
    this.capacity = capacity;
    this.supersedes = supersedes;
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

  /** The newest real answer held for the key, with its read, whether or not a stand-in has taken its place since. */
  known(key: string): Answer<V> | undefined {
    return this.entries.get(key)?.real;
  }

  /** A real answer, read as `read` says (`firm`). */
  set(key: string, value: V, expires: number, read: Read): void {
    const held = this.entries.get(key);
    // A stand-in that replaced nothing real (its own read is not firm) yields to any real answer.
    if (held !== undefined && held.read.firm && !this.supersedes(read, held.read)) return;
    this.store(key, { value, expires, read, real: { value, read } });
  }

  /**
   * A stand-in decided at `at` from `basis`, the real answer held (`known`) when its lookup last waited on a source.
   * Not stored when a real answer landed since (another lookup's, newer than what the decision knew), nor over an entry
   * whose read began after `at`.
   */
  standIn(key: string, value: V, expires: number, at: number, basis: Answer<V> | undefined): boolean {
    const held = this.entries.get(key);
    if (held !== undefined && (held.real !== basis || at < held.read.at)) return false;
    this.store(key, { value, expires, read: held?.read ?? { at, firm: false }, real: held?.real });
    return true;
  }

  private store(key: string, entry: Entry<V>): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
