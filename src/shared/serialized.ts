/**
 * Runs a task one at a time. Callers arriving while it runs share a single follow-up run
 * that starts after it finishes, so every caller gets a result that began after it asked
 * (a fresh read), without piling up one run per caller.
 */
export class Serialized<T> {
  private running: Promise<T> | null = null;
  private queued: Promise<T> | null = null;

  run(task: () => Promise<T>): Promise<T> {
    if (this.running === null) return this.start(task);
    if (this.queued === null) {
      const after = this.running.then(
        () => {},
        () => {},
      );
      this.queued = after.then(() => {
        this.queued = null;
        return this.start(task);
      });
    }
    return this.queued;
  }

  private start(task: () => Promise<T>): Promise<T> {
    const promise = task().finally(() => {
      if (this.running === promise) this.running = null;
    });
    this.running = promise;
    return promise;
  }
}
