import { afterEach, beforeEach, vi } from "vitest";

/**
 * An injected clock for a test file: only `Date` is faked, and the Durable Objects run in the
 * test's isolate, so they read it too (KV and the alarm scheduler do not). Each test starts
 * at the real time and only moves forward, so every alarm it sets stays in the real future.
 */
export function fakeClock(): { readonly now: number; set(ms: number): void } {
  let current = 0;
  const clock = {
    get now() {
      return current;
    },
    set(ms: number) {
      current = ms;
      vi.setSystemTime(ms);
    },
  };
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["Date"] });
    clock.set(Math.ceil(Date.now() / 1000) * 1000 + 1000);
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  return clock;
}
