import { describe, expect, it } from "vitest";
import { HELP_TYPE_URL, payUrlOf, suspendedMessage, suspendedResponse } from "../../src/ingest/customer/pay-link.ts";
import { decodeStatusWithHelp } from "../support/customer-decode.ts";

const PAY = "https://invoice.stripe.com/i/acct_1/test_abc";
const SUSPENDED_AT = Date.parse("2026-11-20T10:00:00Z");

describe("the pay link in every 402", () => {
  it("accepts only https links", () => {
    expect(payUrlOf(PAY)).toBe(PAY);
    expect(payUrlOf("http://invoice.example.com/pay")).toBeNull();
    expect(payUrlOf("javascript:alert(1)")).toBeNull();
    expect(payUrlOf("not a url")).toBeNull();
    expect(payUrlOf(null)).toBeNull();
    expect(payUrlOf(undefined)).toBeNull();
  });

  it("JSON 402 bodies carry pay_url and name it in the message", async () => {
    const response = suspendedResponse({ format: "json", orgId: "org_pay_json", suspendedAt: SUSPENDED_AT, payUrl: PAY, parked: null, logpush: false });
    expect(response.status).toBe(402);
    expect(response.headers.get("content-type")).toContain("application/json");
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ error: "billing_suspended", org_id: "org_pay_json", suspended_at: "2026-11-20T10:00:00.000Z", pay_url: PAY });
    expect(body.message).toContain(`Pay the overdue invoice at ${PAY}`);
  });

  it("a non-https link is ignored: pay_url null, no URL in the message", async () => {
    const response = suspendedResponse({ format: "json", orgId: "org_pay_http", suspendedAt: SUSPENDED_AT, payUrl: "http://evil.example.com/pay", parked: null, logpush: false });
    const body = (await response.json()) as Record<string, unknown>;
    expect(body.pay_url).toBeNull();
    expect(body.message).not.toContain("evil");
    expect(body.message).toContain("Pay the overdue invoice");
  });

  it("protobuf 402 bodies are a google.rpc.Status naming the URL, with ErrorInfo and a Help link", async () => {
    const response = suspendedResponse({ format: "protobuf", orgId: "org_pay_pb", suspendedAt: SUSPENDED_AT, payUrl: PAY, parked: null, logpush: false });
    expect(response.status).toBe(402);
    expect(response.headers.get("content-type")).toBe("application/x-protobuf");
    const status = decodeStatusWithHelp(new Uint8Array(await response.arrayBuffer()));
    expect(status.code).toBe(7);
    expect(status.message).toContain(PAY);
    expect(status.reason).toBe("billing_suspended");
    expect(status.metadata).toMatchObject({ org_id: "org_pay_pb", pay_url: PAY });
    expect(status.typeUrls).toEqual(["type.googleapis.com/google.rpc.ErrorInfo", HELP_TYPE_URL]);
    expect(HELP_TYPE_URL).toBe("type.googleapis.com/google.rpc.Help");
    expect(status.links).toEqual([{ description: "Pay the overdue invoice", url: PAY }]);
  });

  it("protobuf without an https link has no Help detail", async () => {
    const response = suspendedResponse({ format: "protobuf", orgId: "org_pay_pb2", suspendedAt: null, payUrl: "ftp://x.example.com/", parked: null, logpush: false });
    const status = decodeStatusWithHelp(new Uint8Array(await response.arrayBuffer()));
    expect(status.typeUrls).toEqual(["type.googleapis.com/google.rpc.ErrorInfo"]);
    expect(status.links).toEqual([]);
    expect(status.message).not.toContain("ftp:");
    expect(status.metadata.pay_url).toBeUndefined();
  });

  it("the Logpush 402 says Logpush drops refused batches, may disable the job, and to re-enable it after paying", async () => {
    const response = suspendedResponse({ format: "json", orgId: "org_pay_lp", suspendedAt: SUSPENDED_AT, payUrl: PAY, parked: null, logpush: true });
    const body = (await response.json()) as { message: string; pay_url: string };
    expect(body.pay_url).toBe(PAY);
    expect(body.message).toContain(PAY);
    expect(body.message).toMatch(/Logpush drops refused batches/);
    expect(body.message).toMatch(/may disable the job/);
    expect(body.message).toMatch(/re-enable the job/);
  });

  it("a parked batch's 402 says it is kept for the retention and delivered once paid", () => {
    const message = suspendedMessage({ payUrl: PAY, parked: { retentionMs: 72 * 3_600_000 }, logpush: false });
    expect(message).toContain("kept for 3d");
    expect(message).toMatch(/delivered .* once the invoice is paid/);
    expect(suspendedMessage({ payUrl: PAY, parked: null, logpush: false })).not.toContain("kept for");
  });

  it("extra headers pass through", () => {
    const response = suspendedResponse({ format: "json", orgId: "org_pay_h", suspendedAt: null, payUrl: null, parked: null, logpush: false }, { "x-test": "1" });
    expect(response.headers.get("x-test")).toBe("1");
  });
});
