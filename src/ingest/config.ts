import { byteSizeSetting, durationSetting, optionalSetting, requiredSetting, urlSetting, ConfigError } from "../shared/settings.ts";

export type IngestSettings = {
  upstreamUrl: string;
  tenantHeader: string;
  maxBodyBytes: number;
  maxDecompressedBytes: number;
  upstreamTimeoutMs: number;
  logSampleRate: number;
  pepper: string;
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
    settings = {
      upstreamUrl: urlSetting(env, "UPSTREAM_OTLP_URL"),
      tenantHeader,
      maxBodyBytes: byteSizeSetting(env, "MAX_BODY_BYTES", "20MiB"),
      maxDecompressedBytes: byteSizeSetting(env, "MAX_DECOMPRESSED_BYTES", "64MiB"),
      upstreamTimeoutMs: durationSetting(env, "UPSTREAM_TIMEOUT", "10s"),
      logSampleRate: rate,
      pepper: requiredSetting(env, "INGEST_KEY_PEPPER", "set the same INGEST_KEY_PEPPER as on the billing Worker with `wrangler secret put INGEST_KEY_PEPPER`"),
    };
    parsed.set(env, settings);
  }
  return settings;
}
