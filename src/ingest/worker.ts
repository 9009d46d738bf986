import { Router } from "itty-router";
import { ConfigError } from "../shared/settings.ts";
import { errorResponse, jsonResponse } from "../shared/http-error.ts";
import { logError } from "../shared/log.ts";
import { ingestSettings, type IngestSettings } from "./config.ts";
import { cleanupParked, handleDeliveries } from "./parking/deliveries.ts";
import { handleLogpush } from "./logpush/route.ts";
import { handleOtlp } from "./otlp/route.ts";
import { handleStatus, statusMethodNotAllowed } from "./status/route.ts";
import { handleUsage, USAGE_QUEUE } from "./usage/consumer.ts";

const methodNotAllowed = () => errorResponse(405, "method_not_allowed", "OTLP and Logpush routes accept POST only", {}, { allow: "POST" });
const health = () => jsonResponse({ status: "ok", worker: "ingest" });
const ROUTES_HINT = "use /v1/traces, /v1/metrics, /v1/logs, /v1/logpush/{dataset} or GET /v1/status";

type IngestRequest = Request & { params: Record<string, string>; settings: IngestSettings };

const router = Router<IngestRequest, [IngestEnv, ExecutionContext]>({
  // Settings are parsed once per environment (cached by env object) and handed to every route;
  // a missing or invalid one throws ConfigError here, answered 503 not_configured below.
  before: [
    (request: IngestRequest, env: IngestEnv) => {
      request.settings = ingestSettings(env);
    },
  ],
  catch: (error: unknown) => {
    if (error instanceof ConfigError) {
      logError({ event: "not_configured", variable: error.variable, message: error.message });
      return errorResponse(503, "not_configured", error.message, {}, { "retry-after": "30" });
    }
    logError({ event: "unhandled_error", error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    // Retryable on purpose: whatever went wrong was ours, and the data must not be dropped.
    return errorResponse(503, "internal_error", "an unexpected error occurred; retry later", {}, { "retry-after": "5" });
  },
})
  .get("/health", health)
  .head("/health", health)
  .post("/v1/traces", (request, env, ctx) => handleOtlp(request, env, request.settings, "/v1/traces", ctx))
  .post("/v1/metrics", (request, env, ctx) => handleOtlp(request, env, request.settings, "/v1/metrics", ctx))
  .post("/v1/logs", (request, env, ctx) => handleOtlp(request, env, request.settings, "/v1/logs", ctx))
  .post("/v1/logpush/:dataset", (request, env, ctx) => handleLogpush(request, env, request.settings, decodeURIComponent(request.params.dataset ?? ""), ctx))
  .get("/v1/status", (request, env) => handleStatus(request, env, request.settings))
  // 405 only where another method would have been served (POST; GET for /v1/status); any other path is 404, whatever the method.
  .all("/v1/traces", methodNotAllowed)
  .all("/v1/metrics", methodNotAllowed)
  .all("/v1/logs", methodNotAllowed)
  .all("/v1/logpush/:dataset", methodNotAllowed)
  .all("/v1/status", statusMethodNotAllowed)
  .all("*", () => errorResponse(404, "not_found", `no such route: ${ROUTES_HINT}`));

/**
 * A path that does not percent-decode (`/v1/logpush/%E0`) is the client's mistake: it is
 * answered 400 before routing, authentication or anything else, so no route can throw on it.
 */
function decodablePath(request: Request): boolean {
  try {
    decodeURIComponent(new URL(request.url).pathname);
    return true;
  } catch {
    return false;
  }
}

export default {
  fetch: (request, env, ctx) =>
    decodablePath(request)
      ? router.fetch(request, env, ctx)
      : errorResponse(400, "invalid_path", `the request path has malformed percent-encoding; ${ROUTES_HINT}`),
  /**
   * Two queues: tollgate-usage (usage counts to each org's object, activity to the index shards; docs/metering.md) and
   * tollgate-deliveries (parked batches go upstream, docs/customers.md, "Parking"; nothing happens without PARKING).
   */
  queue: async (batch, env, _ctx) => {
    if (batch.queue === USAGE_QUEUE) await handleUsage(batch, env);
    else await handleDeliveries(batch, env);
  },
  /** On the sweep's schedule: expired parked batches are deleted and orgs with batches waiting are queued. */
  scheduled: async (controller, env, _ctx) => {
    await cleanupParked(env, controller.scheduledTime);
  },
} satisfies ExportedHandler<IngestEnv>;
