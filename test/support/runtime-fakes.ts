import { env } from "cloudflare:workers";
import { RUNTIME_FAKES, type FakeUrls } from "./fake-urls.ts";

/**
 * Setup file of the workerd projects: the fakes this runtime was configured with (TEST_FAKES, a binding
 * vitest.config.mts sets per runtime), for the tests' own calls to their control APIs (fakeUrl).
 */
const fakes = JSON.parse((env as unknown as { TEST_FAKES: string }).TEST_FAKES) as FakeUrls;
(globalThis as { [RUNTIME_FAKES]?: FakeUrls })[RUNTIME_FAKES] = fakes;
