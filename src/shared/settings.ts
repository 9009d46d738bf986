import { parseDuration } from "./duration.ts";

/** A missing or invalid setting, named so the operator knows exactly what to fix. */
export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(message);
    this.name = "ConfigError";
    this.variable = variable;
  }
}

/** Any Worker env: settings are read by name so both Workers share these readers. */
export type EnvVars = object;

function raw(env: EnvVars, name: string): string | undefined {
  const value = (env as Record<string, unknown>)[name];
  return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
}

export function requiredSetting(env: EnvVars, name: string, hint: string): string {
  const value = raw(env, name);
  if (value === undefined) throw new ConfigError(name, `${name} is not set: ${hint}`);
  return value;
}

export function optionalSetting(env: EnvVars, name: string, fallback: string): string {
  return raw(env, name) ?? fallback;
}

export function durationSetting(env: EnvVars, name: string, fallback: string): number {
  const text = optionalSetting(env, name, fallback);
  const ms = parseDuration(text);
  if (ms === null || ms <= 0) throw new ConfigError(name, `${name}="${text}" is not a duration such as 3d, 36h or 5s`);
  return ms;
}

const BYTE_UNITS: Record<string, number> = { "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

export function byteSizeSetting(env: EnvVars, name: string, fallback: string): number {
  const text = optionalSetting(env, name, fallback);
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text);
  const unit = match ? BYTE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new ConfigError(name, `${name}="${text}" is not a size such as 20MiB or 5000000`);
  return Math.floor(Number(match[1]) * unit);
}

export function urlSetting(env: EnvVars, name: string, fallback?: string): string {
  const text = fallback === undefined ? requiredSetting(env, name, "set it to an http(s) URL") : optionalSetting(env, name, fallback);
  if (!URL.canParse(text)) throw new ConfigError(name, `${name}="${text}" is not a URL`);
  return text.replace(/\/+$/, "");
}

/**
 * ENFORCEMENT (issue 21): `enforce` (the default) carries refusals out; `observe` only counts and logs
 * what would have been refused while the data goes through. Read by both Workers, so set it alike.
 */
export function enforcementSetting(env: EnvVars): "enforce" | "observe" {
  const text = optionalSetting(env, "ENFORCEMENT", "enforce").toLowerCase();
  if (text !== "enforce" && text !== "observe") throw new ConfigError("ENFORCEMENT", `ENFORCEMENT="${text}" must be enforce or observe`);
  return text;
}
