import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Starts a local test server (port 0: any free port) and returns the URL it answers on. */
export async function listen(server: Server, port = 0, host = "127.0.0.1"): Promise<{ url: string; port: number }> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return { url: `http://${host.includes(":") ? `[${host}]` : host}:${bound}`, port: bound };
}
