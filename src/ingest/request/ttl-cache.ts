/**
 * What a value says, and when it was read: `at`, when its lookup began (Workers' clock stands still between I/O, so a
 * burst of requests shares one), and `rank`, how its owner orders answers besides (the gate: a mirror entry's
 * version). `firm` false: a stand-in for an answer that could not be had (a failed lookup's decision).
 */
export type Read = { at: number; firm: boolean; rank?: number };

/** Whether an incoming real answer's read supersedes the real answer's read held (each cache orders its own answers). */
export type Supersedes = (incoming: Read, held: Read) => boolean;

const NO_READ: Read = { at: 0, firm: false };

/**
 * A bounded isolate-memory cache. Entries expire for `get` but stay readable through
 * `peek` (the last value seen, for failing open) until capacity evicts the oldest.
 *
 * A value is not stored (`set` answers false) when the read held supersedes it: a slow lookup that began first must
 * not put back what a later one already replaced. A stand-in takes the place of what it replaces but keeps that
 * one's read, so it never holds off a real answer newer than that one, and never lets an older one back in; a stand-in
 * begun before the held read is not stored.
 */
export class TtlCache<V> {
  /** `real`: the newest real answer held for the key: the value itself, or, for a stand-in, the one it replaced. */
  private readonly entries = new Map<string, { value: V; expires: number; read: Read; real: { value: V; read: Read } | undefined }>();

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
  known(key: string): { value: V; read: Read } | undefined {
    return this.entries.get(key)?.real;
  }

  set(key: string, value: V, expires: number, read: Read = NO_READ): boolean {
    const held = this.entries.get(key);
    // A stand-in that replaced nothing real (its own read is not firm) yields to any real answer.
    if (held !== undefined && (read.firm ? held.read.firm && !this.supersedes(read, held.read) : read.at < held.read.at)) return false;
    this.entries.delete(key);
    this.entries.set(key, read.firm ? { value, expires, read, real: { value, read } } : { value, expires, read: held?.read ?? read, real: held?.real });
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
