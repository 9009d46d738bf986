import { build } from "esbuild";
import { join } from "node:path";
import { REPO_ROOT } from "./paths.ts";

/** Compiles the console's TypeScript for browsers; wrangler runs this before dev and deploy. */
await build({
  entryPoints: [join(REPO_ROOT, "src/billing/console/client/console.ts")],
  outfile: join(REPO_ROOT, "public/admin/assets/console.js"),
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  logLevel: "warning",
});
