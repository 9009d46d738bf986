import type { BodyFormat } from "../../shared/http-error.ts";
import type { MirrorEntry } from "../../shared/billing-state.ts";
import { overdueWarning, suspensionWarning, withWarning, type OverdueFacts } from "./overdue-warning.ts";
import { warningLimiter } from "./warning-limiter.ts";

/**
 * An accepted OTLP answer for an org that is overdue with a deadline carries the overdue
 * warning in its partial_success (merged with the upstream's own), at most once per org per
 * isolate per minute. Everything it needs is in the gate's verdict: no lookup here.
 * `observedSuspension`: a suspended org admitted by observe mode (issue 21), warned the same way.
 */
export async function withOverdueWarning(
  response: Response,
  verdict: OverdueFacts & Pick<MirrorEntry, "suspended_at">,
  format: BodyFormat,
  orgId: string,
  now = Date.now(),
  observedSuspension = false,
): Promise<Response> {
  if (response.status < 200 || response.status >= 300) return response;
  const warning = observedSuspension ? suspensionWarning(verdict) : overdueWarning(verdict, now);
  if (warning === null || !warningLimiter.take(orgId, now)) return response;
  return withWarning(response, format, warning);
}
