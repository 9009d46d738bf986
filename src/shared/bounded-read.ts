/** Why a bounded read stopped early. */
export class TooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`body exceeds ${limit} bytes`);
    this.limit = limit;
    this.name = "TooLargeError";
  }
}

/**
 * Reads a stream into memory, giving up (and cancelling the stream) as soon as more than
 * `limit` bytes arrive, so an oversized or decompressing-bomb body never fills the isolate.
 */
export async function readBounded(stream: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array> {
  if (stream === null) return new Uint8Array(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new TooLargeError(limit);
    }
    chunks.push(value);
  }
  return joinChunks(chunks, size);
}

/** Chunks read in turn as one array (`size`: their total length); a single chunk as it is. */
export function joinChunks(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** A declared Content-Length over the limit can be refused before reading anything. */
export function declaredLengthExceeds(headers: Headers, limit: number): boolean {
  const declared = headers.get("content-length");
  return declared !== null && /^\d+$/.test(declared) && Number(declared) > limit;
}

/**
 * A request body of at most `limit` bytes. With a declared length within the limit the
 * runtime enforces that length, so the body is read natively in one call; otherwise it is
 * streamed and cut off at the limit.
 */
export async function readRequestBody(request: Request, limit: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared)) {
    if (Number(declared) > limit) throw new TooLargeError(limit);
    return new Uint8Array(await request.arrayBuffer());
  }
  return readBounded(request.body, limit);
}
