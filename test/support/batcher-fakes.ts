import type { QueuedMessage } from "../../src/ingest/usage/batcher.ts";

/** What the usage batcher's tests share: timers released by hand with a clock set by hand, and a queue whose sends settle when told. */

export function manualTime(start = 1_000_000) {
  const timers: { ms: number; fire: () => void }[] = [];
  return {
    now: start,
    timers,
    wait: (ms: number) => new Promise<void>((resolve) => timers.push({ ms, fire: resolve })),
    /** Fires the oldest pending timer. */
    fire() {
      const timer = timers.shift();
      if (!timer) throw new Error("no timer pending");
      timer.fire();
      return timer.ms;
    },
  };
}

/** Lets every pending promise callback run. */
export const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** A queue whose every sendBatch waits until the test resolves or rejects it; the messages as sent (copied). */
export function deferredQueue<M = QueuedMessage>() {
  const calls: { messages: M[]; resolve: () => void; reject: (error: Error) => void }[] = [];
  return {
    calls,
    sendBatch: (messages: Iterable<{ body: M }>) => new Promise<void>((resolve, reject) => calls.push({ messages: [...messages].map((m) => structuredClone(m.body)), resolve, reject })),
  };
}
