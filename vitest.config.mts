import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import type { FakeUrls } from "./test/support/fake-urls.ts";
import { FAKE_SETS } from "./test/support/global-setup.ts";
import { dropWranglerSecretNotices, dropWorkerdFaultReports, depsWithoutBrokenSourceMaps } from "./test/support/quiet-config.ts";
import { PREBUNDLED_DEPS, poolSocketsUncompressed, runtimeStorageInMemory } from "./test/support/runtime-cost.ts";
import { ModelAndToolsFirst } from "./test/support/sequencer.ts";
import { TEST_ADMIN_TOKEN, TEST_AUTUMN_SECRET_KEY, TEST_INGEST_KEY_PEPPER, TEST_NOTIFY_SECRET, TEST_WEBHOOK_SECRET } from "./test/support/secrets.ts";

const secrets = {
  AUTUMN_SECRET_KEY: TEST_AUTUMN_SECRET_KEY,
  AUTUMN_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
  ADMIN_TOKEN: TEST_ADMIN_TOKEN,
  INGEST_KEY_PEPPER: TEST_INGEST_KEY_PEPPER,
};

/** `FUZZ_REQUESTS=1000 npm test`: more seeded malformed requests per route in the fuzz tests (npm test sends 30 per billing route, 60 per ingest route). */
const knobs = { FUZZ_REQUESTS: process.env.FUZZ_REQUESTS ?? "" };

// The workerd projects' secrets are bindings below, not .dev.vars: wrangler's notice that it found none is dropped.
dropWranglerSecretNotices([...Object.keys(secrets), "NOTIFY_SECRET"]);
dropWorkerdFaultReports();
poolSocketsUncompressed();
runtimeStorageInMemory();

type Inject = <T>(key: string) => T;

/**
 * Each runtime a project starts gets the next set of fakes, so two runtimes of one project running at once
 * never share a stand-in's faults (test files set them globally and clear them after each test). With
 * isolate: false a project's runtimes run its files one after another and stop only when its files are
 * done, so at most FAKE_SETS (= maxWorkers) of them are ever started, and in turn. TEST_FAKES tells the
 * tests' own control calls which set that is (test/support/runtime-fakes.ts).
 */
function fakesPerRuntime(): (inject: Inject) => FakeUrls & { TEST_FAKES: string } {
  let started = 0;
  return (inject) => {
    const set = inject<FakeUrls[]>("fakes")[started++ % FAKE_SETS]!;
    return { ...set, TEST_FAKES: JSON.stringify(set) };
  };
}
const modelFakes = fakesPerRuntime();
// Several runtimes and the fakes share two cores, so a CPU-bound test (a 5 MiB Logpush batch parked in pieces:
// 2.5 s alone) can take four times as long as alone; 5 s, Vitest's default, failed it once in a full run.
const CPU_SHARED_TIMEOUT_MS = 30_000;
const workerdSetup = ["./test/support/runtime-fakes.ts", "./test/support/fresh-storage.ts"];

/**
 * A project of one Worker in workerd: its files share the project's runtimes (isolate: false), each file starting
 * on emptied storage (test/support/fresh-storage.ts), each runtime with its own set of fakes.
 */
function workerdProject(name: string, include: string[], configPath: string, bindings: (fakes: FakeUrls) => Record<string, string>) {
  const runtimeFakes = fakesPerRuntime();
  return {
    plugins: [
      depsWithoutBrokenSourceMaps(),
      cloudflareTest(({ inject }) => {
        const fakes = runtimeFakes(inject);
        return { wrangler: { configPath }, miniflare: { bindings: { ...secrets, ...knobs, TEST_FAKES: fakes.TEST_FAKES, ...bindings(fakes) } } };
      }),
    ],
    test: { name, include, deps: PREBUNDLED_DEPS, globalSetup: ["./test/support/global-setup.ts"], isolate: false, setupFiles: workerdSetup, testTimeout: CPU_SHARED_TIMEOUT_MS },
  };
}

/**
 * The billing Worker (root wrangler.jsonc). `billing` is in `npm test`; `billing-e2e`, the same setting for its
 * slowest checks at scale, in `npm run test:e2e`.
 */
const billingProject = (name: string, include: string[]) =>
  workerdProject(name, include, "./wrangler.jsonc", (fakes) => ({
    AUTUMN_API_URL: fakes.autumnUrl,
    AUTUMN_TIMEOUT: "1s",
    NOTIFY_URL: `${fakes.receiverUrl}/tollgate-events`,
    NOTIFY_SECRET: TEST_NOTIFY_SECRET,
    // Metering on for the billing tests (the ledger and plan limits); reports gather 10 s of usage.
    USAGE_FEATURES: "traces=spans logs=log_records metrics=data_points logpush=log_records bytes=ingest_bytes",
    USAGE_REPORT_INTERVAL: "10s",
  }));

/**
 * The ingest Worker composed with the OrgBilling class (test/ingest/wrangler.jsonc). `ingest` is in `npm test`;
 * `ingest-e2e`, the same setting for its slowest end-to-end checks, in `npm run test:e2e`.
 */
const ingestProject = (name: string, include: string[]) =>
  workerdProject(name, include, "./test/ingest/wrangler.jsonc", (fakes) => ({ AUTUMN_API_URL: fakes.autumnUrl, UPSTREAM_OTLP_URL: fakes.sinkUrl }));

export default defineConfig({
  test: {
    // Every decision logs a JSON line; show them only for tests that fail.
    silent: "passed-only",
    // Five runtimes on two cores: the tests mostly wait (on the fakes, on I/O), and fewer left the cores idle
    // (ingest alone: 53 s with two, 44 s with four; npm test 121 s with three, 94–105 s with four, 89–94 s with five).
    // Five once failed two otlp-streaming tests whose slow chunked uploads outlasted UPSTREAM_TIMEOUT as a whole;
    // the timeout now counts the upstream's silence from the body's latest chunk. Files run grouped by project, so a shared runtime
    // (isolate: false below) carries one project's files one after another.
    maxWorkers: FAKE_SETS,
    sequence: { sequencer: ModelAndToolsFirst },
    projects: [
      billingProject("billing", ["test/billing/**/*.test.ts"]),
      ingestProject("ingest", ["test/ingest/**/*.test.ts"]),
      {
        // The model of the whole org (test/model): billing and ingest Workers, every object, R2 and queues in one
        // workerd, against the Autumn stand-in and the upstream sink. `npm test` runs a fixed seed; `npm run test:model` a long run.
        plugins: [
          depsWithoutBrokenSourceMaps(),
          cloudflareTest(({ inject }) => {
            const fakes = modelFakes(inject);
            return {
              wrangler: { configPath: "./test/model/wrangler.jsonc" },
              miniflare: {
                bindings: {
                  ...secrets,
                  TEST_FAKES: fakes.TEST_FAKES,
                  AUTUMN_API_URL: fakes.autumnUrl,
                  UPSTREAM_OTLP_URL: fakes.sinkUrl,
                  MODEL_RUNS: process.env.MODEL_RUNS ?? "",
                  MODEL_STEPS: process.env.MODEL_STEPS ?? "",
                  MODEL_SEED: process.env.MODEL_SEED ?? "",
                  MODEL_TRACE: process.env.MODEL_TRACE ?? "",
                  MODEL_LONG: process.env.MODEL_LONG ?? "",
                  MODEL_TIME_LIMIT_MS: process.env.MODEL_TIME_LIMIT_MS ?? "",
                },
              },
            };
          }),
        ],
        test: { name: "model", include: ["test/model/**/*.test.ts"], deps: PREBUNDLED_DEPS, globalSetup: ["./test/support/global-setup.ts"], setupFiles: ["./test/support/runtime-fakes.ts"], testTimeout: 600_000 },
      },
      {
        // Node tests of the tools, beside the workerd runtimes on the same two cores: the stand-in's bulk seeding and long
        // walks took over 5 s (Vitest's default) under that load.
        // Its 16 files share their Node processes (isolate: false): a fresh process and module graph per file was
        // 3 s of CPU in every run (21.5 → 18.4 s for the project alone); the files keep no state between them.
        test: { name: "tools", environment: "node", include: ["test/tools/**/*.test.ts"], testTimeout: CPU_SHARED_TIMEOUT_MS, isolate: false },
      },
      ingestProject("ingest-e2e", ["test/ingest-e2e/**/*.test.ts"]),
      billingProject("billing-e2e", ["test/billing-e2e/**/*.test.ts"]),
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
