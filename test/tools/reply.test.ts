import { describe, expect, it } from "vitest";
import { formatReply, MAX_REPLY_CHARS, summarizeBody } from "../../tools/dev/reply.mjs";

/** The try-it block's replies (issue 22): each as its status and one line, never a 1.8 KB JSON line. */
describe("tools/dev/reply.mjs", () => {
  it("prints an error reply as its status, code and whole message on one line", () => {
    const body = JSON.stringify({ error: "billing_suspended", message: "Ingestion is suspended.\nPay the overdue invoice at https://pay.example/1 (or contact support).", org_id: "demo-org", pay_url: "https://pay.example/1" });
    expect(formatReply(`${body}\n402`)).toBe("402 billing_suspended: Ingestion is suspended. Pay the overdue invoice at https://pay.example/1 (or contact support).");
  });

  it("prints an OTLP partial-success warning, in either spelling, as the warning", () => {
    expect(formatReply(`${JSON.stringify({ partialSuccess: { rejectedLogRecords: "0", errorMessage: "Billing: an invoice is overdue" } })}\n200`)).toBe("200 warning: Billing: an invoice is overdue");
    expect(summarizeBody(JSON.stringify({ partial_success: { error_message: "Billing: soon" } }))).toBe("warning: Billing: soon");
  });

  it("prints a partial success without a message, and any other JSON, compactly and clipped", () => {
    expect(formatReply("{}\n200")).toBe("200 {}");
    expect(summarizeBody('{ "partialSuccess": {} }')).toBe('{"partialSuccess":{}}');
    const long = summarizeBody(JSON.stringify({ customer: { id: "demo-org", name: "x".repeat(1_000) } }));
    expect(long.length).toBe(MAX_REPLY_CHARS);
    expect(long.endsWith("…")).toBe(true);
  });

  it("prints text on one line, an empty body as such, and says so when curl gave no status", () => {
    expect(formatReply("not\njson\n503")).toBe("503 not json");
    expect(formatReply("\n204")).toBe("204 (empty body)");
    expect(formatReply("204")).toBe("204 (empty body)");
    expect(formatReply('{"error":"x"}')).toMatch(/^\(no status: run curl with -w/);
  });
});
