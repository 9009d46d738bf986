import type { TestProject } from "vitest/node";
import { startAutumnStandIn } from "../../tools/autumn-standin/server.ts";
import { startNotifyReceiver } from "../../tools/notify-receiver/server.ts";
import { startUpstreamSink } from "../../tools/upstream-sink/server.ts";
import { TEST_AUTUMN_SECRET_KEY, TEST_WEBHOOK_SECRET } from "./secrets.ts";

declare module "vitest" {
  export interface ProvidedContext {
    autumnUrl: string;
    sinkUrl: string;
    receiverUrl: string;
  }
}

/**
 * Real loopback fakes for what the Workers call out to: the Autumn stand-in (tests deliver
 * its signed webhooks themselves), the OTLP upstream sink and a receiver for outbound events.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const autumn = await startAutumnStandIn({ secretKey: TEST_AUTUMN_SECRET_KEY, webhook: { url: null, secret: TEST_WEBHOOK_SECRET } });
  const sink = await startUpstreamSink({});
  const receiver = await startNotifyReceiver();
  project.provide("autumnUrl", autumn.url);
  project.provide("sinkUrl", sink.url);
  project.provide("receiverUrl", receiver.url);
  return async () => {
    await Promise.all([autumn.close(), sink.close(), receiver.close()]);
  };
}
