import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { cleanupParked } from "../../src/ingest/parking/deliveries.ts";
import { park, ParkedBytes, ParkedTotal, parkingSettings, PARKED_TOTAL_KEY } from "../../src/ingest/parking/store.ts";

const bucket = (env as unknown as { PARKING_TEST: R2Bucket }).PARKING_TEST;
let counter = 0;
const uniqueOrg = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${counter++}`;
const settingsOf = (extra: Record<string, unknown>) => parkingSettings({ ...env, PARKING: bucket, PARK_MAX_BYTES: "1MiB", PARK_RETENTION: "72h", ...extra } as never)!;
const batch = (orgId: string, at: number) => ({ orgId, route: "/v1/traces", contentType: "application/x-protobuf", contentEncoding: "gzip", receivedAt: at, why: "upstream_unavailable" as const });

describe("the global parking cap", () => {
  it("refuses to park past PARK_TOTAL_MAX_BYTES, from the total the cleanup wrote plus this isolate's own writes", async () => {
    const settings = settingsOf({ PARK_TOTAL_MAX_BYTES: "1000B" });
    expect(settings.totalMaxBytes).toBe(1000);
    const now = Date.now();
    await bucket.put(PARKED_TOTAL_KEY, JSON.stringify({ bytes: 700, at: now }));
    const total = new ParkedTotal();
    // 700 counted by the cleanup + 200 parked here = 900: still under 1000.
    expect(await park(settings, batch(uniqueOrg("total-a"), now), new Uint8Array(200), now, new ParkedBytes(), total)).toMatchObject({ parked: true });
    // Another org, another 200: 1100 would be past the total cap, whatever the org's own cap says.
    expect(await park(settings, batch(uniqueOrg("total-b"), now), new Uint8Array(200), now, new ParkedBytes(), total)).toEqual({ parked: false, why: "over_cap" });
  });

  it("is written by the cleanup from the whole bucket's listing", async () => {
    const settings = settingsOf({});
    const now = Date.now();
    const org = uniqueOrg("total-c");
    expect(await park(settings, batch(org, now), new Uint8Array(300), now, new ParkedBytes(), new ParkedTotal())).toMatchObject({ parked: true });
    await cleanupParked({ ...env, PARKING: bucket, PARK_RETENTION: "72h" } as never, now);
    const written = JSON.parse(await (await bucket.get(PARKED_TOTAL_KEY))!.text()) as { bytes: number; at: number };
    const listedBytes = (await bucket.list({ prefix: "parked/" })).objects.reduce((sum, object) => sum + object.size, 0);
    expect(written).toEqual({ bytes: listedBytes, at: now });
    expect(written.bytes).toBeGreaterThanOrEqual(300);
  });
});
