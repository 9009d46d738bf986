import { formatDuration } from "../../shared/duration.ts";
import { httpsUrl } from "../../shared/https-url.ts";
import { errorResponse, type BodyFormat } from "../../shared/http-error.ts";
import { GrpcCode } from "../../shared/rpc-status.ts";
import { bytesField, concat, stringField, varintField } from "./protobuf.ts";

/**
 * The 402 a suspended org's exporters get, with the way to pay in it: JSON clients get
 * `pay_url`; protobuf clients a google.rpc.Status naming the URL with an ErrorInfo and a
 * google.rpc.Help detail (the OpenTelemetry Collector logs the Status message and its details,
 * so the customer's own logs show where to pay); Logpush jobs a message that also says what
 * Logpush does with refused batches.
 */

export const HELP_TYPE_URL = "type.googleapis.com/google.rpc.Help";
const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
const ERROR_DOMAIN = "tollgate";
export const PAY_LINK_DESCRIPTION = "Pay the overdue invoice";

/** The pay link as the customer may see it: https only (the billing side checks too; this is the edge's own guard). */
export function payUrlOf(value: string | null | undefined): string | null {
  return httpsUrl(value);
}

export type Suspension = {
  payUrl: string | null | undefined;
  /** Set when this batch was parked: how long it is kept. */
  parked: { retentionMs: number } | null;
  /** The Logpush route: no response channel, and Logpush's own retry and disabling rules. */
  logpush: boolean;
};

export function suspendedMessage(suspension: Suspension): string {
  const payUrl = payUrlOf(suspension.payUrl);
  const pay = payUrl ? `Pay the overdue invoice at ${payUrl} (or contact support)` : "Pay the overdue invoice (or contact support)";
  const parts = [`Ingestion is suspended because an invoice is overdue past its grace period and no payment has been received. ${pay}; ingestion resumes immediately after payment.`];
  if (suspension.parked) {
    parts.push(`This batch is kept for ${formatDuration(suspension.parked.retentionMs)} and delivered to your backend once the invoice is paid.`);
  }
  if (suspension.logpush) {
    parts.push("Cloudflare Logpush drops refused batches and may disable the job if refusals go on; after paying, re-enable the job if it was disabled.");
  }
  return parts.join(" ");
}

export type SuspendedRefusal = Suspension & { format: BodyFormat; orgId: string; suspendedAt: number | null };

/** The 402 itself, in the client's encoding. */
export function suspendedResponse(refusal: SuspendedRefusal, headers: Record<string, string> = {}): Response {
  const payUrl = payUrlOf(refusal.payUrl);
  const message = suspendedMessage(refusal);
  const suspendedAt = refusal.suspendedAt === null ? "" : new Date(refusal.suspendedAt).toISOString();
  if (refusal.format === "json") {
    return errorResponse(402, "billing_suspended", message, { org_id: refusal.orgId, suspended_at: suspendedAt, pay_url: payUrl }, headers, "json");
  }
  const metadata: Record<string, string> = { org_id: refusal.orgId, suspended_at: suspendedAt };
  if (payUrl) metadata.pay_url = payUrl;
  const body = encodeStatus({ code: GrpcCode.PERMISSION_DENIED, message, reason: "billing_suspended", metadata, links: payUrl ? [{ description: PAY_LINK_DESCRIPTION, url: payUrl }] : [] });
  return new Response(body, { status: 402, headers: { ...headers, "content-type": "application/x-protobuf" } });
}

/** google.rpc.Status {1: code, 2: message, 3: details (Any)}: an ErrorInfo, then a Help when there are links. */
export function encodeStatus(status: { code: number; message: string; reason: string; metadata: Record<string, string>; links: { description: string; url: string }[] }): Uint8Array {
  const errorInfo = [
    ...stringField(1, status.reason),
    ...stringField(2, ERROR_DOMAIN),
    ...Object.entries(status.metadata).flatMap(([key, value]) => bytesField(3, [...stringField(1, key), ...stringField(2, value)])),
  ];
  const details = [anyOf(ERROR_INFO_TYPE_URL, errorInfo)];
  if (status.links.length > 0) {
    // google.rpc.Help {1: repeated Link}; Link {1: description, 2: url}
    const help = status.links.flatMap((link) => bytesField(1, [...stringField(1, link.description), ...stringField(2, link.url)]));
    details.push(anyOf(HELP_TYPE_URL, help));
  }
  return concat([varintField(1, status.code), stringField(2, status.message), ...details.map((detail) => bytesField(3, detail))]);
}

function anyOf(typeUrl: string, value: number[]): number[] {
  return [...stringField(1, typeUrl), ...bytesField(2, value)];
}
