import type { EnforcementMode } from "../shared/billing-state.ts";
import { byteSizeSetting, durationSetting, enforcementSetting, optionalSetting, requiredSetting, urlSetting, ConfigError } from "../shared/settings.ts";
import { enforceLimits, usageFeatures, type UsageFeatures } from "../shared/usage.ts";

export type IngestSettings = {
  upstreamUrl: string;
  tenantHeader: string;
  maxBodyBytes: number;
  maxDecompressedBytes: number;
  upstreamTimeoutMs: number;
  logSampleRate: number;
  pepper: string;
  /** Signal → Autumn feature id (USAGE_FEATURES); empty: metering is off and the request path does no metering work. */
  usageFeatures: UsageFeatures;
  /** Whether USAGE_FEATURES maps anything: the one check the request path makes when metering is off. */
  metering: boolean;
  /** ENFORCE_LIMITS: refuse a signal whose feature the org has used up (429 plan_limit_reached). */
  enforceLimits: boolean;
  /** ENFORCEMENT: `observe` accepts and forwards what would be refused 402 or 429 (counted and logged); an org's own override wins. */
  enforcement: EnforcementMode;
  /** UPGRADE_URL: where a customer upgrades their plan (https; `{org_id}` is replaced); null when not given. */
  upgradeUrl: string | null;
};

const parsed = new WeakMap<object, IngestSettings>();

/** Read once per env object: the hot path must not re-parse configuration per request. */
export function ingestSettings(env: IngestEnv): IngestSettings {
  let settings = parsed.get(env);
  if (!settings) {
    const rate = Number(optionalSetting(env, "LOG_SAMPLE_RATE", "0"));
    if (!(rate >= 0 && rate <= 1)) throw new ConfigError("LOG_SAMPLE_RATE", "LOG_SAMPLE_RATE must be a number between 0 and 1");
    const tenantHeader = optionalSetting(env, "TENANT_HEADER", "X-Scope-OrgID");
    if (!/^[A-Za-z0-9-]+$/.test(tenantHeader)) throw new ConfigError("TENANT_HEADER", `TENANT_HEADER="${tenantHeader}" is not a header name`);
    const features = usageFeatures(env);
    // Metering without its queue would lose every count silently: refuse to run instead (503 not_configured).
    if (Object.keys(features).length > 0 && !(env as { USAGE?: unknown }).USAGE) {
      throw new ConfigError("USAGE", "USAGE_FEATURES is set but the USAGE queue producer (tollgate-usage) is not bound; add it to queues.producers or empty USAGE_FEATURES");
    }
    settings = {
      upstreamUrl: urlSetting(env, "UPSTREAM_OTLP_URL"),
      tenantHeader,
      maxBodyBytes: byteSizeSetting(env, "MAX_BODY_BYTES", "20MiB"),
      maxDecompressedBytes: byteSizeSetting(env, "MAX_DECOMPRESSED_BYTES", "64MiB"),
      upstreamTimeoutMs: durationSetting(env, "UPSTREAM_TIMEOUT", "10s"),
      logSampleRate: rate,
      pepper: requiredSetting(env, "INGEST_KEY_PEPPER", "set the same INGEST_KEY_PEPPER as on the billing Worker with `wrangler secret put INGEST_KEY_PEPPER`"),
      usageFeatures: features,
      metering: Object.keys(features).length > 0,
      enforceLimits: enforceLimits(env),
      enforcement: enforcementSetting(env),
      upgradeUrl: upgradeUrlSetting(env),
    };
    parsed.set(env, settings);
  }
  return settings;
}

/** UPGRADE_URL: shown to customers in every plan-limit refusal, so https only (as pay links are). */
function upgradeUrlSetting(env: IngestEnv): string | null {
  const text = optionalSetting(env, "UPGRADE_URL", "");
  if (text === "") return null;
  // `{org_id}` is not valid in every URL position; check the URL with a sample id in its place.
  const sample = text.replaceAll("{org_id}", "org");
  if (!URL.canParse(sample) || new URL(sample).protocol !== "https:") throw new ConfigError("UPGRADE_URL", `UPGRADE_URL="${text}" is not an https URL`);
  return text;
}

/** The upgrade link for one org: UPGRADE_URL with `{org_id}` replaced by the org id, URL-encoded. */
export function upgradeUrlFor(settings: Pick<IngestSettings, "upgradeUrl">, orgId: string): string | null {
  return settings.upgradeUrl === null ? null : settings.upgradeUrl.replaceAll("{org_id}", encodeURIComponent(orgId));
}
