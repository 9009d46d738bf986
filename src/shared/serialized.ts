/**
 * Runs tasks one at a time. An idle runner starts a task at once. A caller arriving while a run
 * is under way joins the run queued after it when that run has the same key, or queues a new one:
 * every caller gets a result that began after it asked (a fresh read), without piling up one run
 * per caller, and runs with different keys (say, an override and a webhook) are never merged, so
 * each result is attributed to what actually caused it.
 */
export class Serialized<T> {
  private last: { key: string; started: boolean; promise: Promise<T> } | null = null;

  run(task: () => Promise<T>, key = ""): Promise<T> {
    const last = this.last;
    if (last !== null && !last.started && last.key === key) return last.promise;
    const entry: { key: string; started: boolean; promise: Promise<T> } = { key, started: last === null, promise: undefined as never };
    entry.promise =
      last === null
        ? task()
        : last.promise.then(
            () => this.begin(entry, task),
            () => this.begin(entry, task),
          );
    this.last = entry;
    entry.promise
      .finally(() => {
        if (this.last === entry) this.last = null;
      })
      .catch(() => {});
    return entry.promise;
  }

  private begin(entry: { started: boolean }, task: () => Promise<T>): Promise<T> {
    entry.started = true;
    return task();
  }
}
