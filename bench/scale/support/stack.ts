import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import type { LocalSettings } from "../../../tools/dev/settings.ts";
import { REPO_ROOT } from "../../../tools/paths.ts";

/**
 * What the scale scenarios share (bench/scale/*.ts): HTTP helpers against a bench stack, a signed
 * webhook as Autumn sends it, a bounded pool, and the Autumn stand-in in a process of its own so its
 * memory is measured apart from the bench's. Not a scenario (bench/scale/run.ts reads only the files
 * directly in bench/scale).
 */
export const logger = (scenario: string) => (message: string) => console.log(`[scale ${scenario} ${new Date().toISOString().slice(11, 19)}] ${message}`);

export async function pool<T>(items: readonly T[], concurrency: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        await work(items[index]!, index);
      }
    }),
  );
}

export type Http = {
  admin(method: string, path: string, body?: unknown): Promise<Response>;
  /** A stand-in control call whose answer must be 2xx; `?deliver=0` unless the path says otherwise. */
  control<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  /** One Svix-signed webhook of `type` for the org, as Autumn sends it: the billing Worker's answer status ("processed", "duplicate", ...) or "failed: ...". */
  webhook(org: string, messageId?: string, type?: string): Promise<string>;
};

export function http(settings: LocalSettings, billingUrl: string, autumnUrl: string): Http {
  const signer = new Webhook(settings.AUTUMN_WEBHOOK_SECRET);
  return {
    admin: (method, path, body) =>
      fetch(`${billingUrl}/admin${path}`, {
        method,
        headers: { authorization: `Bearer ${settings.ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    async control<T>(method: string, path: string, body?: unknown): Promise<T> {
      const url = `${autumnUrl}/_control${path}${method === "POST" && !path.includes("deliver=") ? `${path.includes("?") ? "&" : "?"}deliver=0` : ""}`;
      const response = await fetch(url, { method, ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) });
      if (!response.ok) throw new Error(`stand-in ${method} ${path}: ${response.status} ${await response.text()}`);
      return (await response.json()) as T;
    },
    async webhook(org, messageId = `msg_${crypto.randomUUID().replaceAll("-", "")}`, type = "billing.updated") {
      const payload = JSON.stringify({ type, data: { object: type, customer_id: org, entity_id: null, plan_changes: [], tags: [] } });
      const at = new Date();
      try {
        const response = await fetch(`${billingUrl}/api/billing/autumn/webhook`, {
          method: "POST",
          headers: { "content-type": "application/json", "svix-id": messageId, "svix-timestamp": String(Math.floor(at.getTime() / 1000)), "svix-signature": signer.sign(messageId, at, payload) },
          body: payload,
        });
        const text = await response.text();
        return response.ok ? (JSON.parse(text) as { status: string }).status : `failed: ${response.status} ${text.slice(0, 200)}`;
      } catch (error) {
        return `failed: ${String(error)}`;
      }
    },
  };
}

/** A process's resident memory, in MiB (0 once it is gone). */
export function rssMib(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** The Autumn stand-in (tools/autumn-standin/main.ts) in its own process on `port`, webhooks not delivered (the scenarios sign their own). */
export async function startStandInProcess(port: number, secretKey: string): Promise<{ url: string; process: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [join(REPO_ROOT, "tools", "autumn-standin", "main.ts")], {
    env: { ...process.env, AUTUMN_STANDIN_PORT: String(port), AUTUMN_SECRET_KEY: secretKey, AUTUMN_WEBHOOK_TARGET: "", AUTUMN_WEBHOOK_SECRET: "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("listening on")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the stand-in exited (${code}) before listening: ${out}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
