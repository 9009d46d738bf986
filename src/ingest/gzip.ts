import { createGunzip } from "node:zlib";
import { joinChunks, TooLargeError } from "../shared/bounded-read.ts";

/**
 * Gzip, bounded: a body's magic bytes, and its decompression stopped at a cap. The upload's
 * check (request/body.ts), the kept copy's check before parking, the Logpush route's
 * decompression and the parked batch's item count at delivery all use these: a module of their
 * own, so that parking/ and the routes need not reach into request/ for them.
 *
 * Inflation is node:zlib's (native in workerd with nodejs_compat), streamed: issue 20 measured a
 * DecompressionStream per request, read chunk by chunk in JS, at a tenth of the pass-through
 * Worker's throughput for 1 MiB bodies, where zlib's stream inflates 64 MiB in about 30 ms.
 * The stream, not `gunzipSync`: its output is seen a chunk at a time and dropped, so memory
 * stays at one output chunk whatever the cap (a whole inflation would hold up to the cap).
 */

export class InvalidGzipError extends Error {
  constructor() {
    super("the body is not valid gzip");
    this.name = "InvalidGzipError";
  }
}

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * MAX_DECOMPRESSED_BYTES=0 turns the decompressed cap (the bomb check) off. An inflation that is
 * still needed (item counting, Logpush's conversion) then runs uncapped; it holds one output chunk
 * at a time, so only CPU (the runtime's per-request limit) bounds it.
 */
export function decompressedCap(setting: number): number {
  return setting === 0 ? Number.POSITIVE_INFINITY : setting;
}

/** Output chunk of the inflater: large enough that per-chunk work in JS is negligible (64 MiB = 256 chunks). */
const OUTPUT_CHUNK_BYTES = 256 * 1024;

/**
 * A gzip stream inflated as it arrives. `write` resolves once the chunk's output has been handed to
 * `onChunk` (in order), `end` once the whole stream has, with the total decompressed size. Either
 * rejects with TooLargeError as soon as the output passes `limit` (a bomb stops there, never in
 * exhausted memory) or InvalidGzipError (not gzip, corrupt, or truncated at the end); every later
 * call rejects the same way.
 */
export type Inflater = { write(chunk: Uint8Array): Promise<void>; end(): Promise<number>; abort(): void };

export function inflater(limit: number, onChunk?: (chunk: Uint8Array) => void): Inflater {
  const gunzip = createGunzip({ chunkSize: OUTPUT_CHUNK_BYTES });
  let size = 0;
  let failure: Error | null = null;
  // A write in progress when the stream is destroyed may never call back: its promise is settled here.
  const pending = new Set<(error: Error) => void>();
  const fail = (error: Error) => {
    failure ??= error;
    gunzip.destroy();
    for (const reject of pending) reject(failure);
    pending.clear();
  };
  gunzip.on("data", (chunk: Uint8Array) => {
    if (failure) return;
    size += chunk.byteLength;
    if (size > limit) return fail(new TooLargeError(limit));
    onChunk?.(chunk);
  });
  // zlib's own errors (bad header, corrupt data, unexpected end of file) all mean the same to a client.
  gunzip.on("error", () => fail(new InvalidGzipError()));
  const ended = new Promise<void>((resolve) => {
    gunzip.on("end", resolve);
    gunzip.on("close", resolve);
  });
  return {
    write(chunk) {
      if (failure) return Promise.reject(failure);
      return new Promise<void>((resolve, reject) => {
        pending.add(reject);
        gunzip.write(chunk, () => {
          pending.delete(reject);
          if (failure) reject(failure);
          else resolve();
        });
      });
    },
    async end() {
      if (failure) throw failure;
      gunzip.end();
      await ended;
      if (failure) throw failure;
      return size;
    },
    abort() {
      if (!gunzip.destroyed) gunzip.destroy();
    },
  };
}

/** One gzip body in memory, inflated into `onChunk`; its decompressed size. Errors as `inflater`'s. */
export async function inflateWhole(bytes: Uint8Array, limit: number, onChunk?: (chunk: Uint8Array) => void): Promise<number> {
  if (!isGzip(bytes)) throw new InvalidGzipError();
  const inflate = inflater(limit, onChunk);
  await inflate.write(bytes);
  return inflate.end();
}

/**
 * `gunzipBounded(bytes, limit, true)`: the decompressed bytes (at most `limit`);
 * `gunzipBounded(bytes, limit, false)`: only their size, for validating bodies forwarded as they came.
 * A limit of 0 is MAX_DECOMPRESSED_BYTES's "off": no cap for the count; the kept bytes are then
 * capped at KEEP_UNCAPPED_BYTES, so a bomb still cannot fill the isolate.
 */
export async function gunzipBounded(bytes: Uint8Array, limit: number, keep: true): Promise<Uint8Array>;
export async function gunzipBounded(bytes: Uint8Array, limit: number, keep: false): Promise<number>;
export async function gunzipBounded(bytes: Uint8Array, limit: number, keep: boolean): Promise<Uint8Array | number> {
  if (!keep) return inflateWhole(bytes, decompressedCap(limit));
  const chunks: Uint8Array[] = [];
  const size = await inflateWhole(bytes, limit === 0 ? KEEP_UNCAPPED_BYTES : limit, (chunk) => chunks.push(chunk));
  return joinChunks(chunks, size);
}

/** What `gunzipBounded` keeps at most when MAX_DECOMPRESSED_BYTES is 0 (its default cap). */
export const KEEP_UNCAPPED_BYTES = 64 * 1024 * 1024;
