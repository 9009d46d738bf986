import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { TEST_ADMIN_TOKEN, TEST_AUTUMN_SECRET_KEY, TEST_INGEST_KEY_PEPPER, TEST_NOTIFY_SECRET, TEST_WEBHOOK_SECRET } from "./test/support/secrets.ts";

const secrets = {
  AUTUMN_SECRET_KEY: TEST_AUTUMN_SECRET_KEY,
  AUTUMN_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
  ADMIN_TOKEN: TEST_ADMIN_TOKEN,
  INGEST_KEY_PEPPER: TEST_INGEST_KEY_PEPPER,
};

export default defineConfig({
  test: {
    // Every decision logs a JSON line; show them only for tests that fail.
    silent: "passed-only",
    projects: [
      {
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./wrangler.jsonc" },
            miniflare: {
              bindings: {
                ...secrets,
                AUTUMN_API_URL: inject<string>("autumnUrl"),
                AUTUMN_TIMEOUT: "1s",
                NOTIFY_URL: `${inject<string>("receiverUrl")}/tollgate-events`,
                NOTIFY_SECRET: TEST_NOTIFY_SECRET,
                // Metering on for the billing tests (the ledger and plan limits); reports gather 10 s of usage.
                USAGE_FEATURES: "traces=spans logs=log_records metrics=data_points logpush=log_records bytes=ingest_bytes",
                USAGE_REPORT_INTERVAL: "10s",
              },
            },
          })),
        ],
        test: { name: "billing", include: ["test/billing/**/*.test.ts"], globalSetup: ["./test/support/global-setup.ts"] },
      },
      {
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./test/ingest/wrangler.jsonc" },
            miniflare: {
              bindings: { ...secrets, AUTUMN_API_URL: inject<string>("autumnUrl"), UPSTREAM_OTLP_URL: inject<string>("sinkUrl") },
            },
          })),
        ],
        test: { name: "ingest", include: ["test/ingest/**/*.test.ts"], globalSetup: ["./test/support/global-setup.ts"] },
      },
      {
        // The model of the whole org (test/model): billing and ingest Workers, every object, R2 and queues in one
        // workerd, against the Autumn stand-in and the upstream sink. `npm test` runs a fixed seed; `npm run test:model` a long run.
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./test/model/wrangler.jsonc" },
            miniflare: {
              bindings: {
                ...secrets,
                AUTUMN_API_URL: inject<string>("autumnUrl"),
                UPSTREAM_OTLP_URL: inject<string>("sinkUrl"),
                MODEL_RUNS: process.env.MODEL_RUNS ?? "",
                MODEL_STEPS: process.env.MODEL_STEPS ?? "",
                MODEL_SEED: process.env.MODEL_SEED ?? "",
                MODEL_TRACE: process.env.MODEL_TRACE ?? "",
                MODEL_LONG: process.env.MODEL_LONG ?? "",
                MODEL_TIME_LIMIT_MS: process.env.MODEL_TIME_LIMIT_MS ?? "",
              },
            },
          })),
        ],
        test: { name: "model", include: ["test/model/**/*.test.ts"], globalSetup: ["./test/support/global-setup.ts"], testTimeout: 600_000 },
      },
      {
        test: { name: "tools", environment: "node", include: ["test/tools/**/*.test.ts"] },
      },
      {
        // `npm run test:e2e`: the whole local stack (both Workers under wrangler dev) with real clients.
        test: {
          name: "e2e",
          environment: "node",
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: ["./test/e2e/global-setup.ts"],
          testTimeout: 30_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
