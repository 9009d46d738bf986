import { existsSync, readFileSync } from "node:fs";
import { parseEnv } from "node:util";

/**
 * The local stack's configuration: embedded demo defaults, overridden by a `.env` file at
 * the repo root, overridden by the process environment. Demo values only: never deploy them.
 */
export const LOCAL_DEFAULTS = {
  BILLING_PORT: "8787",
  INGEST_PORT: "8788",
  AUTUMN_PORT: "8789",
  SINK_PORT: "8790",
  AUTUMN_SECRET_KEY: "am_sk_test_local_demo",
  // base64("tollgate-local-demo-webhook-secret")
  AUTUMN_WEBHOOK_SECRET: "whsec_dG9sbGdhdGUtbG9jYWwtZGVtby13ZWJob29rLXNlY3JldA==",
  ADMIN_TOKEN: "local-admin-token",
  INGEST_KEY_PEPPER: "local-ingest-key-pepper",
  GRACE_PERIOD: "20s",
  RESYNC_INTERVAL: "1m",
  AUTUMN_TIMEOUT: "4s",
  TENANT_HEADER: "X-Scope-OrgID",
  MAX_BODY_BYTES: "20MiB",
  MAX_DECOMPRESSED_BYTES: "64MiB",
  UPSTREAM_TIMEOUT: "10s",
  LOG_SAMPLE_RATE: "0",
} as const;

export type LocalSettings = Record<keyof typeof LOCAL_DEFAULTS, string> & { AUTUMN_API_URL: string; UPSTREAM_OTLP_URL: string };

/** Variables each Worker receives (the rest configure the stand-ins and ports). */
export const BILLING_VARS = ["AUTUMN_API_URL", "AUTUMN_SECRET_KEY", "AUTUMN_WEBHOOK_SECRET", "ADMIN_TOKEN", "INGEST_KEY_PEPPER", "GRACE_PERIOD", "RESYNC_INTERVAL", "AUTUMN_TIMEOUT"] as const;
export const INGEST_VARS = ["UPSTREAM_OTLP_URL", "INGEST_KEY_PEPPER", "TENANT_HEADER", "MAX_BODY_BYTES", "MAX_DECOMPRESSED_BYTES", "UPSTREAM_TIMEOUT", "LOG_SAMPLE_RATE"] as const;

/** `root: null` skips the `.env` file (tests want the embedded defaults only). */
export function loadLocalSettings(options: { root: string | null; env?: NodeJS.ProcessEnv; overrides?: Partial<LocalSettings> }): LocalSettings {
  const envFile = options.root === null ? null : `${options.root}/.env`;
  const fromFile = envFile !== null && existsSync(envFile) ? parseEnv(readFileSync(envFile, "utf8")) : {};
  const fromProcess = options.env ?? process.env;
  const pick = (name: string, fallback: string) => options.overrides?.[name as keyof LocalSettings] ?? fromProcess[name] ?? fromFile[name] ?? fallback;
  const merged = Object.fromEntries(Object.entries(LOCAL_DEFAULTS).map(([name, fallback]) => [name, pick(name, fallback)])) as Record<keyof typeof LOCAL_DEFAULTS, string>;
  return {
    ...merged,
    AUTUMN_API_URL: pick("AUTUMN_API_URL", `http://127.0.0.1:${merged.AUTUMN_PORT}`),
    UPSTREAM_OTLP_URL: pick("UPSTREAM_OTLP_URL", `http://127.0.0.1:${merged.SINK_PORT}`),
  };
}

/** A dotenv file for `wrangler dev --env-file`, quoting every value. */
export function envFileText(settings: LocalSettings, names: readonly (keyof LocalSettings)[]): string {
  return names.map((name) => `${name}=${JSON.stringify(settings[name])}`).join("\n") + "\n";
}
