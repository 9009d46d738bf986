/**
 * The console's session: a cookie holding an expiry and its HMAC under ADMIN_TOKEN, so the
 * token itself never leaves the login form, and rotating ADMIN_TOKEN ends every session.
 */
export const SESSION_COOKIE = "tollgate_session";
export const SESSION_TTL_MS = 12 * 3_600_000;

async function mac(token: string, expires: number): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(token), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signature = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`tollgate-console-session:${expires}`));
  return btoa(String.fromCharCode(...new Uint8Array(signature))).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export async function sessionCookie(token: string, now: number): Promise<string> {
  const expires = now + SESSION_TTL_MS;
  const value = `${expires}.${await mac(token, expires)}`;
  return `${SESSION_COOKIE}=${value}; Path=/admin; Max-Age=${SESSION_TTL_MS / 1000}; Secure; HttpOnly; SameSite=Strict`;
}

export const CLEARED_SESSION_COOKIE = `${SESSION_COOKIE}=; Path=/admin; Max-Age=0; Secure; HttpOnly; SameSite=Strict`;

function cookieValue(headers: Headers, name: string): string | null {
  for (const part of (headers.get("cookie") ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return rest.join("=");
  }
  return null;
}

export async function hasValidSession(headers: Headers, token: string, now: number): Promise<boolean> {
  const value = cookieValue(headers, SESSION_COOKIE);
  const match = value === null ? null : /^(\d{13})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!match || Number(match[1]) <= now) return false;
  const expected = new TextEncoder().encode(await mac(token, Number(match[1])));
  const presented = new TextEncoder().encode(match[2]!);
  return expected.length === presented.length && crypto.subtle.timingSafeEqual(expected, presented);
}

/**
 * A post a browser sent from another site: its Origin is not ours, or it says cross-site. A client
 * that sends neither (curl, a script) is not such a browser. Used for the sign-in form, which has no
 * session to check yet: a page elsewhere must not sign a browser in.
 */
export function fromAnotherSite(request: Request): boolean {
  const origin = request.headers.get("origin");
  if (origin !== null) return origin !== new URL(request.url).origin;
  const site = request.headers.get("sec-fetch-site");
  return site !== null && site !== "same-origin" && site !== "none";
}

/** Cookie-authenticated writes must come from our own pages (SameSite=Strict already blocks most). */
export function sameOrigin(request: Request): boolean {
  const origin = request.headers.get("origin");
  if (origin !== null) return origin === new URL(request.url).origin;
  return request.headers.get("sec-fetch-site") === "same-origin";
}
