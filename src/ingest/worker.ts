import { Router } from "itty-router";
import { ConfigError } from "../shared/settings.ts";
import { errorResponse, jsonResponse } from "../shared/http-error.ts";
import { logError } from "../shared/log.ts";
import { ingestSettings } from "./config.ts";
import { handleLogpush } from "./logpush-route.ts";
import { handleOtlp } from "./otlp.ts";

const methodNotAllowed = () => errorResponse(405, "method_not_allowed", "OTLP and Logpush routes accept POST only", {}, { allow: "POST" });

const router = Router<Request & { params: Record<string, string> }, [IngestEnv, ExecutionContext]>({
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
  .get("/health", () => jsonResponse({ status: "ok", worker: "ingest" }))
  .post("/v1/traces", (request, env) => handleOtlp(request, env, ingestSettings(env), "/v1/traces"))
  .post("/v1/metrics", (request, env) => handleOtlp(request, env, ingestSettings(env), "/v1/metrics"))
  .post("/v1/logs", (request, env) => handleOtlp(request, env, ingestSettings(env), "/v1/logs"))
  .post("/v1/logpush/:dataset", (request, env) => handleLogpush(request, env, ingestSettings(env), decodeURIComponent(request.params.dataset ?? "")))
  .all("/v1/:signal", methodNotAllowed)
  .all("/v1/logpush/:dataset", methodNotAllowed)
  .all("*", () => errorResponse(404, "not_found", "no such route: use /v1/traces, /v1/metrics, /v1/logs or /v1/logpush/{dataset}"));

export default {
  fetch: (request, env, ctx) => router.fetch(request, env, ctx),
} satisfies ExportedHandler<IngestEnv>;
