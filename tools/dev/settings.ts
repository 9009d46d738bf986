import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseEnv } from "node:util";
import { REPO_ROOT } from "../paths.ts";

/** Each Worker's wrangler config, relative to the repo root. */
export const WORKER_CONFIGS = { billing: "wrangler.jsonc", ingest: "src/ingest/wrangler.jsonc" } as const;

/** JSONC as wrangler accepts it: `//` and block comments, trailing commas. Strings are copied untouched. */
function parseJsonc(text: string): unknown {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      const end = /"(?:[^"\\]|\\.)*"/y;
      end.lastIndex = i;
      const match = end.exec(text);
      if (!match) throw new Error("unterminated string");
      out += match[0];
      i += match[0].length - 1;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else if (c === "/" && text[i + 1] === "*") {
      const close = text.indexOf("*/", i + 2);
      i = close < 0 ? text.length : close + 1;
    } else out += c;
  }
  // Trailing commas go; strings are matched first so a comma inside one stays.
  return JSON.parse(out.replace(/"(?:[^"\\]|\\.)*"|,(\s*[}\]])/g, (match, tail: string | undefined) => tail ?? match));
}

/** The settings a Worker declares: the names in its config's `vars` and `secrets.required`. */
export function readWorkerSettingNames(configPath: string): string[] {
  const config = parseJsonc(readFileSync(configPath, "utf8")) as { vars?: Record<string, unknown>; secrets?: { required?: string[] } };
  return [...Object.keys(config.vars ?? {}), ...(config.secrets?.required ?? [])];
}

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
  // A few seconds, so the demo shows it: an org first seen long past due (the reconcile walkthrough)
  // is suspended 10 s after it turns overdue, not on sight.
  MIN_NOTICE: "10s",
  // Outbound events are off unless .env sets NOTIFY_URL; http://127.0.0.1:8791/events makes
  // `npm start` run the local event receiver there and print every event it gets.
  NOTIFY_URL: "",
  // base64("tollgate-local-demo-notify-secret")
  NOTIFY_SECRET: "whsec_dG9sbGdhdGUtbG9jYWwtZGVtby1ub3RpZnktc2VjcmV0",
  // Warned 10 s before the demo's 20 s deadline.
  SUSPENSION_WARNING: "10s",
  // Metering and plan limits on (docs/metering.md), on both Workers; the stand-in grants every
  // feature without limit until an allowance is set. Usage reaches Autumn 2 s after it was accepted.
  USAGE_FEATURES: "traces=spans logs=log_records metrics=data_points logpush=log_records bytes=ingest_bytes",
  USAGE_REPORT_INTERVAL: "2s",
  // A limited org is re-read every minute, so an upgrade whose webhook is lost still lifts its limit soon.
  LIMIT_RESYNC_INTERVAL: "1m",
  ENFORCE_LIMITS: "true",
  UPGRADE_URL: "https://example.com/billing/upgrade?org={org_id}",
} as const;

/** Demo defaults and ports by name, plus any Worker setting that `.env` or the environment gives. */
export type LocalSettings = Record<keyof typeof LOCAL_DEFAULTS, string> & { AUTUMN_API_URL: string; UPSTREAM_OTLP_URL: string } & Partial<Record<string, string>>;

/**
 * The settings each Worker receives from `npm start`: every name its wrangler config declares
 * (`vars` and `secrets.required`), read from the config itself so a setting added there is
 * passed on without a change here. The rest of LocalSettings configures stand-ins and ports.
 */
export const BILLING_VARS: readonly string[] = readWorkerSettingNames(join(REPO_ROOT, WORKER_CONFIGS.billing));
export const INGEST_VARS: readonly string[] = readWorkerSettingNames(join(REPO_ROOT, WORKER_CONFIGS.ingest));

/** `root: null` skips the `.env` file (tests want the embedded defaults only). */
export function loadLocalSettings(options: { root: string | null; env?: NodeJS.ProcessEnv; overrides?: Partial<LocalSettings> }): LocalSettings {
  const envFile = options.root === null ? null : `${options.root}/.env`;
  const fromFile = envFile !== null && existsSync(envFile) ? parseEnv(readFileSync(envFile, "utf8")) : {};
  const fromProcess = options.env ?? process.env;
  const given = (name: string): string | undefined => options.overrides?.[name] ?? fromProcess[name] ?? fromFile[name];
  const merged = Object.fromEntries(Object.entries(LOCAL_DEFAULTS).map(([name, fallback]) => [name, given(name) ?? fallback])) as Record<keyof typeof LOCAL_DEFAULTS, string>;
  // A Worker setting without a demo default is passed only when given; otherwise its config's default applies.
  const extra = Object.fromEntries([...BILLING_VARS, ...INGEST_VARS].flatMap((name) => (name in merged || given(name) === undefined ? [] : [[name, given(name)!]])));
  return {
    ...extra,
    ...merged,
    AUTUMN_API_URL: given("AUTUMN_API_URL") ?? `http://127.0.0.1:${merged.AUTUMN_PORT}`,
    UPSTREAM_OTLP_URL: given("UPSTREAM_OTLP_URL") ?? `http://127.0.0.1:${merged.SINK_PORT}`,
  };
}

/** A dotenv file for `wrangler dev --env-file`, quoting every value; names with no value are left out. */
export function envFileText(settings: LocalSettings, names: readonly string[]): string {
  return names.flatMap((name) => (settings[name] === undefined ? [] : [`${name}=${JSON.stringify(settings[name])}`])).join("\n") + "\n";
}

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/**
 * The port of a NOTIFY_URL on this machine (http, loopback, explicit port), where `npm start`
 * runs the local event receiver; null when events are off or go elsewhere.
 */
export function localNotifyPort(settings: LocalSettings): number | null {
  let url: URL;
  try {
    url = new URL(settings.NOTIFY_URL);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" || !LOOPBACK_HOSTS.has(url.hostname) || url.port === "") return null;
  const port = Number(url.port);
  const taken = (["BILLING_PORT", "INGEST_PORT", "AUTUMN_PORT", "SINK_PORT"] as const).find((name) => Number(settings[name]) === port);
  if (taken) throw new Error(`NOTIFY_URL=${settings.NOTIFY_URL} uses port ${port}, which is ${taken}; pick another port (8791 is free)`);
  return port;
}
