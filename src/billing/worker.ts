import { Router } from "itty-router";
import { answer, refuse, toResponse } from "../shared/result.ts";
import { log, logError } from "../shared/log.ts";
import { adminRouter } from "./admin/api.ts";
import { redirectSignedInBrowser } from "./console/browser-redirect.ts";
import { FAVICON_PATH, favicon } from "./console/favicon.ts";
import { consoleRouter } from "./console/routes.ts";
import { ConfigError } from "./config.ts";
import { reconciler } from "./reconcile/sweeper.ts";
import { handleWebhook } from "./webhook/receiver.ts";

export { OrgBilling } from "./org/object.ts";
export { OrgIndex } from "./index/object.ts";
export { Reconciler } from "./reconcile/sweeper.ts";

const router = Router<Request & { params: Record<string, string> }, [BillingEnv, ExecutionContext]>({
  catch: (error: unknown) => {
    if (error instanceof ConfigError) {
      logError({ event: "not_configured", variable: error.variable, message: error.message });
      return refuse(503, "not_configured", error.message);
    }
    logError({ event: "unhandled_error", error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    return refuse(500, "internal_error", "an unexpected error occurred; it has been logged");
  },
})
  .get("/health", () => answer({ status: "ok", worker: "billing" }))
  .post("/api/billing/autumn/webhook", (request, env) => handleWebhook(request, env))
  .get(FAVICON_PATH, favicon)
  // A signed-in browser on an API path gets the console's page for it; API clients get the API.
  .all("/admin/reconcile", redirectSignedInBrowser, adminRouter.fetch)
  .all("/admin/reconcile/*", redirectSignedInBrowser, adminRouter.fetch)
  .all("/admin/orgs", redirectSignedInBrowser, adminRouter.fetch)
  .all("/admin/orgs/*", redirectSignedInBrowser, adminRouter.fetch)
  // `POST /admin/ingest-keys:batch` (the admin router takes only that suffix; the console has no page here).
  .all("/admin/ingest-keys*", adminRouter.fetch)
  .all("/admin", consoleRouter.fetch)
  .all("/admin/*", consoleRouter.fetch)
  .all("*", () => refuse(404, "not_found", "no such route"));

export default {
  // The one place a route's Result becomes a Response (the console's pages already are one).
  fetch: async (request, env, ctx) => toResponse(await router.fetch(request, env, ctx)),
  /** The Cron Trigger in wrangler.jsonc starts a reconciliation sweep (or finds one still running). */
  scheduled: async (controller, env, _ctx) => {
    const { started, sweep } = await reconciler(env).start("cron");
    log({ event: "reconcile_cron", cron: controller.cron, started, sweep_id: sweep.id, status: sweep.status });
  },
} satisfies ExportedHandler<BillingEnv>;
