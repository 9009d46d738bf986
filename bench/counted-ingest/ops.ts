/**
 * Counting wrappers for a Worker's bindings: every KV, Durable Object, Queue, R2 and Analytics
 * Engine operation asked of a binding is counted (in this isolate's memory) before it is passed on
 * unchanged. Pure bookkeeping, no I/O of its own, so the code under it runs as deployed.
 */
export type OpCounts = {
  /** Requests the harness passed to the Worker (its own /__bench routes excluded). */
  requests: number;
  /** KV operations by binding and method: get and getWithMetadata are reads; put, delete and list are billed as writes/lists. */
  kv: Record<string, number>;
  /** Durable Object requests: each RPC method call or fetch on a stub is one billed request (an RPC session). */
  durable_object_requests: Record<string, number>;
  /** Queue messages sent, by binding, and their JSON bytes (billing counts one operation per 64 KB). */
  queue_messages_sent: Record<string, number>;
  queue_bytes_sent: Record<string, number>;
  /** Per message: its size in 64 KB units (at least 1), summed: the write operations the sends cost. */
  queue_write_ops: Record<string, number>;
  /** Deliveries to the consumer (a retry is another delivery, billed as another read). */
  queue_messages_delivered: number;
  queue_batches_delivered: number;
  /** R2 operations by binding and method (class A: put, delete, list, multipart; class B: get, head). */
  r2: Record<string, number>;
  /** Analytics Engine data points written, by binding. */
  analytics_data_points: Record<string, number>;
};

export function zeroCounts(): OpCounts {
  return { requests: 0, kv: {}, durable_object_requests: {}, queue_messages_sent: {}, queue_bytes_sent: {}, queue_write_ops: {}, queue_messages_delivered: 0, queue_batches_delivered: 0, r2: {}, analytics_data_points: {} };
}

const bump = (table: Record<string, number>, key: string, by = 1) => {
  table[key] = (table[key] ?? 0) + by;
};

/** Queues bill 64 KB (1,000-byte KB) per operation; each message carries about 100 bytes of metadata. */
export const QUEUE_OP_BYTES = 64_000;
export const QUEUE_MESSAGE_OVERHEAD_BYTES = 100;
const queueOps = (bytes: number) => Math.max(1, Math.ceil((bytes + QUEUE_MESSAGE_OVERHEAD_BYTES) / QUEUE_OP_BYTES));
const jsonBytes = (body: unknown) => new TextEncoder().encode(JSON.stringify(body) ?? "").byteLength;

type Methods = Record<string, unknown>;

/** A proxy that counts calls of the named methods and passes everything through with the real binding as `this`. */
function counted<T extends object>(target: T, onCall: (method: string, args: unknown[]) => void, methods: ReadonlySet<string> | null, wrapResult?: (method: string, result: unknown) => unknown): T {
  return new Proxy(target, {
    get(real, property) {
      const value = Reflect.get(real, property, real) as unknown;
      if (typeof value !== "function" || typeof property !== "string") return value;
      // Reflect.apply, never value.apply or .bind: on an RPC stub those are property reads, so `apply` would be called as a remote method.
      if (methods !== null && !methods.has(property)) return (...args: unknown[]) => Reflect.apply(value as (...a: unknown[]) => unknown, real, args);
      return (...args: unknown[]) => {
        onCall(property, args);
        const result = Reflect.apply(value as (...a: unknown[]) => unknown, real, args);
        return wrapResult ? wrapResult(property, result) : result;
      };
    },
  });
}

const KV_METHODS = new Set(["get", "getWithMetadata", "put", "delete", "list"]);
const R2_METHODS = new Set(["head", "get", "put", "delete", "list", "createMultipartUpload", "resumeMultipartUpload"]);
const DO_STUB_FACTORIES = new Set(["get", "getByName"]);

function kind(binding: unknown): "kv" | "do" | "queue" | "r2" | "analytics" | null {
  if (binding === null || typeof binding !== "object") return null;
  const b = binding as Methods;
  if (typeof b.idFromName === "function") return "do";
  if (typeof b.createMultipartUpload === "function") return "r2";
  if (typeof b.sendBatch === "function") return "queue";
  if (typeof b.writeDataPoint === "function") return "analytics";
  if (typeof b.getWithMetadata === "function") return "kv";
  return null;
}

/** The env with every countable binding wrapped; anything else (vars, secrets) as it is. */
export function countingEnv<E extends object>(env: E, counts: OpCounts): E {
  const wrapped: Record<string, unknown> = { ...(env as Record<string, unknown>) };
  for (const [name, binding] of Object.entries(env)) {
    switch (kind(binding)) {
      case "kv":
        wrapped[name] = counted(binding as object, (method) => bump(counts.kv, `${name}.${method}`), KV_METHODS);
        break;
      case "r2":
        wrapped[name] = counted(binding as object, (method) => bump(counts.r2, `${name}.${method}`), R2_METHODS);
        break;
      case "analytics":
        wrapped[name] = counted(binding as object, () => bump(counts.analytics_data_points, name), new Set(["writeDataPoint"]));
        break;
      case "queue":
        wrapped[name] = counted(
          binding as object,
          (method, args) => {
            const bodies = method === "send" ? [args[0]] : [...((args[0] as Iterable<{ body: unknown }>) ?? [])].map((m) => m.body);
            for (const body of bodies) {
              const bytes = jsonBytes(body);
              bump(counts.queue_messages_sent, name);
              bump(counts.queue_bytes_sent, name, bytes);
              bump(counts.queue_write_ops, name, queueOps(bytes));
            }
          },
          new Set(["send", "sendBatch"]),
        );
        break;
      case "do":
        // A stub's every method call (or fetch) is one billed request; getting the stub is free.
        wrapped[name] = counted(binding as object, () => {}, DO_STUB_FACTORIES, (_factory, stub) =>
          counted(stub as object, (method) => bump(counts.durable_object_requests, `${name}.${method}`), null),
        );
        break;
      default:
        break;
    }
  }
  return wrapped as E;
}
