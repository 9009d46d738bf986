import { listDurableObjectIds, reset, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll } from "vitest";
import { emptiedByReset, listedStub, rememberNames } from "./listed-objects.ts";

/**
 * Setup file of the workerd projects, which run their test files one after another in a shared runtime
 * (`isolate: false` in vitest.config.mts: starting one workerd per file cost about 3 s a file). Each file
 * still starts with the storage a fresh runtime had: no Durable Object and no alarm, empty KV namespaces
 * and empty R2 buckets (some tests list a whole namespace or prefix).
 */
beforeAll(async () => {
  const bindings = Object.values(env as unknown as Record<string, unknown>);
  // Alarms outlive reset(): one left by an earlier file would wake a deleted object, with no storage and no name.
  // Waking every object also lets reset() reach it: it empties only running objects, and one idle for 10 s is not.
  emptiedByReset.clear();
  for (const namespace of bindings.filter(isDurableObjectNamespace)) {
    rememberNames(namespace);
    for (const id of await listDurableObjectIds(namespace)) {
      await runInDurableObject(listedStub(namespace, id), (_instance, state) => state.storage.deleteAlarm());
      emptiedByReset.add(id.toString());
    }
  }
  await reset();
  for (const binding of bindings) {
    if (isKv(binding)) await emptyKv(binding);
    else if (isR2(binding)) await emptyR2(binding);
  }
});

// By class name: service bindings (Fetchers) answer to any property, so duck typing would match them.
function isDurableObjectNamespace(binding: unknown): binding is DurableObjectNamespace {
  return typeof binding === "object" && binding !== null && binding.constructor.name === "DurableObjectNamespace";
}

function isKv(binding: unknown): binding is KVNamespace {
  return typeof binding === "object" && binding !== null && binding.constructor.name === "KvNamespace";
}

function isR2(binding: unknown): binding is R2Bucket {
  return typeof binding === "object" && binding !== null && binding.constructor.name === "R2Bucket";
}

async function emptyKv(namespace: KVNamespace): Promise<void> {
  for (;;) {
    const page = await namespace.list();
    if (page.keys.length === 0) return;
    await Promise.all(page.keys.map((key) => namespace.delete(key.name)));
  }
}

async function emptyR2(bucket: R2Bucket): Promise<void> {
  for (;;) {
    const page = await bucket.list({ limit: 1000 });
    if (page.objects.length === 0) return;
    await bucket.delete(page.objects.map((object) => object.key));
  }
}
