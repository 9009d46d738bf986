import { describe, expect, it } from "vitest";
import { Serialized } from "../../src/shared/serialized.ts";

/** A task that records when it ran and finishes when told. */
function gatedTask(log: string[], name: string) {
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  return {
    release,
    run: async () => {
      log.push(`start ${name}`);
      await done;
      log.push(`end ${name}`);
      return name;
    },
  };
}

describe("Serialized", () => {
  it("runs one task at a time; callers with the same key share one run queued after the running one", async () => {
    const runs = new Serialized<string>();
    const log: string[] = [];
    const first = gatedTask(log, "first");
    const second = gatedTask(log, "second");
    const a = runs.run(first.run, "webhook");
    const b = runs.run(second.run, "webhook");
    const c = runs.run(async () => "never runs", "webhook");
    await Promise.resolve();
    expect(log).toEqual(["start first"]);
    first.release();
    await a;
    second.release();
    expect(await Promise.all([a, b, c])).toEqual(["first", "second", "second"]);
    expect(log).toEqual(["start first", "end first", "start second", "end second"]);
  });

  it("never merges callers with different keys, so each result is attributed to what caused it", async () => {
    const runs = new Serialized<string>();
    const log: string[] = [];
    const running = gatedTask(log, "webhook 1");
    const queuedWebhook = gatedTask(log, "webhook 2");
    const override = gatedTask(log, "override");
    const a = runs.run(running.run, "webhook");
    const b = runs.run(queuedWebhook.run, "webhook");
    const c = runs.run(override.run, "admin:support asked");
    const d = runs.run(async () => "merged into webhook 2", "webhook");
    running.release();
    queuedWebhook.release();
    override.release();
    // The queued webhook run is joined by the later webhook caller only while it has not started; the override runs on its own.
    expect(await Promise.all([a, b, c, d])).toEqual(["webhook 1", "webhook 2", "override", "merged into webhook 2"]);
    expect(log).toEqual(["start webhook 1", "end webhook 1", "start webhook 2", "end webhook 2", "start override", "end override"]);
  });

  it("goes on after a failed run", async () => {
    const runs = new Serialized<string>();
    const failed = runs.run(async () => Promise.reject(new Error("Autumn down")));
    const next = runs.run(async () => "read", "other");
    await expect(failed).rejects.toThrow("Autumn down");
    expect(await next).toBe("read");
  });
});
