import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { autumn } from "../support/autumn.ts";
import { alarmOf, deleteAllAlarms, deliver, mirrorOf, orgState, orgStub, uniqueOrg } from "../support/billing.ts";
import { fakeClock } from "../support/clock.ts";

const clock = fakeClock();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** RESYNC_INTERVAL in wrangler.jsonc. */
const RESYNC_MS = 6 * HOUR;

afterEach(async () => {
  await autumn.clearFaults();
  await deleteAllAlarms();
});

/**
 * README "Reconciliation": a customer Autumn answers 404 customer_not_found for is unknown; the object keeps
 * its state, flags it, and re-reads it on the resync schedule, even while it holds a plan limit.
 * Found by a reviewer: before the fix, an org holding a limit was re-read every LIMIT_RESYNC_INTERVAL
 * (10 min) forever, whatever the last read's outcome: 144 customers.get a day per such org instead of 4.
 */
describe("an unknown customer holding a plan limit", () => {
  it("is re-read on the resync schedule, not every LIMIT_RESYNC_INTERVAL", async () => {
    const org = uniqueOrg("limit_unknown");
    await autumn.createCustomer(org, { webhook: false });
    await autumn.setAllowance(org, "spans", { granted: 10, next_reset_at: null });
    await autumn.track(org, "spans", { value: 10 });
    const [hook] = await autumn.webhooks({ type: "balances.limit_reached", customer_id: org });
    await deliver({ headers: hook!.headers, body: hook!.body });
    expect((await mirrorOf(org))!.limits).toHaveLength(1);

    await autumn.deleteCustomer(org);
    const before = (await autumn.calls(org)).length;
    const start = clock.now;
    for (let runs = 0; runs < 500; runs++) {
      const at = await alarmOf(org);
      if (at === null || at > start + DAY) break;
      clock.set(Math.max(at, clock.now));
      await runDurableObjectAlarm(orgStub(org));
    }
    expect((await orgState(org)).autumn_customer_unknown).toBe(true);
    const reads = (await autumn.calls(org)).length - before;
    expect(reads).toBeLessThanOrEqual(DAY / RESYNC_MS + 1);
  }, 60_000);
});
