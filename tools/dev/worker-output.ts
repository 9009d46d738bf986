/**
 * What `npm start` shows of the two `wrangler dev` processes' output. Quiet by default: wrangler's
 * own lines (its version banner, the binding tables it prints at start and again on every
 * connection change, request lines, the cron hint) are dropped, and an object a Worker logs is
 * folded onto one line. `--verbose` shows everything as wrangler printed it. Pure: lines in,
 * lines out; the caller prints.
 */

/** Lines that are wrangler's own chatter, not a Worker's log line nor an error. Matched on the line without colours. */
const WRANGLER_CHATTER: readonly RegExp[] = [
  /^\s*⛅️ wrangler /,
  /^─+$/,
  /^\[custom build\]/,
  /^Using (secrets|vars) defined in /,
  /^Your Worker has access to the following bindings:/,
  /^Binding\s+Resource\s+Mode/,
  /^env\.\S+ \(/,
  /^Service bindings, Durable Object bindings, and Tail consumers connect/,
  /^⎔ /,
  /^\[wrangler:info\] /,
  /^▲ \[WARNING\] Scheduled Workers are not automatically triggered during local development\./,
  /^\s+To manually trigger a scheduled event, run:/,
  /^\s+curl "http:\/\/[^"]+\/cdn-cgi\/local\/scheduled"/,
  /^\s+For more details, see https:\/\/developers\.cloudflare\.com\/workers\/configuration\/cron-triggers\//,
];

/**
 * Offline, wrangler cannot fetch the `request.cf` data it gives local requests from
 * workers.cloudflare.com; it falls back to a placeholder and says so with an error and a stack.
 */
const OFFLINE_LINES: readonly RegExp[] = [/^\[wrangler:warn\] Unable to fetch the `Request\.cf` object!/, /^Error: getaddrinfo (ENOTFOUND|EAI_AGAIN) workers\.cloudflare\.com/];
const STACK_FRAME = /^\s+at /;

/** Said once, in place of those lines. */
export const OFFLINE_NOTE =
  "Offline: wrangler could not reach workers.cloudflare.com for its request.cf data and uses a placeholder; harmless for Tollgate, which does not read request.cf.";

/** A logged object's first line: `{` alone, or after the level wrangler gives console.warn and console.error. */
const OBJECT_OPENER = /^(▲ \[WARNING\] |✘ \[ERROR\] )?\{$/;
/** An object longer than this is shown in pieces rather than held back. */
const MAX_FOLDED_LINES = 200;

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
export const withoutColours = (line: string): string => line.replace(ANSI, "");

export type OutputFilter = {
  /** A line of one Worker's output; returns what to print now (zero or more lines). */
  push(line: string): string[];
  /** Whether the offline warning was seen (and dropped). */
  readonly sawOffline: boolean;
};

/**
 * One filter per Worker. Quiet: chatter and the offline warning (with its stack) are dropped; a
 * multi-line object (`{` … `}`, as wrangler prints a logged object, or `▲ [WARNING] {` … `  }` for a warning) comes
 * out as one line once it closes. Verbose: every line as it came.
 */
export function outputFilter(options: { verbose: boolean }): OutputFilter {
  let sawOffline = false;
  let inOfflineStack = false;
  // A logged object being folded: its lines so far and the line that closes it.
  let folding: { lines: string[]; closer: string } | null = null;
  return {
    get sawOffline() {
      return sawOffline;
    },
    push(raw: string): string[] {
      const line = withoutColours(raw);
      if (OFFLINE_LINES.some((pattern) => pattern.test(line))) {
        sawOffline = true;
        inOfflineStack = line.startsWith("Error:");
        return options.verbose ? [raw] : [];
      }
      if (inOfflineStack && STACK_FRAME.test(line)) return options.verbose ? [raw] : [];
      inOfflineStack = false;
      if (options.verbose) return [raw];
      if (folding !== null) {
        folding.lines.push(line.trim());
        if (line === folding.closer || folding.lines.length >= MAX_FOLDED_LINES) {
          const folded = folding.lines.join(" ");
          folding = null;
          return [folded];
        }
        return [];
      }
      const opener = OBJECT_OPENER.exec(line);
      if (opener) {
        // wrangler indents a warning's or an error's object two spaces more than a plain log's.
        folding = { lines: [line.trim()], closer: opener[1] === undefined ? "}" : "  }" };
        return [];
      }
      if (WRANGLER_CHATTER.some((pattern) => pattern.test(line))) return [];
      return [line];
    },
  };
}
