// @ts-check
import { pathToFileURL } from "node:url";

/**
 * The try-it block's reply formatter: `curl -sS -w '\n%{http_code}' ... | node tools/dev/reply.mjs`
 * prints `<status> <one line>` instead of the raw reply. Plain JavaScript, not TypeScript like the
 * rest of tools/, because the block is pasted into the reader's own shell, where `node` may be the
 * system's Node 20, which cannot run TypeScript (npm scripts run on the Node 22 dev dependency).
 */

/** At most this many characters of a reply that is neither an error nor a warning. */
export const MAX_REPLY_CHARS = 160;

/** @param {string} text @returns {string} */
const oneLine = (text) => text.replace(/\s+/g, " ").trim();

/** @param {string} text @returns {string} */
const clipped = (text) => (text.length > MAX_REPLY_CHARS ? `${text.slice(0, MAX_REPLY_CHARS - 1)}…` : text);

/**
 * What a reply says, on one line: an error's code and message, an OTLP partial-success warning,
 * or the reply itself, clipped.
 * @param {string} body the reply's body as text
 * @returns {string}
 */
export function summarizeBody(body) {
  if (body.trim() === "") return "(empty body)";
  /** @type {unknown} */
  let parsed;
  try {
    parsed = JSON.parse(body);
  } catch {
    return clipped(oneLine(body));
  }
  if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
    const reply = /** @type {Record<string, unknown>} */ (parsed);
    if (typeof reply.error === "string") return typeof reply.message === "string" ? `${reply.error}: ${oneLine(reply.message)}` : reply.error;
    const partial = reply.partialSuccess ?? reply.partial_success;
    if (partial !== null && typeof partial === "object") {
      const message = /** @type {Record<string, unknown>} */ (partial).errorMessage ?? /** @type {Record<string, unknown>} */ (partial).error_message;
      if (typeof message === "string" && message !== "") return `warning: ${oneLine(message)}`;
    }
  }
  return clipped(JSON.stringify(parsed));
}

/**
 * `curl -w '\n%{http_code}'` output (the body, a newline, the status) as `<status> <summary>`.
 * @param {string} output
 * @returns {string}
 */
export function formatReply(output) {
  const trimmed = output.replace(/\n+$/, "");
  const cut = trimmed.lastIndexOf("\n");
  const status = trimmed.slice(cut + 1).trim();
  if (!/^\d{3}$/.test(status)) return `(no status: run curl with -w '\\n%{http_code}') ${summarizeBody(trimmed)}`;
  return `${status} ${summarizeBody(cut < 0 ? "" : trimmed.slice(0, cut))}`;
}

// Run as a script: read curl's output from stdin, print one line.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  console.log(formatReply(Buffer.concat(chunks).toString("utf8")));
}
