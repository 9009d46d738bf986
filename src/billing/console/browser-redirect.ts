import { log } from "../../shared/log.ts";
import { orgIdFromPath } from "../../shared/storage-keys.ts";
import { adminToken } from "../config.ts";
import { hasValidSession, SESSION_COOKIE } from "./session.ts";

/**
 * The console page that shows what an admin API path answers: an org's page for
 * /admin/orgs/<id>[/...], a list for /admin/orgs?state=..., the overview otherwise.
 */
export function consolePageFor(url: URL): string {
  const [, , collection, rawId] = url.pathname.split("/");
  if (collection === "reconcile") return "/admin#sweep";
  if (rawId !== undefined && rawId !== "") {
    const orgId = orgIdFromPath(rawId);
    return orgId === null ? "/admin" : `/admin/org/${encodeURIComponent(orgId)}`;
  }
  const state = url.searchParams.get("state");
  return state === "ok" || state === "overdue" || state === "suspended" ? `/admin/list/${state}` : "/admin";
}

/**
 * A signed-in browser (the console's session cookie, a page load that accepts HTML, no bearer
 * token) that opens an admin API path, from a link or a typed address, is sent to the matching
 * console page instead of the API's JSON 401. Anything else, every API client included, goes
 * on to the API unchanged (undefined): a bearer token always means the API, and writes are
 * never redirected.
 */
export async function redirectSignedInBrowser(request: Request, env: BillingEnv): Promise<Response | undefined> {
  if (request.method !== "GET" && request.method !== "HEAD") return undefined;
  if (request.headers.has("authorization")) return undefined;
  if (!(request.headers.get("accept") ?? "").includes("text/html")) return undefined;
  if (!(request.headers.get("cookie") ?? "").includes(`${SESSION_COOKIE}=`)) return undefined;
  if (!(await hasValidSession(request.headers, adminToken(env), Date.now()))) return undefined;
  const url = new URL(request.url);
  const location = consolePageFor(url);
  log({ event: "console_redirect", from: url.pathname, to: location });
  return new Response(null, { status: 303, headers: { location, "cache-control": "no-store", vary: "accept, cookie, authorization" } });
}
