import { errorResponse } from "../../shared/http-error.ts";
import { log } from "../../shared/log.ts";
import { upgradeUrlFor, type IngestSettings } from "../config.ts";
import { identify } from "../request/admit.ts";
import type { Verdict } from "../request/gate.ts";
import { orgStatus, type KnownVerdict } from "./view.ts";

export const STATUS_ROUTE = "/v1/status";

/** Every answer of this route: a status changes with the org's billing, so no cache may keep one. */
const NO_STORE = { "cache-control": "no-store" };

/**
 * `GET /v1/status` (docs/ingest-api.md, "Status"): the org's standing, read with its ingest key, so a
 * customer's engineers learn where they stand before a 402 tells them. Same key check and 401s as the
 * OTLP routes (`identify`), and the same verdict the gate holds: isolate memory, then KV, and the
 * object only to confirm a suspension, as for an export. A suspended org reads its status (no 402 here).
 */
export async function handleStatus(request: Request, env: IngestEnv, settings: IngestSettings): Promise<Response> {
  const identified = await identify(request, env, settings, STATUS_ROUTE, "json");
  if (!identified.ok) return withNoStore(identified.response);
  const { orgId, keyId, verdict, now } = identified;
  const known = knownVerdict(verdict);
  // KV failed and nothing was known: the gate accepts data then, but a status saying "in good standing" would be a guess.
  if (known === null) {
    return errorResponse(503, "status_unavailable", "the billing state could not be read just now; retry shortly", {}, { ...NO_STORE, "retry-after": "5" });
  }
  const status = orgStatus(known, { orgId, now, enforceLimits: settings.enforceLimits, upgradeUrl: upgradeUrlFor(settings, orgId), enforcement: known.enforcement ?? settings.enforcement });
  // Logged like accepted exports: only as LOG_SAMPLE_RATE allows (refusals above are logged by `refuse`, throttled).
  if (settings.logSampleRate > 0 && Math.random() < settings.logSampleRate) {
    log({ event: "ingest_status", org_id: orgId, key_id: keyId, state: status.state, source: status.source });
  }
  return Response.json(status, { headers: NO_STORE });
}

/**
 * What the status may say of the gate's verdict. A fail-open acceptance is no verdict (the gate accepts
 * whatever the org owes): the status answers what the isolate knew before the lookup failed, marked
 * `unconfirmed`, or nothing (null: 503) when it knew nothing.
 */
function knownVerdict(verdict: Verdict): KnownVerdict | null {
  if (verdict.source !== "fail_open") return { ...verdict, source: verdict.source };
  return verdict.last_known ? { ...verdict.last_known, source: "unconfirmed" } : null;
}

function withNoStore(response: Response): Response {
  const headers = new Headers(response.headers);
  headers.set("cache-control", "no-store");
  return new Response(response.body, { status: response.status, headers });
}

/** Any other method on the status path. */
export const statusMethodNotAllowed = () => errorResponse(405, "method_not_allowed", "/v1/status accepts GET only", {}, { allow: "GET", ...NO_STORE });
