/**
 * What a value says, and when it was read: `at`, when its request began (Workers' clock stands still between I/O, so a
 * burst of requests shares one), and `rank`, how its owner orders answers besides (the gate: a mirror entry's
 * version). For a stand-in (a failed lookup's decision): when its lookup began, and the rank of what it knew.
 */
export type Read = { at: number; rank?: number };

/** A real answer, with its read. */
type Answer<V> = { value: V; read: Read };

/** For a stand-in, `read` says what its decision was made from. */
type Entry<V> = { value: V; expires: number; read: Read; real: Answer<V> | undefined };

/** Whether an incoming read supersedes the read held (each cache orders its own answers). */
export type Supersedes = (incoming: Read, held: Read) => boolean;

/**
 * A bounded isolate-memory cache. Entries expire for `get` but stay readable through
 * `peek` (the last value seen, for failing open) until capacity evicts the oldest.
 *
 * Answers and stand-ins (`standIn`) are stored in the order `supersedes` gives their reads, whenever they land: a slow
 * lookup that began first must not put back what a later one already replaced, and a decision made without an answer
 * never replaces one newer than what it was decided from. A stand-in keeps the newest real answer beside it (`known`).
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

  /** A real answer. */
  set(key: string, value: V, expires: number, read: Read): void {
    const held = this.entries.get(key);
    if (held !== undefined && !this.supersedes(read, held.read)) return;
    this.store(key, { value, expires, read, real: { value, read } });
  }

  /**
   * A stand-in for an answer that could not be had, read as what it was decided from; false when what is held is as new
   * (an answer read as new as what the decision knew is worth more than the decision).
   */
  standIn(key: string, value: V, expires: number, decided: Read): boolean {
    const held = this.entries.get(key);
    if (held !== undefined && this.supersedes(held.read, decided)) return false;
    this.store(key, { value, expires, read: decided, real: held?.real });
    return true;
  }

  /** The read of the entry held: a real answer's, or what a stand-in was decided from. */
  readOf(key: string): Read | undefined {
    return this.entries.get(key)?.read;
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
