import { z } from "zod";
import type { ParkingDelta } from "../../shared/contract.ts";
import { isoOrNull as iso } from "../../shared/iso-time.ts";

/**
 * What became of an org's parked batches (README, "Parking"): reported by the ingest Worker
 * (batches parked, in throttled reports; delivered, expired and refused, by the delivery queue
 * and the cleanup), kept by the org's object, shown in the admin view, the console and the
 * `org.restored` event. Counts since the first batch was parked; `waiting` is what is still in R2
 * as far as these reports tell (parked minus delivered, expired and refused).
 */
export const ParkingProgress = z.object({
  parked_batches: z.number().int().nonnegative().default(0),
  parked_bytes: z.number().int().nonnegative().default(0),
  delivered_batches: z.number().int().nonnegative().default(0),
  delivered_bytes: z.number().int().nonnegative().default(0),
  expired_batches: z.number().int().nonnegative().default(0),
  expired_bytes: z.number().int().nonnegative().default(0),
  refused_batches: z.number().int().nonnegative().default(0),
  refused_bytes: z.number().int().nonnegative().default(0),
  /**
   * The bytes still parked: the running sum of the reports, set outright by a delivery run or a
   * cleanup that listed the org's batches (so a lost report does not skew it for long). The ingest
   * Worker's per-org cap reads it from `recordParking`'s answer. Null in documents older than it.
   */
  waiting_bytes: z.number().int().nonnegative().nullable().default(null),
  /**
   * When the listing that last set `waiting_bytes` began: a parked report whose batches were all
   * parked before it is already in that figure (still parked, or delivered since) and adds nothing
   * to it (a trailing report landing after a delivery run left phantom bytes the cap refused on).
   */
  listed_at: z.number().nullable().default(null),
  /**
   * The batches still parked, kept like `waiting_bytes`: moved by each report, set outright by a listing (its
   * `listed_batches`; a listing of no bytes has no batches), so a lost expiry report leaves no phantom batch
   * beside zero bytes. Null until the first listing (and in older documents): derived from the counts.
   */
  waiting_batches: z.number().int().nonnegative().nullable().default(null),
  last_delivery_at: z.number().nullable().default(null),
  updated_at: z.number().nullable().default(null),
  /**
   * When the waiting figures (batches or bytes) last changed: the `updated_at` the mirror entry publishes (the
   * customer's status says when the figure last changed, not when a report last came). Null in older documents,
   * then `updated_at` stands in until the next report. Bookkeeping, not in the view.
   */
  figures_changed_at: z.number().nullable().default(null),
  /**
   * When a change to the parked figures last scheduled a publication of the mirror entry (for the customer's
   * status): the next such change waits until PARKED_PUBLISH_INTERVAL_MS after it, so parking reports (every
   * 10 s per isolate while an org parks) rewrite the entry at most once a minute. Bookkeeping, not in the view.
   */
  published_at: z.number().nullable().default(null),
});
export type ParkingProgress = z.infer<typeof ParkingProgress>;


export const NO_PARKING: ParkingProgress = ParkingProgress.parse({});

const COUNTS = ["parked_batches", "parked_bytes", "delivered_batches", "delivered_bytes", "expired_batches", "expired_bytes", "refused_batches", "refused_bytes"] as const;

/** The bytes still parked, as these counts tell (documents without `waiting_bytes`). */
function derivedWaiting(progress: ParkingProgress): number {
  return Math.max(0, progress.parked_bytes - progress.delivered_bytes - progress.expired_bytes - progress.refused_bytes);
}

export function addParking(progress: ParkingProgress, delta: ParkingDelta, now: number): ParkingProgress {
  const next = { ...progress, updated_at: now };
  for (const name of COUNTS) next[name] += delta[name] ?? 0;
  if ((delta.delivered_batches ?? 0) > 0) next.last_delivery_at = now;
  // Parked before the last listing began: that listing saw these batches (or they were delivered since).
  const listedAlready = progress.listed_at !== null && delta.parked_until !== undefined && delta.parked_until < progress.listed_at;
  const parkedBytes = listedAlready ? 0 : (delta.parked_bytes ?? 0);
  const parkedBatches = listedAlready ? 0 : (delta.parked_batches ?? 0);
  const movedBytes = parkedBytes - (delta.delivered_bytes ?? 0) - (delta.expired_bytes ?? 0) - (delta.refused_bytes ?? 0);
  const movedBatches = parkedBatches - (delta.delivered_batches ?? 0) - (delta.expired_batches ?? 0) - (delta.refused_batches ?? 0);
  const listedAt = delta.listed_at ?? now;
  // A listing older than the one already applied (a slow cleanup) says less than it: its counts only.
  if (delta.listed_bytes !== undefined && (progress.listed_at === null || listedAt >= progress.listed_at)) {
    next.waiting_bytes = delta.listed_bytes;
    next.waiting_batches = listedBatches(delta.listed_bytes, delta.listed_batches, waitingBatches(progress) + movedBatches);
    next.listed_at = listedAt;
  } else {
    next.waiting_bytes = Math.max(0, waitingBytes(progress) + movedBytes);
    // Kept as a figure of its own only once a listing has set it; until then the counts tell it.
    if (progress.waiting_batches !== null) next.waiting_batches = Math.max(0, progress.waiting_batches + movedBatches);
  }
  // First report, or a figure moved: the time the customer's status shows.
  if (progress.updated_at === null || waitingBatches(progress) !== waitingBatches(next) || waitingBytes(progress) !== waitingBytes(next)) next.figures_changed_at = now;
  else next.figures_changed_at = progress.figures_changed_at ?? progress.updated_at;
  return next;
}

/**
 * The batches a listing leaves waiting: its own count when it reports one; a listing from before `listed_batches`
 * existed tells only bytes, so no bytes is no batch, and some bytes at least one batch (else the running count).
 */
function listedBatches(bytes: number, batches: number | undefined, running: number): number {
  if (batches !== undefined) return batches;
  return bytes === 0 ? 0 : Math.max(1, running);
}

/** The bytes the org has parked now, as the object knows it (the ingest Worker's per-org cap). */
export function waitingBytes(progress: ParkingProgress): number {
  return progress.waiting_bytes ?? derivedWaiting(progress);
}

/** The batches parked and not yet delivered, expired or refused: as the last listing set them and the reports since moved them, else as the counts tell. */
function waitingBatches(progress: ParkingProgress): number {
  return progress.waiting_batches ?? Math.max(0, progress.parked_batches - progress.delivered_batches - progress.expired_batches - progress.refused_batches);
}

/** At most this often a change to the parked figures alone rewrites the org's mirror entry (recordParking, object.ts). */
export const PARKED_PUBLISH_INTERVAL_MS = 60_000;

/**
 * What the mirror entry carries of the parking (the customer's status): what still waits, and when that last
 * changed; undefined when nothing was ever parked, so an org that never parked publishes what it did before.
 */
export type ParkedFigures = { batches: number; bytes: number; updated_at: number | null };

export function parkedFigures(progress: ParkingProgress): ParkedFigures | undefined {
  if (progress.updated_at === null) return undefined;
  return { batches: waitingBatches(progress), bytes: waitingBytes(progress), updated_at: progress.figures_changed_at ?? progress.updated_at };
}

/** Whether two progresses publish different figures (what a customer sees: batches and bytes waiting). */
export function parkedFiguresDiffer(a: ParkingProgress, b: ParkingProgress): boolean {
  return figuresDiffer(parkedFigures(a), parkedFigures(b));
}

/** Whether two published parked figures differ in what waits (batches or bytes), e.g. an entry just written and the progress now. */
export function figuresDiffer(x: ParkedFigures | undefined, y: ParkedFigures | undefined): boolean {
  return x?.batches !== y?.batches || x?.bytes !== y?.bytes;
}

/**
 * When a publication owed to a change of the parked figures alone may run: now, or a minute after the last
 * one they owed (`lastAt`), so a parking org's reports rewrite its entries at most once a minute.
 */
export function parkedPublicationAt(lastAt: number | null, now: number): number {
  return Math.max(now, (lastAt ?? -Infinity) + PARKED_PUBLISH_INTERVAL_MS);
}

/** For the admin view and events: the counts, what is still waiting, times as ISO strings. */
export function parkingView(progress: ParkingProgress) {
  // `listed_at` is bookkeeping for the waiting figures and `published_at` for the mirror, not part of the view or the org.restored event.
  // `figures_changed_at` is the mirror's too; `waiting_batches` is shown below, resolved like `waiting_bytes`.
  const { listed_at: _listedAt, published_at: _publishedAt, figures_changed_at: _figuresChangedAt, ...shown } = progress;
  return {
    ...shown,
    waiting_batches: waitingBatches(progress),
    waiting_bytes: waitingBytes(progress),
    last_delivery_at: iso(progress.last_delivery_at),
    updated_at: iso(progress.updated_at),
  };
}
export type ParkingView = ReturnType<typeof parkingView>;
