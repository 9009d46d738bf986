import type { TestProject } from "vitest/node";
import { startAutumnStandIn } from "../../tools/autumn-standin/server.ts";
import { startNotifyReceiver } from "../../tools/notify-receiver/server.ts";
import { startUpstreamSink } from "../../tools/upstream-sink/server.ts";
import type { FakeUrls } from "./fake-urls.ts";
import { TEST_AUTUMN_SECRET_KEY, TEST_WEBHOOK_SECRET } from "./secrets.ts";

/**
 * How many runtimes of one project run at once (`maxWorkers` in vitest.config.mts): each gets its own
 * set of fakes, since tests set global faults and clear them after each test.
 */
export const FAKE_SETS = 5;

/**
 * Real loopback fakes for what the Workers call out to: the Autumn stand-in (tests deliver
 * its signed webhooks themselves), the OTLP upstream sink and a receiver for outbound events.
 * One set per runtime that may run at the same time; `autumnUrl`, `sinkUrl` and `receiverUrl` are the first.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const sets = await Promise.all(
    Array.from({ length: FAKE_SETS }, async () => {
      const autumn = await startAutumnStandIn({ secretKey: TEST_AUTUMN_SECRET_KEY, webhook: { url: null, secret: TEST_WEBHOOK_SECRET } });
      const sink = await startUpstreamSink({});
      const receiver = await startNotifyReceiver();
      return { servers: [autumn, sink, receiver], urls: { autumnUrl: autumn.url, sinkUrl: sink.url, receiverUrl: receiver.url } };
    }),
  );
  const first = sets[0]!.urls;
  project.provide("autumnUrl", first.autumnUrl);
  project.provide("sinkUrl", first.sinkUrl);
  project.provide("receiverUrl", first.receiverUrl);
  project.provide("fakes", sets.map((set) => set.urls));
  return async () => {
    await Promise.all(sets.flatMap((set) => set.servers.map((server) => server.close())));
  };
}
