import { statfsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * What the test runtimes cost the machine beyond the tests themselves, cut where nothing tested changes.
 * `npm test` is CPU-bound on two cores (issue 22: under 90 s), so each of these was measured in a full run.
 */

/**
 * The Workers pool drives each runtime over one local WebSocket, opened by Miniflare with the `ws` package,
 * which offers permessage-deflate; workerd accepts it, so every frame of every test's traffic was deflated
 * and inflated on both ends. In one `npm test` that was 16–18 s of the Vitest process's CPU (measured with
 * `node --cpu-prof`). A loopback socket gains nothing from compression, so the offer is renamed to an
 * extension nobody knows and the socket carries frames as they are. The Workers under test open no WebSocket.
 */
export function poolSocketsUncompressed(): void {
  const require = createRequire(import.meta.url);
  const deflate = require(join(dirname(require.resolve("ws")), "lib", "permessage-deflate.js")) as { extensionName: string };
  Object.defineProperty(deflate, "extensionName", { value: "x-tollgate-tests-uncompressed" });
}

/** Memory-backed storage needs room for the largest run's files (the parked Logpush batches, the bulk seeds). */
const MIN_FREE_BYTES = 2 * 1024 ** 3;

/**
 * Miniflare keeps each runtime's Durable Object, KV and R2 storage (SQLite files) in a directory under
 * `os.tmpdir()`, and every test file starts by deleting every object (test/support/fresh-storage.ts). On
 * this machine's disk that deletion alone took 24.5 s summed over the billing project's files, 2.4 s on
 * tmpfs. So the test runtimes store under /dev/shm when it exists with room to spare, unless TMPDIR says
 * otherwise. The storage is the runtime's own either way; only where its files live changes.
 */
export function runtimeStorageInMemory(): void {
  if (process.env.TMPDIR) return;
  try {
    const shm = statfsSync("/dev/shm");
    if (shm.bavail * shm.bsize >= MIN_FREE_BYTES) process.env.TMPDIR = "/dev/shm";
  } catch {
    // No /dev/shm (macOS, Windows): the default temporary directory.
  }
}

/**
 * The packages the workerd test files import, each pre-bundled into one module by Vite's dependency optimizer.
 * The pool loads every module a runtime imports through the Vitest process (resolved, transformed, sent over
 * its socket), once per runtime, and `npm test` starts about a dozen runtimes; unbundled, zod and the
 * OpenTelemetry SDK were 430 of an ingest runtime's 715 modules (287 bundled). In an A/B pair of full runs
 * on this machine (beside other work) the bundles saved 22 s of CPU: 215 → 193 s. They
 * are cached under node_modules/.vite; a fresh clone builds them once, at the start of its first run.
 */
export const PREBUNDLED_DEPS = {
  optimizer: {
    ssr: {
      enabled: true,
      include: [
        "zod",
        "fast-check",
        "@opentelemetry/api",
        "@opentelemetry/otlp-transformer",
        "@opentelemetry/resources",
        "@opentelemetry/sdk-logs",
        "@opentelemetry/sdk-metrics",
        "@opentelemetry/sdk-trace",
        "@opentelemetry/resources > @opentelemetry/semantic-conventions",
      ],
    },
  },
};
