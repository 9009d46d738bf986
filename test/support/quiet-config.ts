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
