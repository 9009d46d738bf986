import { admit, owedGaps, type Gap, type StreamMark } from "./streams.ts";

/**
 * The stored side of streams.ts: one fold's marks over a table of streams (`stream TEXT PRIMARY KEY, high, gaps,
 * at`), the org's `usage_streams` (ledger.ts) or an index shard's `activity_streams` (index/activity.ts). Both
 * dedupe batches numbered per stream on the same queue, so both keep them the same way and for the same window.
 */

/** The usage queue's message retention at most (4 days, the default; docs/storage.md): nothing sent longer ago can be delivered. */
export const QUEUE_RETENTION_MS = 4 * 86_400_000;

/**
 * How long a stream's gaps are owed and a silent stream's row is kept: the queue's retention (at most 4 days)
 * plus an hour for the producer's retried sends (seconds) and the queue's own slack.
 */
export const USAGE_STREAM_WINDOW_MS = QUEUE_RETENTION_MS + 3_600_000;

/**
 * Gap entries one stream keeps at most (about 40 bytes each, at most ~700 once coalesced): past this neighbouring gaps
 * are coalesced into ranges with a bitmap of what they still owe (streams.ts), so the row stays under ~200 KB.
 */
export const MAX_STREAM_GAPS = 256;

/** A range of a stream's numbers given up as owed (past MAX_STREAM_GAPS with no neighbours to coalesce): a batch from it would be taken for a duplicate. */
export type AbandonedGap = { stream: string; from: number; to: number };

/**
 * A fold's view of a stream table. Created inside the fold's transaction: it first drops the rows of streams
 * nothing was folded from for USAGE_STREAM_WINDOW_MS. That is exact: a batch numbered at or below a stream's
 * mark was sent before its last fold, so the queue has dropped it by then; a batch seen later starts a new row
 * that owes every lower number (only those above the old mark can come). `admit` each batch, then `save`.
 */
export class StreamMarks {
  private readonly marks = new Map<string, StreamMark>();
  /** Gaps given up during this fold, for the caller's log. */
  readonly abandoned: AbandonedGap[] = [];

  private readonly sql: SqlStorage;
  private readonly table: "usage_streams" | "activity_streams";
  private readonly now: number;

  constructor(sql: SqlStorage, table: "usage_streams" | "activity_streams", now: number) {
    this.sql = sql;
    this.table = table;
    this.now = now;
    sql.exec(`DELETE FROM ${table} WHERE at < ?`, now - USAGE_STREAM_WINDOW_MS);
  }

  /** Whether batch `seq` of `stream` is new; remembered either way (written by `save`). */
  admit(stream: string, seq: number): boolean {
    const admitted = admit(this.marks.get(stream) ?? this.stored(stream), seq, this.now, MAX_STREAM_GAPS);
    this.marks.set(stream, admitted.mark);
    for (const [from, to] of admitted.abandoned) this.abandoned.push({ stream, from, to });
    return admitted.fresh;
  }

  /** The marks of the streams admitted, written back (in the fold's transaction). */
  save(): void {
    for (const [stream, mark] of this.marks) {
      this.sql.exec(
        `INSERT INTO ${this.table} (stream, high, gaps, at) VALUES (?, ?, ?, ?) ON CONFLICT (stream) DO UPDATE SET high = excluded.high, gaps = excluded.gaps, at = excluded.at`,
        stream,
        mark.high,
        JSON.stringify(mark.gaps),
        this.now,
      );
    }
  }

  /** A stream's stored mark with only the gaps still owed, or null for a stream not (or no longer) known. */
  private stored(stream: string): StreamMark | null {
    const row = this.sql.exec<{ high: number; gaps: string }>(`SELECT high, gaps FROM ${this.table} WHERE stream = ?`, stream).toArray()[0];
    if (!row) return null;
    return { high: row.high, gaps: owedGaps(JSON.parse(row.gaps) as Gap[], this.now, USAGE_STREAM_WINDOW_MS) };
  }
}
