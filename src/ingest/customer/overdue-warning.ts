import type { MirrorEntry } from "../../shared/billing-state.ts";
import type { BodyFormat } from "../../shared/http-error.ts";
import { payUrlOf } from "./pay-link.ts";
import { bytesField, concat, readFields, stringField } from "./protobuf.ts";

/**
 * The warning inside the customer's own pipeline while an org is overdue: an OTLP
 * `partial_success` with nothing rejected and an `error_message` naming the deadline and where
 * to pay. The OTLP specification allows a partial success with zero rejected items to carry a
 * warning; the Collector and the SDKs log it as one.
 */

/** What the warning needs of an org, as the gate's verdict (or a mirror entry) carries it: no lookup of its own. */
export type OverdueFacts = Pick<MirrorEntry, "state" | "suspend_at" | "pay_url">;

/** The message, or null when no warning is due: only `overdue` with a deadline (not lapsed, not exempt). */
export function overdueWarning(entry: OverdueFacts, _now: number): string | null {
  if (entry.state !== "overdue" || entry.suspend_at === null) return null;
  const at = new Date(entry.suspend_at).toISOString().replace(/\.000Z$/, "Z");
  const payUrl = payUrlOf(entry.pay_url);
  return `Billing: an invoice is overdue; ingestion will be suspended at ${at} unless it is paid${payUrl ? `: ${payUrl}` : "."}`;
}

/**
 * Observe mode (issue 21): a suspended org whose data is still accepted hears the same kind of
 * warning, since the deadline has passed: it may be cut off whenever enforcement is turned on.
 */
export function suspensionWarning(entry: Pick<MirrorEntry, "suspended_at" | "pay_url">): string {
  const at = entry.suspended_at === null ? "" : ` at ${new Date(entry.suspended_at).toISOString().replace(/\.000Z$/, "Z")}`;
  const payUrl = payUrlOf(entry.pay_url);
  return `Billing: an invoice is overdue and its deadline passed${at}; ingestion may be suspended at any time unless it is paid${payUrl ? `: ${payUrl}` : "."}`;
}

const join = (theirs: string, ours: string) => (theirs.trim() === "" ? ours : `${theirs}; ${ours}`);

/**
 * The upstream's export response with the warning merged into its partial_success (its counts
 * kept, messages joined), in the client's encoding; null when the body cannot be read as one
 * (it then goes to the client unchanged, without the warning).
 */
export function withPartialSuccess(upstream: Uint8Array, format: BodyFormat, warning: string): Uint8Array | null {
  return format === "json" ? mergeJson(upstream, warning) : mergeProtobuf(upstream, warning);
}

function mergeJson(upstream: Uint8Array, warning: string): Uint8Array | null {
  let body: unknown = {};
  const text = new TextDecoder().decode(upstream);
  if (text.trim() !== "") {
    try {
      body = JSON.parse(text);
    } catch {
      return null;
    }
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return null;
  const { partialSuccess, partial_success, ...rest } = body as Record<string, unknown>;
  const theirs = (partialSuccess ?? partial_success ?? {}) as unknown;
  if (typeof theirs !== "object" || theirs === null || Array.isArray(theirs)) return null;
  const { errorMessage, error_message, ...counts } = theirs as Record<string, unknown>;
  const message = join(typeof errorMessage === "string" ? errorMessage : typeof error_message === "string" ? error_message : "", warning);
  return new TextEncoder().encode(JSON.stringify({ ...rest, partialSuccess: { ...counts, errorMessage: message } }));
}

/**
 * Export{Trace,Metrics,Logs}ServiceResponse: field 1 is partial_success, whose field 1 is the
 * rejected count (int64) and field 2 the error_message, in all three signals. Every other
 * field passes through byte for byte.
 */
function mergeProtobuf(upstream: Uint8Array, warning: string): Uint8Array | null {
  const fields = readFields(upstream);
  if (fields === null) return null;
  const others: Uint8Array[] = [];
  const inner: Uint8Array[] = [];
  let theirMessage = "";
  for (const field of fields) {
    if (field.number !== 1) {
      others.push(field.raw);
      continue;
    }
    if (field.wire !== 2) return null;
    // Repeated occurrences of an embedded message merge, as protobuf parsers do.
    const parts = readFields(field.value as Uint8Array);
    if (parts === null) return null;
    for (const part of parts) {
      if (part.number === 2 && part.wire === 2) theirMessage = new TextDecoder().decode(part.value as Uint8Array);
      else inner.push(part.raw);
    }
  }
  const partialSuccess = bytesField(1, [...concat(inner), ...stringField(2, join(theirMessage, warning))]);
  return concat([partialSuccess, ...others]);
}

/** A successful export response is small; anything larger is passed through unread. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** Statuses whose response can carry no body: the warning turns them into a 200 (an OTLP success either way). */
const NULL_BODY_STATUSES = new Set([204, 205]);

/** The upstream's 2xx response with the warning merged in; unchanged when it cannot be merged. */
export async function withWarning(response: Response, format: BodyFormat, warning: string): Promise<Response> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > MAX_RESPONSE_BYTES) return response;
  const bytes = new Uint8Array(await response.arrayBuffer());
  const merged = bytes.byteLength > MAX_RESPONSE_BYTES ? null : withPartialSuccess(bytes, format, warning);
  if (merged === null) return new Response(NULL_BODY_STATUSES.has(response.status) ? null : bytes, { status: response.status, headers: response.headers });
  const headers = new Headers(response.headers);
  headers.set("content-type", format === "json" ? "application/json" : "application/x-protobuf");
  headers.delete("content-length");
  headers.delete("content-encoding");
  return new Response(merged, { status: NULL_BODY_STATUSES.has(response.status) ? 200 : response.status, headers });
}
