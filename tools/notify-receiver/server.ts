import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Webhook } from "standardwebhooks";
import { listen } from "../listen.ts";

/**
 * A local receiver for Tollgate's outbound events (NOTIFY_URL): records every delivery
 * (headers and raw body) and can play dead for one org's events, to test at-least-once
 * delivery in order. Control: GET/DELETE /_control/received, POST/DELETE /_control/down.
 */
export type NotifyReceiver = { url: string; port: number; close(): Promise<void> };
/** `verified`: whether the Standard Webhooks signature checks out under `secret` (null when no secret was given). */
export type Received = { path: string; headers: Record<string, string>; body: string; org_id: string | null; status: number; at: number; verified: boolean | null };

/** Checks a delivery as a product's receiver would: signature under NOTIFY_SECRET, timestamp within 5 minutes. */
function verifies(secret: string, headers: Record<string, string>, body: string): boolean {
  try {
    new Webhook(secret).verify(body, headers);
    return true;
  } catch {
    return false;
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export async function startNotifyReceiver(options: { port?: number; host?: string; secret?: string; onEvent?: (event: Received) => void } = {}): Promise<NotifyReceiver> {
  let received: Received[] = [];
  /** Orgs whose deliveries are refused with 503 (`"*"`: everyone's). */
  const down = new Set<string>();

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver");
    void (async () => {
      if (url.pathname === "/_control/received") {
        if (req.method === "DELETE") return (received = []), json(res, 200, { received });
        const org = url.searchParams.get("org_id");
        return json(res, 200, { received: received.filter((r) => org === null || r.org_id === org) });
      }
      if (url.pathname === "/_control/down") {
        const { org_id } = JSON.parse((await readBody(req)) || "{}") as { org_id?: string };
        if (req.method === "POST") down.add(org_id ?? "*");
        else down.delete(org_id ?? "*");
        return json(res, 200, { down: [...down] });
      }
      if (req.method !== "POST") return json(res, 405, { error: "method_not_allowed" });
      const body = await readBody(req);
      let orgId: string | null = null;
      try {
        orgId = (JSON.parse(body) as { org_id?: string }).org_id ?? null;
      } catch {
        // not JSON: recorded as is
      }
      const status = down.has("*") || (orgId !== null && down.has(orgId)) ? 503 : 200;
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : (v ?? "")]));
      const verified = options.secret === undefined ? null : verifies(options.secret, headers, body);
      const entry = { path: url.pathname, headers, body, org_id: orgId, status, at: Date.now(), verified };
      received.push(entry);
      if (status === 200) options.onEvent?.(entry);
      json(res, status, status === 200 ? { received: true } : { error: "down" });
    })().catch((error: unknown) => json(res, 500, { error: String(error) }));
  });
  const { url, port } = await listen(server, options.port ?? 0, options.host ?? "127.0.0.1");
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
