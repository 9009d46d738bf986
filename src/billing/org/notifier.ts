import { ConfigError, durationSetting, optionalSetting, requiredSetting, type EnvVars } from "../../shared/settings.ts";
import type { NotifyEvent } from "./notifications.ts";
import { importSigningSecret, isSigningSecret, signPayload } from "../signature.ts";

export type NotifySettings = { url: string; secret: string; warningMs: number };

/**
 * Null when `NOTIFY_URL` is unset: then no event is queued at all. With `NOTIFY_URL` set,
 * a missing or malformed `NOTIFY_SECRET` or an invalid `SUSPENSION_WARNING` throws a ConfigError
 * (notifications are then off, and queued events wait), so a delivery can never fail on configuration.
 */
export function notifySettings(env: EnvVars): NotifySettings | null {
  const url = optionalSetting(env, "NOTIFY_URL", "");
  if (url === "") return null;
  const secret = requiredSetting(env, "NOTIFY_SECRET", "set a whsec_ secret with `wrangler secret put NOTIFY_SECRET` and give it to the receiver");
  if (!isSigningSecret(secret)) throw new ConfigError("NOTIFY_SECRET", "NOTIFY_SECRET must be whsec_ followed by base64 (for example whsec_ + base64 of 32 random bytes)");
  return { url, secret, warningMs: durationSetting(env, "SUSPENSION_WARNING", "24h") };
}

export type Delivery = { ok: true; status: number } | { ok: false; error: string; status?: number };

/** One delivery, signed with the Standard Webhooks scheme (`webhook-*` headers) under NOTIFY_SECRET. */
export async function deliver(settings: NotifySettings, event: NotifyEvent, now: number, timeoutMs: number): Promise<Delivery> {
  const key = await importSigningSecret(settings.secret, "NOTIFY_SECRET");
  const body = JSON.stringify(event);
  const timestamp = String(Math.floor(now / 1000));
  try {
    const response = await fetch(settings.url, {
      method: "POST",
      headers: { "content-type": "application/json", "webhook-id": event.id, "webhook-timestamp": timestamp, "webhook-signature": await signPayload(key, event.id, timestamp, body) },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel();
    return response.ok ? { ok: true, status: response.status } : { ok: false, status: response.status, error: `receiver answered ${response.status}` };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}
