import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * The Workers pool drives each runtime over one local WebSocket, opened by Miniflare with the `ws` package,
 * which offers permessage-deflate; workerd accepts it, so every frame of every test's traffic was deflated
 * and inflated on both ends. In one `npm test` that was 16–18 s of the Vitest process's CPU (measured with
 * `node --cpu-prof`), on a machine whose two cores are the limit. A loopback socket gains nothing from
 * compression, so the offer is renamed to an extension nobody knows and the socket carries frames as they are.
 * The Workers under test open no WebSocket, so nothing tested changes.
 */
export function poolSocketsUncompressed(): void {
  const require = createRequire(import.meta.url);
  const deflate = require(join(dirname(require.resolve("ws")), "lib", "permessage-deflate.js")) as { extensionName: string };
  Object.defineProperty(deflate, "extensionName", { value: "x-tollgate-tests-uncompressed" });
}
