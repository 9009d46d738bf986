import ingest from "../../src/ingest/worker.ts";
import { USAGE_QUEUE } from "../../src/ingest/usage/consumer.ts";
import { countingEnv, zeroCounts, type OpCounts } from "./ops.ts";

/**
 * The counting harness (see wrangler.jsonc): the ingest Worker with counted bindings.
 * GET /__bench/ops: the counts so far; DELETE /__bench/ops: start again from zero.
 * Everything else goes to the ingest Worker, exactly as it would be served.
 */
let counts: OpCounts = zeroCounts();
/** One wrapped env per env object: the ingest Worker caches its settings by env object. */
const wrappedEnvs = new WeakMap<object, IngestEnv>();
const wrap = (env: IngestEnv) => {
  let wrapped = wrappedEnvs.get(env);
  if (!wrapped) wrappedEnvs.set(env, (wrapped = countingEnv(env, counts)));
  return wrapped;
};

export default {
  fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__bench/ops") {
      if (request.method === "DELETE") {
        // Reset in place: the wrapped envs hold this object.
        Object.assign(counts, zeroCounts());
      }
      return Response.json(counts);
    }
    counts.requests++;
    return ingest.fetch!(request as Parameters<NonNullable<typeof ingest.fetch>>[0], wrap(env), ctx);
  },
  queue(batch, env, ctx) {
    counts.queue_batches_delivered++;
    counts.queue_messages_delivered += batch.messages.length;
    // The harness consumes its own copy of the usage queue (one consumer per queue); the ingest
    // Worker recognises the usage queue by name, so the batch is handed on under that name.
    const named: MessageBatch<unknown> = { queue: USAGE_QUEUE, messages: batch.messages, metadata: batch.metadata, ackAll: () => batch.ackAll(), retryAll: (options) => batch.retryAll(options) };
    return ingest.queue!(named, wrap(env), ctx);
  },
} satisfies ExportedHandler<IngestEnv>;
