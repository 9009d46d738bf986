import { runDurableObjectAlarm } from "cloudflare:test";
import { vi } from "vitest";
import { autumn } from "./autumn.ts";
import { deliverNow, MIN_NOTICE_MS, orgStub, uniqueOrg } from "./billing.ts";

/** The console tests' grace period (wrangler.jsonc's GRACE_PERIOD). */
export const GRACE = 3 * 86_400_000;

/**
 * An org the console tests read as suspended: first seen overdue longer ago than the minimum notice
 * (the Date alone is faked), past its grace period, then suspended by its alarm now.
 */
export async function suspendedOrg(prefix: string): Promise<string> {
  const org = uniqueOrg(prefix);
  await autumn.createCustomer(org);
  const now = Date.now();
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(now - MIN_NOTICE_MS - 60_000);
  await autumn.pastDue(org, Date.now() - GRACE);
  await deliverNow(org);
  vi.useRealTimers();
  await runDurableObjectAlarm(orgStub(org));
  return org;
}
