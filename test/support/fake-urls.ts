import { inject } from "vitest";

/** Where one runtime's fakes listen (test/support/global-setup.ts starts a set per concurrent runtime). */
export type FakeUrls = { autumnUrl: string; sinkUrl: string; receiverUrl: string };

declare module "vitest" {
  export interface ProvidedContext {
    autumnUrl: string;
    sinkUrl: string;
    receiverUrl: string;
    fakes: FakeUrls[];
  }
}

/** The key under which test/support/runtime-fakes.ts records, in a workerd runtime, the set it was given. */
export const RUNTIME_FAKES = "__tollgateTestFakes";

/**
 * The URL of a fake for the code of this runtime's tests. Inside workerd it is the set the runtime's own
 * Workers were configured with (two runtimes of a project run at once, each with its own fakes); in Node
 * (the tools project) there is no such set and it is what the project provided.
 */
export function fakeUrl(name: keyof FakeUrls): string {
  const own = (globalThis as { [RUNTIME_FAKES]?: FakeUrls })[RUNTIME_FAKES];
  return own?.[name] ?? inject(name);
}
