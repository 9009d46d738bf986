import { ConfigError, durationSetting, enforcementSetting, optionalSetting, requiredSetting, urlSetting, type EnvVars } from "../shared/settings.ts";
import type { EnforcementMode } from "../shared/billing-state.ts";
import { parseDuration } from "../shared/duration.ts";
import { logError } from "../shared/log.ts";
import { enforceLimits, usageFeatures, type UsageFeatures } from "../shared/usage.ts";

export { ConfigError } from "../shared/settings.ts";

export const DEFAULT_GRACE_PERIOD = "3d";
export const DEFAULT_RESYNC_INTERVAL = "6h";
export const DEFAULT_MIN_NOTICE = "24h";
/** How often an org with a plan limit in force is re-read: the bound on a limit outliving an upgrade whose webhook was lost. */
export const DEFAULT_LIMIT_RESYNC_INTERVAL = "10m";

export type PolicySettings = { gracePeriodMs: number; resyncIntervalMs: number; minNoticeMs: number; limitResyncIntervalMs: number };

export function policySettings(env: EnvVars): PolicySettings {
  return {
    gracePeriodMs: durationSetting(env, "GRACE_PERIOD", DEFAULT_GRACE_PERIOD),
    resyncIntervalMs: durationSetting(env, "RESYNC_INTERVAL", DEFAULT_RESYNC_INTERVAL),
    minNoticeMs: durationSetting(env, "MIN_NOTICE", DEFAULT_MIN_NOTICE),
    limitResyncIntervalMs: durationSetting(env, "LIMIT_RESYNC_INTERVAL", DEFAULT_LIMIT_RESYNC_INTERVAL),
  };
}

/** The embedded defaults, used (and the error reported) when a policy setting is invalid. */
export const DEFAULT_POLICY: PolicySettings = {
  gracePeriodMs: parseDuration(DEFAULT_GRACE_PERIOD)!,
  resyncIntervalMs: parseDuration(DEFAULT_RESYNC_INTERVAL)!,
  minNoticeMs: parseDuration(DEFAULT_MIN_NOTICE)!,
  limitResyncIntervalMs: parseDuration(DEFAULT_LIMIT_RESYNC_INTERVAL)!,
};

export const DEFAULT_USAGE_REPORT_INTERVAL = "30s";

/**
 * Metering on the billing side: which signals are reported under which Autumn feature, how long
 * usage is gathered before a report (fewer, larger reports), and whether the edge enforces limits
 * (shown in the views; the ingest Worker's own ENFORCE_LIMITS is what refuses).
 */
export type UsageSettings = { features: UsageFeatures; reportIntervalMs: number; enforce: boolean };

export function usageSettings(env: EnvVars): UsageSettings {
  return { features: usageFeatures(env), reportIntervalMs: durationSetting(env, "USAGE_REPORT_INTERVAL", DEFAULT_USAGE_REPORT_INTERVAL), enforce: enforceLimits(env) };
}

/** Metering off: what an invalid usage setting falls back to (and the error is reported). */
export const NO_USAGE: UsageSettings = { features: {}, reportIntervalMs: parseDuration(DEFAULT_USAGE_REPORT_INTERVAL)!, enforce: false };

/** A restore share such as `10%`: how much of what Tollgate holds restricted one sweep may move toward ok without an operator. */
export const DEFAULT_RECONCILE_MAX_RESTORE_SHARE = "10%";

export function reconcileMaxRestoreShare(env: EnvVars): number {
  const text = optionalSetting(env, "RECONCILE_MAX_RESTORE_SHARE", DEFAULT_RECONCILE_MAX_RESTORE_SHARE);
  const match = /^(\d+(?:\.\d+)?)\s*%$/.exec(text);
  const percent = match ? Number(match[1]) : NaN;
  if (!(percent >= 0 && percent <= 100)) throw new ConfigError("RECONCILE_MAX_RESTORE_SHARE", `RECONCILE_MAX_RESTORE_SHARE="${text}" is not a share such as 10% (0% to 100%)`);
  return percent / 100;
}

export type AutumnSettings = { baseUrl: string; secretKey: string; timeoutMs: number };

export function autumnSettings(env: EnvVars): AutumnSettings {
  return {
    baseUrl: urlSetting(env, "AUTUMN_API_URL", "https://api.useautumn.com"),
    secretKey: requiredSetting(env, "AUTUMN_SECRET_KEY", "set it with `wrangler secret put AUTUMN_SECRET_KEY` (an am_sk_... key)"),
    timeoutMs: durationSetting(env, "AUTUMN_TIMEOUT", "4s"),
  };
}

/** Several space-separated secrets are allowed while a secret is being rotated. */
export function webhookSecrets(env: EnvVars): string[] {
  return requiredSetting(env, "AUTUMN_WEBHOOK_SECRET", "copy the endpoint's signing secret (whsec_...) from Autumn's dashboard").split(/\s+/);
}

export function adminToken(env: EnvVars): string {
  return requiredSetting(env, "ADMIN_TOKEN", "set a long random token with `wrangler secret put ADMIN_TOKEN`");
}

export function ingestKeyPepper(env: EnvVars): string {
  return requiredSetting(env, "INGEST_KEY_PEPPER", "set a long random secret with `wrangler secret put INGEST_KEY_PEPPER` (the same value on both Workers)");
}

/** A configuration error is logged at most this often per object and variable, however often its alarm runs. */
const CONFIG_REPORT_INTERVAL_MS = 3_600_000;

/** One object's configuration problems, each logged at most once an hour per variable (the object's name in the line). */
export class ConfigReports {
  private readonly last = new Map<string, number>();
  private readonly orgId: string | null;

  constructor(orgId: string | null) {
    this.orgId = orgId;
  }

  report(error: ConfigError): void {
    const now = Date.now();
    const last = this.last.get(error.variable);
    if (last !== undefined && now - last < CONFIG_REPORT_INTERVAL_MS) return;
    this.last.set(error.variable, now);
    logError({ event: "not_configured", org_id: this.orgId, variable: error.variable, message: error.message });
  }
}

/** Reads a setting, or returns the ConfigError that names what to fix: for callers that go on without it. */
export function settingOrError<T>(read: () => T): T | ConfigError {
  try {
    return read();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

/**
 * ENFORCEMENT on the billing Worker: only what outbound events say (`"enforcement"`); every decision,
 * transition, warning and usage report is the same in both modes. An org's own override wins.
 */
export function enforcementMode(env: EnvVars): EnforcementMode {
  return enforcementSetting(env);
}
