import type { z } from "zod";
import { readBounded, TooLargeError } from "./bounded-read.ts";
import { refuse, type Refusal } from "./result.ts";

/** Parses a small JSON request body against a schema; any problem is a 4xx the client can act on. */
export async function parseJsonBody<S extends z.ZodType>(request: Request, schema: S, limit = 64 * 1024): Promise<{ ok: true; value: z.infer<S> } | Refusal> {
  // Bodies are read as sent, never decompressed: one declared compressed is refused rather
  // than read as if it were plain (which would make its meaning depend on the intermediaries).
  const encoding = request.headers.get("content-encoding")?.trim().toLowerCase() ?? "";
  if (encoding !== "" && encoding !== "identity") {
    return refuse(415, "unsupported_encoding", "send the JSON body uncompressed, without Content-Encoding");
  }
  let text: string;
  try {
    text = new TextDecoder().decode(await readBounded(request.body, limit));
  } catch (error) {
    if (error instanceof TooLargeError) return refuse(413, "payload_too_large", `the body exceeds ${limit} bytes`);
    throw error;
  }
  let json: unknown;
  try {
    json = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return refuse(400, "invalid_json", "the body is not valid JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    return refuse(400, "invalid_request", `${where}${issue?.message ?? "invalid body"}`);
  }
  return { ok: true, value: parsed.data };
}
