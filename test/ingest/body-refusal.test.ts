import { describe, expect, it } from "vitest";
import { outgoingBody, type OutgoingBody } from "../../src/ingest/request/body.ts";
import { gzip } from "../support/ingest.ts";

/**
 * How a streamed body that fails its check stops the upload (issue 22, "tests print no warning
 * that does not point at a real problem"). The upload must break off (otlp-streaming.test.ts
 * proves the upstream never records a complete request), and it must do so without workerd
 * reporting an uncaught exception: workerd runs the upload as a task of its own and logs it as
 * uncaught when it is cancelled with any reason the script supplies (an Error, a string, even
 * an explicit DOMException AbortError), but not with the runtime's own abort reason, the one
 * `AbortController.abort()` makes when given none. These tests pin that reason.
 */
const LIMITS = { maxBodyBytes: 64 * 1024, maxDecompressedBytes: 256 * 1024 };

/** `bytes` as a request body with no declared length, in 8 KiB pieces. */
function streamed(bytes: Uint8Array, encoding: "gzip" | "identity"): Request {
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + 8 * 1024));
      offset += 8 * 1024;
    },
  });
  return new Request("http://ingest.test/v1/traces", { method: "POST", headers: { "content-encoding": encoding }, body, duplex: "half" } as RequestInit);
}

/** Reads the upload as fetch would, until the check aborts it (or the body ends). */
async function upload(body: OutgoingBody): Promise<"aborted" | "ended"> {
  const reader = (body.body as ReadableStream<Uint8Array>).getReader();
  const aborted = new Promise<"aborted">((resolve) => body.signal?.addEventListener("abort", () => resolve("aborted")));
  const ended = (async () => {
    for (;;) if ((await reader.read()).done) return "ended" as const;
  })();
  const outcome = await Promise.race([aborted, ended]);
  reader.cancel().catch(() => {});
  return outcome;
}

/** The reason the runtime gives an AbortSignal aborted without one. */
function runtimeAbortReason(): unknown {
  const controller = new AbortController();
  controller.abort();
  return controller.signal.reason;
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65_536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65_536)));
  return out;
}

describe("a streamed body that fails its check aborts the upload with the runtime's own reason", () => {
  const cases: [string, () => Promise<Request>, boolean, string][] = [
    ["over MAX_BODY_BYTES", async () => streamed(randomBytes(LIMITS.maxBodyBytes + 16 * 1024), "identity"), false, "too_large"],
    ["a gzip bomb over MAX_DECOMPRESSED_BYTES", async () => streamed(await gzip(new Uint8Array(LIMITS.maxDecompressedBytes * 4)), "gzip"), true, "decompressed_too_large"],
    ["broken gzip", async () => streamed((await gzip(randomBytes(48 * 1024))).slice(0, 40 * 1024), "gzip"), true, "invalid_gzip"],
  ];

  it.each(cases)("%s", async (_name, request, isGzip, problem) => {
    const body = await outgoingBody(await request(), isGzip, LIMITS);
    expect("ok" in body).toBe(false); // streamed through the check, not refused up front
    const planned = body as OutgoingBody;
    expect(await upload(planned)).toBe("aborted");
    expect(planned.settled()).toMatchObject({ ok: false, problem });
    const reason = planned.signal!.reason as DOMException;
    const expected = runtimeAbortReason() as DOMException;
    expect(reason).toBeInstanceOf(DOMException);
    expect({ name: reason.name, message: reason.message }).toEqual({ name: expected.name, message: expected.message });
  });

  it("a body that passes is not aborted", async () => {
    const body = (await outgoingBody(streamed(randomBytes(32 * 1024), "identity"), false, LIMITS)) as OutgoingBody;
    expect(await upload(body)).toBe("ended");
    expect(body.signal!.aborted).toBe(false);
    expect(body.settled()).toEqual({ ok: true, bytes: 32 * 1024 });
  });
});
