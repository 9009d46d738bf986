/**
 * `run` over every item with at most `limit` calls in flight, the results in the items' order. For fanning
 * out to many Durable Objects from one request or alarm (the batch mint, the sweep's hand-overs): all at once
 * would open as many calls as items, one by one would wait for each object in turn.
 */
export async function mapBounded<T, R>(items: readonly T[], limit: number, run: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    // Single-threaded: taking `next` and bumping it cannot interleave with another worker.
    while (next < items.length) {
      const index = next++;
      results[index] = await run(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** `mapBounded` keeping every outcome: none throws. */
export function fanOut<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  // Called inside a then: a task that throws at once is kept as rejected too.
  return mapBounded(items, limit, (item) =>
    Promise.resolve(item).then(task).then(
      (value): PromiseSettledResult<R> => ({ status: "fulfilled", value }),
      (reason): PromiseSettledResult<R> => ({ status: "rejected", reason }),
    ),
  );
}
