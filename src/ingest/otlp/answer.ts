import type { BodyFormat } from "../../shared/http-error.ts";
import type { IngestSettings } from "../config.ts";
import { withOverdueWarning } from "../customer/warn.ts";
import type { WaitUntil } from "../parking/batch.ts";
import { logUpstreamTrouble, settleForward } from "../request/account.ts";
import type { Admitted } from "../request/admit.ts";
import type { BodyProblem } from "../request/body.ts";
import type { ForwardResult } from "../request/forward.ts";
import { countForwarded, countParked } from "../usage/activity.ts";
import type { OtlpSignal } from "../usage/meter.ts";
import type { ParkedOnOutage } from "./park.ts";
import type { Refusal } from "./format.ts";

/**
 * What the client hears once its batch has been through the upstream (or parked instead): the
 * answer accounted for (request/account.ts), usage metered only once the data is accepted
 * (upstream 2xx, or parked during an outage), and for an org that is overdue with a deadline the
 * overdue warning in its partial_success (docs/customers.md); so does a suspended org's batch that
 * observe mode let through (issue 21), instead of the 402 it would have had. Each answer counts the
 * request's activity (usage/activity.ts): accepted, would-be-refused (observe mode) or parked.
 */

/** Who sent the batch, what it is, and where it went: what every answer below is about. */
export type Batch = { env: IngestEnv; settings: IngestSettings; ctx: WaitUntil; admitted: Admitted; format: BodyFormat; signal: OtlpSignal; context: { orgId: string; keyId: string; route: string; bytes: number } };

/** The upstream's own answer, accounted for; metered when it accepted the batch. */
export function answerForwarded(batch: Batch, result: ForwardResult, items: () => number | null | Promise<number | null>): Promise<Response> {
  const { env, settings, ctx, admitted, format, signal, context } = batch;
  if (result.outcome === "accepted") {
    countForwarded(env, settings, ctx, admitted, signal, { items, bytes: context.bytes });
  }
  return withOverdueWarning(settleForward(env, settings, context, result), admitted.verdict, format, admitted.orgId, undefined, admitted.observed === "billing_suspended");
}

/**
 * An outage's batch parked instead: the client gets the 2xx it would have got (an empty export
 * response), and the operator still hears that the upstream is down.
 */
export function answerParked(batch: Batch, result: ForwardResult, parked: ParkedOnOutage): Promise<Response> {
  const { env, settings, ctx, admitted, format, signal, context } = batch;
  logUpstreamTrouble(context, result, true);
  const accepted = settleForward(env, settings, { ...context, bytes: parked.bytes }, { ...result, response: emptyExportResponse(format), outcome: "accepted", code: null, failure: null, parked: true });
  countParked(env, settings, ctx, admitted, signal, parked);
  return withOverdueWarning(accepted, admitted.verdict, format, admitted.orgId, undefined, admitted.observed === "billing_suspended");
}

/** A body that failed its checks, before or while it went upstream: 400 for broken gzip, 413 past a cap. */
export function bodyRefusal(problem: BodyProblem): Refusal {
  if (problem.problem === "invalid_gzip") return { status: 400, code: "invalid_gzip", message: "the body is declared gzip but does not decompress" };
  const what = problem.problem === "too_large" ? "body" : "decompressed body";
  return { status: 413, code: "payload_too_large", message: `the ${what} exceeds ${problem.limit} bytes; send smaller batches` };
}

/** An Export*ServiceResponse with nothing in it: what a backend answers for a batch it took whole. */
function emptyExportResponse(format: BodyFormat): Response {
  return format === "json"
    ? new Response("{}", { status: 200, headers: { "content-type": "application/json" } })
    : new Response(new Uint8Array(0), { status: 200, headers: { "content-type": "application/x-protobuf" } });
}
