import { gunzipSync, inflateRawSync } from "node:zlib";

async function streamInflate(bytes, limit) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const reader = stream.getReader();
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) { await reader.cancel(); throw new Error("too large"); }
  }
  return total;
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const n = Number(url.searchParams.get("n") ?? 1);
    const limit = Number(url.searchParams.get("limit") ?? 64 * 2 ** 20);
    const body = new Uint8Array(await request.arrayBuffer());
    let out = 0;
    try {
      for (let i = 0; i < n; i++) {
        if (url.pathname === "/zlib") out = gunzipSync(body, { maxOutputLength: limit }).byteLength;
        else if (url.pathname === "/stream") out = await streamInflate(body, limit);
        else if (url.pathname === "/noop") out = body.byteLength;
      }
      return Response.json({ ok: true, out });
    } catch (e) {
      return Response.json({ ok: false, error: `${e.name}: ${e.code ?? ""} ${e.message}` });
    }
  },
};
