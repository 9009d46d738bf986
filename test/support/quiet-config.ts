import { readFile } from "node:fs/promises";
import type { Plugin } from "vite";

/**
 * Wrangler reads each project's wrangler config to build the runtime and warns about every secret the
 * config requires but finds in no .dev.vars or environment ("Missing required secrets: ..."), then says it
 * looked in process.env. The test runtimes get those secrets as bindings from vitest.config.mts instead,
 * so the warning is dropped, but only when every secret it names is among `provided`: a secret the config
 * starts requiring that the tests do not provide still shows.
 */
export function dropWranglerSecretNotices(provided: readonly string[]): void {
  const warn = console.warn.bind(console);
  const log = console.log.bind(console);
  console.warn = (...args: unknown[]) => {
    const text = args.map(String).join(" ");
    const missing = /Missing required secrets: ([A-Z0-9_, ]+)\./.exec(text.replace(/\x1b\[[0-9;]*m/g, ""));
    if (missing && missing[1]!.split(",").every((name) => provided.includes(name.trim()))) return;
    warn(...args);
  };
  console.log = (...args: unknown[]) => {
    if (args.length === 1 && args[0] === "Using secrets defined in process.env") return;
    log(...args);
  };
}

/**
 * itty-router and standardwebhooks publish source maps whose sources are not in the package (itty-router's
 * point outside it, to ../src/*.ts; standardwebhooks' to a src/ it does not ship), and Vite warns once per
 * source when it loads the module. Such a map is of no use, so these modules load without the comment.
 */
export function depsWithoutBrokenSourceMaps(): Plugin {
  return {
    name: "tollgate:deps-without-broken-source-maps",
    enforce: "pre",
    async load(id) {
      const file = id.split("?")[0]!;
      if (!/\/node_modules\/(itty-router\/[^/]+|standardwebhooks\/dist\/[^/]+)\.m?js$/.test(file)) return null;
      return (await readFile(file, "utf8")).replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");
    },
  };
}

/**
 * workerd's own reports of the faults tests cause on purpose: an upstream that resets or refuses the
 * connection (the sink's `reset` fault, a closed port), an upload the Worker stops reading or aborts (a body
 * over a cap, broken gzip: src/ingest/request/body.ts), a request the Worker aborts at its own timeout (UPSTREAM_TIMEOUT,
 * AUTUMN_TIMEOUT: the timeout tests' slow stand-ins), and a sweeper alarm run by hand (`runDurableObjectAlarm`) whose scheduled run workerd then cancels.
 * Each such test asserts what the Worker answers; the line workerd prints beside it (with its `stack:` of
 * addresses) points at no problem, so it is dropped, as the pool already drops its own list (ignoreMessages
 * in @cloudflare/vitest-plugin). Anything else workerd prints still shows.
 */
const WORKERD_FAULT_REPORTS = [
  /uncaught exception; source = Uncaught \(in promise\); stack = Error: Network connection lost\./,
  /uncaught exception; exception = workerd\/jsg\/value\.h:\d+: disconnected: jsg\.Error: Network connection lost\./,
  /exception = rust\/worker\/ffi\.rs:\d+: disconnected: (client error \(SendRequest\)|Connection refused \(os error 111\))/,
  /exception = kj\/async-io\.c\+\+:\d+: disconnected: (read end of pipe was aborted|abortRead\(\) has been called)/,
  /exception = workerd\/api\/basics\.c\+\+:\d+: disconnected: jsg\.DOMException\(TimeoutError\): The operation was aborted due to timeout$/,
  /NOSENTRY SQLite alarm handler canceled with requestScheduledAlarm\./,
  /uncaught exception; exception = workerd\/jsg\/value\.h:\d+: failed: jsg\.Error: request body refused: (too_large|decompressed_too_large|invalid_gzip)$/,
];
const HEX_STACK = /^stack:( \S+@[0-9a-f]+)+\s*$/;

/** A filter over a stream's writes: drops the fault reports and the `stack:` lines right after them. */
export function faultReportFilter(): (text: string) => string {
  let droppingStack = false;
  return (text) =>
    text
      .split("\n")
      .filter((line) => {
        if (WORKERD_FAULT_REPORTS.some((pattern) => pattern.test(line))) return (droppingStack = true), false;
        if (droppingStack && HEX_STACK.test(line.trim())) return false;
        if (line.trim() !== "") droppingStack = false;
        return true;
      })
      .join("\n");
}

export function dropWorkerdFaultReports(): void {
  for (const stream of [process.stderr, process.stdout]) {
    const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    const filter = faultReportFilter();
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (typeof chunk !== "string" && !(chunk instanceof Uint8Array)) return write(chunk, ...rest);
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
      const out = filter(text);
      if (out === text) return write(chunk, ...rest);
      return out.trim() === "" ? true : write(out, ...rest);
    }) as typeof stream.write;
  }
}
