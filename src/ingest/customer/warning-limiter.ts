/**
 * At most one overdue warning per org per isolate per interval (a minute), so a busy
 * pipeline's logs are not flooded. Memory is bounded: past `capacity` orgs, entries whose
 * interval has run out go first, then the least recently warned.
 */
export class WarningLimiter {
  private readonly last = new Map<string, number>();
  private readonly intervalMs: number;
  private readonly capacity: number;

  constructor(options: { intervalMs?: number; capacity?: number } = {}) {
    this.intervalMs = options.intervalMs ?? 60_000;
    this.capacity = options.capacity ?? 10_000;
  }

  get size(): number {
    return this.last.size;
  }

  /** True when a warning may go out for this org now (and records it). */
  take(orgId: string, now: number): boolean {
    const at = this.last.get(orgId);
    if (at !== undefined && now - at < this.intervalMs) return false;
    this.last.delete(orgId);
    if (this.last.size >= this.capacity) this.evict(now);
    this.last.set(orgId, now);
    return true;
  }

  private evict(now: number): void {
    // Insertion order is warning order: the oldest come first.
    for (const [orgId, at] of this.last) {
      if (now - at >= this.intervalMs || this.last.size >= this.capacity) this.last.delete(orgId);
      else break;
    }
  }

  clear(): void {
    this.last.clear();
  }
}

/** This isolate's limiter. */
export const warningLimiter = new WarningLimiter();
