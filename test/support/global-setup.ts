import type { TestProject } from "vitest/node";
import { startAutumnStandIn } from "../../tools/fake-autumn/server.ts";
import { startUpstreamSink } from "../../tools/upstream-sink/server.ts";
import { TEST_AUTUMN_SECRET_KEY, TEST_WEBHOOK_SECRET } from "./secrets.ts";

declare module "vitest" {
  export interface ProvidedContext {
    autumnUrl: string;
    sinkUrl: string;
  }
}

/**
 * Real loopback fakes for what the Workers call out to: the Autumn stand-in (tests deliver
 * its signed webhooks themselves) and the OTLP upstream sink.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const autumn = await startAutumnStandIn({ secretKey: TEST_AUTUMN_SECRET_KEY, webhook: { url: null, secret: TEST_WEBHOOK_SECRET } });
  const sink = await startUpstreamSink({});
  project.provide("autumnUrl", autumn.url);
  project.provide("sinkUrl", sink.url);
  return async () => {
    await Promise.all([autumn.close(), sink.close()]);
  };
}
