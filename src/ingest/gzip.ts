import { readBounded, TooLargeError } from "../shared/bounded-read.ts";

/**
 * Gzip, bounded: a body's magic bytes, and its decompression stopped at a cap. The upload's
 * check (request/body.ts), the kept copy's check before parking, the Logpush route's sniffing
 * and the parked batch's item count at delivery all use these: a module of their own, so that
 * parking/ and the routes need not reach into request/ for them.
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
 * Streams gzip through DecompressionStream and stops as soon as the output passes
 * `limit` (a gzip bomb ends in TooLargeError, never in exhausted memory). With
 * `keep: false` the output is only counted, for validating bodies forwarded as they came.
 */
export async function gunzipBounded(bytes: Uint8Array, limit: number, keep: true): Promise<Uint8Array>;
export async function gunzipBounded(bytes: Uint8Array, limit: number, keep: false): Promise<number>;
export async function gunzipBounded(bytes: Uint8Array, limit: number, keep: boolean): Promise<Uint8Array | number> {
  if (!isGzip(bytes)) throw new InvalidGzipError();
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  try {
    if (keep) return await readBounded(stream, limit);
    return await countBounded(stream, limit);
  } catch (error) {
    if (error instanceof TooLargeError) throw error;
    throw new InvalidGzipError();
  }
}

/** `onChunk`: sees each decompressed chunk (usage metering counts items from them). */
export async function countBounded(stream: ReadableStream<Uint8Array>, limit: number, onChunk?: (chunk: Uint8Array) => void): Promise<number> {
  const reader = stream.getReader();
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return size;
    onChunk?.(value);
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new TooLargeError(limit);
    }
  }
}
