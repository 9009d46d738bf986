import { env } from "cloudflare:workers";
import { beforeAll } from "vitest";
import { RUNTIME_FAKES, type FakeUrls } from "./fake-urls.ts";

/**
 * Setup file of the workerd projects: the fakes this runtime was configured with (TEST_FAKES, a binding
 * vitest.config.mts sets per runtime), for the tests' own calls to their control APIs (fakeUrl).
 */
const fakes = JSON.parse((env as unknown as { TEST_FAKES: string }).TEST_FAKES) as FakeUrls;
(globalThis as { [RUNTIME_FAKES]?: FakeUrls })[RUNTIME_FAKES] = fakes;

/**
 * Each file starts with an empty stand-in, as its storage starts empty (fresh-storage.ts): a sweep would
 * otherwise hand over the customers an earlier file left there to objects that file already used. No fault,
 * outage or refusing receiver of an earlier file carries over either.
 */
beforeAll(async () => {
  await control(`${fakes.autumnUrl}/_control/reset`, "POST");
  await control(`${fakes.sinkUrl}/_control/faults`, "DELETE");
  await control(`${fakes.sinkUrl}/_control/outage`, "DELETE");
  await control(`${fakes.receiverUrl}/_control/received`, "DELETE");
  await control(`${fakes.receiverUrl}/_control/down`, "DELETE");
});

async function control(url: string, method: string): Promise<void> {
  const response = await fetch(url, { method });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`${method} ${url} answered ${response.status}`);
}
