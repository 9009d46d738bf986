import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gate } from "../../src/ingest/request/isolate.ts";
import { logThrottle } from "../../src/ingest/log-throttle.ts";
import { deleteAllAlarms, uniqueOrg } from "../support/billing.ts";
import { ingest, mintKey, sink } from "../support/ingest.ts";

let org: string;
let key: string;

beforeEach(async () => {
  gate.reset();
  logThrottle.reset();
  org = uniqueOrg("paths");
  key = (await mintKey(org)).key;
});
afterEach(deleteAllAlarms);

describe("malformed percent-encoding in the path (issue 10, item 3)", () => {
  const keys = () =>
    [
      ["a valid key", key],
      ["an unknown key", `tg_ik_${"A".repeat(43)}`],
      ["no key", null],
    ] as const;

  it.each(["/v1/logpush/%E0", "/v1/logpush/%", "/v1/logpush/%zz", "/v1/logpush/http%E0_requests", "/v1/traces/%C3%28", "/v1/%ED%A0%80"])(
    "%s is a 400 invalid_path before anything else runs",
    async (path) => {
      for (const [, presented] of keys()) {
        const response = await ingest(path, { key: presented, headers: { "content-type": "application/json" }, body: "{}" });
        expect(response.status).toBe(400);
        expect(await response.json()).toMatchObject({ error: "invalid_path", message: expect.any(String) });
      }
      expect(gate.counters).toMatchObject({ keyLookups: 0, mirrorReads: 0, objectCalls: 0 });
      expect(await sink.requests(org)).toHaveLength(0);
    },
  );

  it.each(["GET", "PUT", "DELETE", "OPTIONS"])("and for %s too", async (method) => {
    const response = await ingest("/v1/logpush/%E0", { method, key });
    expect(response.status).toBe(400);
  });

  it("well-formed percent-encoding still reaches the route", async () => {
    const response = await ingest("/v1/logpush/http%5Frequests", { key, headers: { "content-type": "application/json" }, body: '{"content":"tests"}' });
    expect(response.status).toBe(200);
  });
});

describe("unknown routes", () => {
  it.each(["/v1/profiles", "/v1/logpush", "/v1/logpush/", "/v2/traces", "/"])("POST %s is 404 not_found", async (path) => {
    const response = await ingest(path, { key, body: "x" });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: "not_found" });
  });

  it.each(["GET", "PUT", "DELETE", "PATCH"])("%s on an ingest route is 405 with Allow: POST", async (method) => {
    for (const path of ["/v1/traces", "/v1/logpush/http_requests"]) {
      const response = await ingest(path, { method, key });
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("POST");
    }
  });

  it("HEAD and GET /health answer 200", async () => {
    expect((await ingest("/health", { method: "GET" })).status).toBe(200);
    expect((await ingest("/health", { method: "HEAD" })).status).toBe(200);
  });
});
