import { errorResponse, type BodyFormat } from "../../shared/http-error.ts";
import { relativeTime } from "../../shared/relative-time.ts";
import { GrpcCode } from "../../shared/rpc-status.ts";
import type { FeatureLimit } from "../../shared/usage.ts";
import { encodeStatus } from "./pay-link.ts";

/**
 * The refusal of a signal whose plan allowance is used up (docs/metering.md, "Plan limits"): 429
 * `plan_limit_reached`, retryable, with Retry-After until the reset (at most an hour). OTLP
 * exporters drop a batch on 402 at once but retry 429 after Retry-After; a plan limit is not the
 * data's fault and is lifted by an upgrade or the reset, so a client that holds data (a Collector
 * with a persistent sending queue) keeps it and delivers it once the limit lifts. The hour's cap
 * keeps such a client checking back often enough to notice an upgrade.
 */

export const PLAN_LIMIT_MAX_RETRY_AFTER_S = 3600;
export const UPGRADE_LINK_DESCRIPTION = "Upgrade the plan";

/** Whole seconds until the reset, at least 1 (never back before it), at most an hour; an hour when the balance never resets. */
export function planLimitRetryAfter(resetAt: number | null, now: number): number {
  if (resetAt === null) return PLAN_LIMIT_MAX_RETRY_AFTER_S;
  return Math.min(PLAN_LIMIT_MAX_RETRY_AFTER_S, Math.max(1, Math.ceil((resetAt - now) / 1000)));
}

export type PlanLimitRefusal = {
  format: BodyFormat;
  limit: FeatureLimit;
  /** The upgrade link for this org (UPGRADE_URL with the org filled in), or null. */
  upgradeUrl: string | null;
  /** The Logpush route: Logpush retries a refused upload only for a few minutes. */
  logpush: boolean;
  now: number;
};

/** "2026-12-01T00:00:00Z": the ISO time without milliseconds when there are none, for people. */
function readableIso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, "Z");
}

export function planLimitMessage(refusal: Omit<PlanLimitRefusal, "format">): string {
  const { limit, upgradeUrl, now } = refusal;
  const parts = [`The plan's allowance of ${limit.feature_id} is used up, so this data is refused for now.`];
  if (limit.reset_at !== null) {
    const at = readableIso(limit.reset_at);
    parts.push(`It resets ${at} (${relativeTime(new Date(limit.reset_at).toISOString(), now)}); retry then, or sooner after an upgrade.`);
  } else {
    parts.push("It does not reset by itself.");
  }
  parts.push(upgradeUrl ? `Upgrade the plan at ${upgradeUrl} to lift the limit now.` : "Upgrade the plan (or contact support) to lift the limit now.");
  if (refusal.logpush) parts.push("Cloudflare Logpush retries a refused batch for a few minutes only, then drops it.");
  return parts.join(" ");
}

/** The 429 in the client's encoding: JSON fields, or a google.rpc.Status (RESOURCE_EXHAUSTED) with ErrorInfo and a Help link. */
export function planLimitResponse(refusal: PlanLimitRefusal): Response {
  const message = planLimitMessage(refusal);
  const resetAt = refusal.limit.reset_at === null ? null : new Date(refusal.limit.reset_at).toISOString();
  const headers = { "retry-after": String(planLimitRetryAfter(refusal.limit.reset_at, refusal.now)) };
  if (refusal.format === "json") {
    return errorResponse(429, "plan_limit_reached", message, { feature_id: refusal.limit.feature_id, reset_at: resetAt, upgrade_url: refusal.upgradeUrl }, headers, "json");
  }
  const metadata: Record<string, string> = { feature_id: refusal.limit.feature_id };
  if (resetAt !== null) metadata.reset_at = resetAt;
  if (refusal.upgradeUrl) metadata.upgrade_url = refusal.upgradeUrl;
  const links = refusal.upgradeUrl ? [{ description: UPGRADE_LINK_DESCRIPTION, url: refusal.upgradeUrl }] : [];
  const body = encodeStatus({ code: GrpcCode.RESOURCE_EXHAUSTED, message, reason: "plan_limit_reached", metadata, links });
  return new Response(body, { status: 429, headers: { ...headers, "content-type": "application/x-protobuf" } });
}
