import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { SweepView } from "../../src/billing/reconcile/sweep-record.ts";
import { admin } from "./billing.ts";

/** The one Reconciler. */
export const sweeper = () => env.RECONCILER.getByName("sweeper");

/** Its alarm deleted: a sweep left by a test never runs into the next. */
export async function deleteSweeperAlarm(): Promise<void> {
  await runInDurableObject(sweeper(), (_instance, state) => state.storage.deleteAlarm());
}

/** Runs the sweeper's alarm (one page, or one retry) until the sweep is no longer running. */
export async function driveSweep(limit = 100): Promise<SweepView> {
  for (let i = 0; i < limit; i++) {
    const status = (await sweeper().status())!;
    if (status.status !== "running") return status;
    await runDurableObjectAlarm(sweeper());
  }
  throw new Error(`the sweep was still running after ${limit} alarm runs`);
}

/** `POST /admin/reconcile` (202), then the sweep driven to its end (or to held). */
export async function reconcileNow(limit = 100): Promise<SweepView> {
  expect((await admin("/reconcile", { method: "POST" })).status).toBe(202);
  return driveSweep(limit);
}
