import { describe, expect, it } from "vitest";
import { overdueWarning, withPartialSuccess, withWarning } from "../../src/ingest/customer/overdue-warning.ts";
import { WarningLimiter } from "../../src/ingest/customer/warning-limiter.ts";
import { concat, stringField, bytesField, varintField } from "../../src/ingest/customer/protobuf.ts";
import { decodeExportResponse } from "../support/customer-decode.ts";

const PAY = "https://invoice.stripe.com/i/acct_1/test_warn";
const DEADLINE = Date.parse("2026-12-01T10:00:00Z");
const NOW = DEADLINE - 3_600_000;
const overdue = { state: "overdue" as const, suspend_at: DEADLINE, pay_url: PAY };
const warning = `Billing: an invoice is overdue; ingestion will be suspended at 2026-12-01T10:00:00Z unless it is paid: ${PAY}`;

describe("the overdue warning", () => {
  it("names the deadline and the pay link while overdue with a deadline", () => {
    expect(overdueWarning(overdue, NOW)).toBe(warning);
  });

  it("none for ok, suspended, a lapsed customer or an exempt org (no deadline)", () => {
    expect(overdueWarning({ state: "ok", suspend_at: null, pay_url: null }, NOW)).toBeNull();
    expect(overdueWarning({ state: "suspended", suspend_at: null, pay_url: PAY }, NOW)).toBeNull();
    expect(overdueWarning({ state: "overdue", suspend_at: null, pay_url: PAY }, NOW)).toBeNull();
  });

  it("without an https link it still warns, without a link", () => {
    expect(overdueWarning({ ...overdue, pay_url: "http://x.example.com" }, NOW)).toBe(
      "Billing: an invoice is overdue; ingestion will be suspended at 2026-12-01T10:00:00Z unless it is paid.",
    );
  });
});

describe("partial_success, JSON", () => {
  const json = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));

  it("an empty upstream answer becomes a partial_success with zero rejected and the warning", () => {
    const out = withPartialSuccess(new Uint8Array(0), "json", warning);
    expect(out).not.toBeNull();
    expect(json(out!)).toEqual({ partialSuccess: { errorMessage: warning } });
    expect(json(withPartialSuccess(new TextEncoder().encode("{}"), "json", warning)!)).toEqual({ partialSuccess: { errorMessage: warning } });
  });

  it("merged with the upstream's own: its counts kept, messages joined, other fields kept", () => {
    const upstream = new TextEncoder().encode(JSON.stringify({ partialSuccess: { rejectedSpans: "3", errorMessage: "3 spans too old" }, extra: 1 }));
    expect(json(withPartialSuccess(upstream, "json", warning)!)).toEqual({ partialSuccess: { rejectedSpans: "3", errorMessage: `3 spans too old; ${warning}` }, extra: 1 });
  });

  it("the snake_case spelling is read too and written back in lowerCamelCase", () => {
    const upstream = new TextEncoder().encode(JSON.stringify({ partial_success: { rejected_log_records: 2, error_message: "two dropped" } }));
    expect(json(withPartialSuccess(upstream, "json", warning)!)).toEqual({ partialSuccess: { rejected_log_records: 2, errorMessage: `two dropped; ${warning}` } });
  });

  it("an upstream body that is not a JSON object is left alone (null)", () => {
    expect(withPartialSuccess(new TextEncoder().encode("ok"), "json", warning)).toBeNull();
    expect(withPartialSuccess(new TextEncoder().encode("[1]"), "json", warning)).toBeNull();
  });
});

describe("partial_success, protobuf", () => {
  it("an empty upstream answer becomes field 1 with the message and nothing rejected", () => {
    const decoded = decodeExportResponse(withPartialSuccess(new Uint8Array(0), "protobuf", warning)!);
    expect(decoded).toEqual({ rejected: 0, errorMessage: warning, partialSuccessCount: 1, otherFields: [] });
  });

  it("merged with the upstream's: its count kept, messages joined, unknown fields kept", () => {
    const upstream = concat([bytesField(1, [...varintField(1, 7), ...stringField(2, "7 points rejected")]), stringField(9, "unknown")]);
    const decoded = decodeExportResponse(withPartialSuccess(upstream, "protobuf", warning)!);
    expect(decoded).toEqual({ rejected: 7, errorMessage: `7 points rejected; ${warning}`, partialSuccessCount: 1, otherFields: [9] });
  });

  it("malformed protobuf is left alone (null)", () => {
    expect(withPartialSuccess(new Uint8Array([0x0a, 0x05, 0x01]), "protobuf", warning)).toBeNull();
  });
});

describe("withWarning on a Response", () => {
  it("rewrites a 2xx body in the client's encoding and keeps the status", async () => {
    const upstream = new Response(JSON.stringify({ partialSuccess: {} }), { status: 200, headers: { "content-type": "application/json" } });
    const response = await withWarning(upstream, "json", warning);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.json()).toEqual({ partialSuccess: { errorMessage: warning } });
    const pb = await withWarning(new Response(null, { status: 200 }), "protobuf", warning);
    expect(pb.headers.get("content-type")).toBe("application/x-protobuf");
    expect(decodeExportResponse(new Uint8Array(await pb.arrayBuffer())).errorMessage).toBe(warning);
  });

  it("a backend's 204 No Content (Loki answers OTLP logs so) becomes a 200 carrying the warning", async () => {
    for (const status of [204, 205]) {
      const response = await withWarning(new Response(null, { status }), "json", warning);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ partialSuccess: { errorMessage: warning } });
    }
  });

  it("an unmergeable body goes through unchanged", async () => {
    const response = await withWarning(new Response("plain", { status: 200, headers: { "content-type": "text/plain" } }), "json", warning);
    expect(await response.text()).toBe("plain");
    expect(response.headers.get("content-type")).toBe("text/plain");
  });
});

describe("one warning per org per isolate per minute", () => {
  it("allows the first, then nothing for that org until a minute has passed; other orgs are independent", () => {
    const limiter = new WarningLimiter({ intervalMs: 60_000, capacity: 100 });
    expect(limiter.take("org_a", 0)).toBe(true);
    expect(limiter.take("org_a", 1_000)).toBe(false);
    expect(limiter.take("org_a", 59_999)).toBe(false);
    expect(limiter.take("org_b", 1_000)).toBe(true);
    expect(limiter.take("org_a", 60_000)).toBe(true);
    expect(limiter.take("org_a", 60_001)).toBe(false);
  });

  it("memory is bounded: never more entries than its capacity", () => {
    const limiter = new WarningLimiter({ intervalMs: 60_000, capacity: 50 });
    for (let i = 0; i < 1_000; i++) limiter.take(`org_${i}`, i);
    expect(limiter.size).toBeLessThanOrEqual(50);
    // The newest orgs are still limited.
    expect(limiter.take("org_999", 2_000)).toBe(false);
  });
});
