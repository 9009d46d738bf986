import { ACTIVITY_KINDS, HOUR_MS, hourOf, WOULD_REFUSE_CODES, type ActivityKind, type ForwardedKind, type WouldRefuseCode } from "../../shared/usage.ts";
import { html, type Html } from "./html.ts";

/**
 * The org page's chart (issue 21): the last 30 days, one point per hour, of what became of the
 * org's data, with the periods it was overdue, suspended, exempt or limited shaded behind. An inline
 * SVG drawn here, on the server: no client library, and a <title>, a <desc> and a table beside it
 * say the same for anyone who cannot see it. Pure: the page hands it the org's activity and history.
 *
 * Its units (docs/metering.md, "Activity"): with metering off, requests of every kind, stacked
 * (accepted, would-be-refused, parked, refused). With metering on (an hour of the window carries
 * items), items where they are known and requests where they are not, never on one scale: above the
 * zero line the items that went upstream (accepted and would-be-refused: metered as they streamed),
 * below it, on a scale of its own, the requests that did not (parked and refused), whose items are not
 * read when they come: a refusal's never (it is answered before its body is read, so the suspended
 * path costs no parsing), a parked batch's only when it is delivered. The legend, the axis and every
 * row of the table name the unit.
 */

export const CHART_HOURS = 30 * 24;

/**
 * One hour's counts in requests, `hour` the epoch ms of its start; the would-be refusals per code
 * (`unknown`: counted before the split) and the items metered where the admin view has them.
 */
export type ActivityPoint = { hour: number } & Record<ActivityKind, number> & {
    would_refuse_by_code?: Record<WouldRefuseCode | "unknown", number>;
    items?: Record<ForwardedKind, number>;
  };

/** An hour of the chart's series: every count present, items null where none were metered. */
export type SeriesPoint = { hour: number } & Record<ActivityKind, number> & { would_refuse_by_code: Record<WouldRefuseCode | "unknown", number>; items: Record<ForwardedKind, number> | null };

export const PERIOD_KINDS = ["overdue", "suspended", "exempt", "limited"] as const;
export type PeriodKind = (typeof PERIOD_KINDS)[number];
export type Period = { kind: PeriodKind; from: number; to: number };

/** What the chart needs of a history entry (OrgView's: times as ISO strings). */
export type ChartHistoryEntry = {
  at: string | null;
  kind: "transition" | "override" | "limit_reached" | "limit_cleared";
  from: "ok" | "overdue" | "suspended";
  to: "ok" | "overdue" | "suspended";
  override: { action: "exempt" | "suspend" | "unsuspend" | "clear"; until: string | null } | null;
  limit: { feature_id: string } | null;
};

const LABEL: Record<ActivityKind, string> = { accepted: "Accepted", would_refuse: "Would be refused", parked: "Parked", refused: "Refused" };
const PERIOD_LABEL: Record<PeriodKind, string> = { overdue: "Overdue", suspended: "Suspended", exempt: "Exempt", limited: "Plan limit reached" };
/** Bottom to top: what went through first, then what was kept, then what was turned away. */
const STACK: readonly ActivityKind[] = ["accepted", "would_refuse", "parked", "refused"];

/** The window: the 720 hours ending with the one holding `now`. */
export function chartWindow(now: number): { start: number; end: number } {
  const end = hourOf(now) + HOUR_MS;
  return { start: end - CHART_HOURS * HOUR_MS, end };
}

/**
 * One point per hour of the window, zeros where nothing was counted; points outside it are left out.
 * A point without codes counts its would-be refusals under `unknown`.
 */
export function hourlySeries(points: readonly ActivityPoint[], start: number, hours = CHART_HOURS): SeriesPoint[] {
  const series: SeriesPoint[] = Array.from({ length: hours }, (_, i) => ({
    hour: start + i * HOUR_MS,
    accepted: 0,
    refused: 0,
    would_refuse: 0,
    parked: 0,
    would_refuse_by_code: { billing_suspended: 0, plan_limit_reached: 0, unknown: 0 },
    items: null,
  }));
  for (const point of points) {
    const i = Math.floor((point.hour - start) / HOUR_MS);
    if (i < 0 || i >= hours) continue;
    const hour = series[i]!;
    for (const kind of ACTIVITY_KINDS) hour[kind] += point[kind];
    const codes = point.would_refuse_by_code ?? { billing_suspended: 0, plan_limit_reached: 0, unknown: point.would_refuse };
    for (const code of CODE_KEYS) hour.would_refuse_by_code[code] += codes[code];
    if (point.items) {
      hour.items ??= { accepted: 0, would_refuse: 0 };
      for (const kind of FORWARDED) hour.items[kind] += point.items[kind];
    }
  }
  return series;
}

const FORWARDED: readonly ForwardedKind[] = ["accepted", "would_refuse"];
const CODE_KEYS = [...WOULD_REFUSE_CODES, "unknown"] as const;

/** The y axis's top: the smallest 1, 2 or 5 × 10^k at or above `max` (1 for an empty chart). */
export function niceMax(max: number): number {
  if (!(max > 1)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

/**
 * The periods, from the org's history (any order), clipped to [start, end): `overdue` and `suspended`
 * from every entry's `to` (the state before the first entry is its `from`); `exempt` from an `exempt` or
 * `unsuspend` override until its end or the next override; `limited` while any feature's limit_reached
 * has no limit_cleared yet. Enforcement-mode entries (an override entry without `override`) change nothing.
 */
export function periodsFrom(history: readonly ChartHistoryEntry[], start: number, end: number): Period[] {
  const entries = history
    .map((entry) => ({ entry, at: entry.at === null ? NaN : Date.parse(entry.at) }))
    .filter(({ at }) => Number.isFinite(at))
    .sort((a, b) => a.at - b.at);
  const periods: Period[] = [];
  const add = (kind: PeriodKind, from: number, to: number) => {
    const clipped = { kind, from: Math.max(from, start), to: Math.min(to, end) };
    if (clipped.from < clipped.to) periods.push(clipped);
  };
  let state = entries[0]?.entry.from ?? "ok";
  let stateSince = -Infinity;
  let exempt: { from: number; until: number } | null = null;
  const limited = new Set<string>();
  let limitedSince = -Infinity;
  for (const { entry, at } of entries) {
    if (entry.to !== state) {
      if (state !== "ok") add(state, stateSince, at);
      state = entry.to;
      stateSince = at;
    }
    if (entry.kind === "override" && entry.override !== null) {
      if (exempt !== null) add("exempt", exempt.from, Math.min(exempt.until, at));
      const exempting = entry.override.action === "exempt" || entry.override.action === "unsuspend";
      const until = entry.override.until === null ? Infinity : Date.parse(entry.override.until);
      exempt = exempting ? { from: at, until: Number.isNaN(until) ? Infinity : until } : null;
    }
    if (entry.limit !== null && (entry.kind === "limit_reached" || entry.kind === "limit_cleared")) {
      const was = limited.size > 0;
      if (entry.kind === "limit_reached") limited.add(entry.limit.feature_id);
      else limited.delete(entry.limit.feature_id);
      if (!was && limited.size > 0) limitedSince = at;
      if (was && limited.size === 0) add("limited", limitedSince, at);
    }
  }
  if (state !== "ok") add(state, stateSince, end);
  if (exempt !== null) add("exempt", exempt.from, exempt.until);
  if (limited.size > 0) add("limited", limitedSince, end);
  return periods.sort((a, b) => a.from - b.from || PERIOD_KINDS.indexOf(a.kind) - PERIOD_KINDS.indexOf(b.kind));
}

// The drawing's own units (viewBox): the plot is 360 wide whatever the window (30 days: half a unit an
// hour), so a 390 px phone shows the labels at about their size; wider screens scale it up (CSS caps it).
const X0 = 40;
const PLOT_WIDTH = 360;
const PLOT_TOP = 30;
const PLOT_BOTTOM = 146;
const WIDTH = X0 + PLOT_WIDTH + 6;
const HEIGHT = 166;
const STRIP = { exempt: [1, 9], limited: [12, 20] } as const;
/** The closer look beside the 30 days: the last day, where a short period or one busy hour is visible. */
export const CLOSE_HOURS = 24;

const round = (n: number) => Math.round(n * 10) / 10;

/** The outline of one stacked layer: its top edge left to right, its bottom edge back, as axis-aligned steps `perHour` wide. */
export function layerPath(bottoms: readonly number[], tops: readonly number[], y: (value: number) => number, perHour = PLOT_WIDTH / CHART_HOURS): string {
  const points: [number, number][] = [];
  tops.forEach((top, i) => points.push([X0 + i * perHour, y(top)], [X0 + (i + 1) * perHour, y(top)]));
  for (let i = bottoms.length - 1; i >= 0; i--) points.push([X0 + (i + 1) * perHour, y(bottoms[i]!)], [X0 + i * perHour, y(bottoms[i]!)]);
  // Only the corners: a point between two others on the same horizontal or vertical line adds nothing.
  const corners = points.filter((p, i) => {
    const a = points[i - 1];
    const c = points[i + 1];
    if (!a || !c) return true;
    return !((a[1] === p[1] && p[1] === c[1]) || (a[0] === p[0] && p[0] === c[0]));
  });
  // The outline closes by itself (Z): a last corner on the first is left out.
  const last = corners[corners.length - 1]!;
  if (corners.length > 1 && last[0] === corners[0]![0] && last[1] === corners[0]![1]) corners.pop();
  return `M${corners.map(([x, yy]) => `${round(x)} ${round(yy)}`).join("L")}Z`;
}

const count = (n: number) => n.toLocaleString("en-US");
const day = (t: number) => new Date(t).toISOString().slice(5, 10);
const clock = (t: number) => new Date(t).toISOString().slice(11, 16);
const minute = (t: number) => `${new Date(t).toISOString().slice(0, 16).replace("T", " ")} UTC`;
const capital = (text: string) => `${text[0]!.toUpperCase()}${text.slice(1)}`;
const periodWords = (periods: readonly Period[], end: number) =>
  periods.length === 0 ? "never overdue, suspended, exempt or limited in that time" : periods.map((p) => `${PERIOD_LABEL[p.kind].toLowerCase()} from ${minute(p.from)} to ${p.to >= end ? "now" : minute(p.to)}`).join("; ");

/** The narrowest a period is drawn, in viewBox units (the plot is 360 wide): visible on a 390 px phone. */
const MIN_PERIOD_WIDTH = 3;
/** With metering on, the zero line: items above it (the larger share), requests below. */
const MID = 100;

/** One series of the chart: a kind counted in one unit, an hour a value. */
type Series = { kind: ActivityKind; unit: "items" | "requests"; values: (p: SeriesPoint) => number };
/** A stack of series in one unit, drawn from the `zero` line towards `far` (up or down) on a scale of its own. */
type Band = { unit: "items" | "requests"; series: readonly Series[]; zero: number; far: number };

const requestsOf = (kind: ActivityKind): Series => ({ kind, unit: "requests", values: (p) => p[kind] });
const itemsOf = (kind: ForwardedKind): Series => ({ kind, unit: "items", values: (p) => p.items?.[kind] ?? 0 });

/**
 * What is drawn: metering off (no hour of the window has items), one stack of requests bottom to top
 * (what went through first, then what was kept, then what was turned away); metering on, the items
 * that went upstream above the zero line and the requests that did not below it.
 */
function bandsFor(metered: boolean): readonly Band[] {
  if (!metered) return [{ unit: "requests", series: STACK.map(requestsOf), zero: PLOT_BOTTOM, far: PLOT_TOP }];
  return [
    { unit: "items", series: [itemsOf("accepted"), itemsOf("would_refuse")], zero: MID, far: PLOT_TOP },
    { unit: "requests", series: [requestsOf("parked"), requestsOf("refused")], zero: MID, far: PLOT_BOTTOM },
  ];
}

const total = (series: readonly SeriesPoint[], values: (p: SeriesPoint) => number) => series.reduce((sum, p) => sum + values(p), 0);

/** The window's totals in words, each with its unit. */
function summaryOf(series: readonly SeriesPoint[], metered: boolean, span: string): string {
  if (!metered) return `${ACTIVITY_KINDS.map((kind) => `${LABEL[kind].toLowerCase()} ${count(total(series, (p) => p[kind]))}`).join(", ")} requests in ${span}`;
  const words = ACTIVITY_KINDS.map((kind) => {
    const requests = `${count(total(series, (p) => p[kind]))} requests`;
    return kind === "accepted" || kind === "would_refuse" ? `${LABEL[kind].toLowerCase()} ${count(total(series, (p) => p.items?.[kind] ?? 0))} items in ${requests}` : `${LABEL[kind].toLowerCase()} ${requests}`;
  });
  return `${words.join(", ")} in ${span}`;
}

/** One window drawn: `series` one point per hour from `start`, `periods` clipped to it; `id` keeps its title and desc apart from the other's. */
function drawing(id: string, series: readonly SeriesPoint[], periods: readonly Period[], start: number, metered: boolean, span: string): Html {
  const hours = series.length;
  const end = start + hours * HOUR_MS;
  const perHour = PLOT_WIDTH / hours;
  const x = (t: number) => X0 + ((t - start) / HOUR_MS) * perHour;

  const layers: Html[] = [];
  const axis: Html[] = [];
  let drawn = false;
  for (const [n, band] of bandsFor(metered).entries()) {
    const top = niceMax(Math.max(0, ...series.map((p) => band.series.reduce((sum, one) => sum + one.values(p), 0))));
    const y = (value: number) => band.zero + (value / top) * (band.far - band.zero);
    let bottoms = series.map(() => 0);
    for (const one of band.series) {
      const sum = total(series, one.values);
      if (sum === 0) continue;
      drawn = true;
      const tops = series.map((p, i) => bottoms[i]! + one.values(p));
      layers.push(html`<path class="layer ${one.kind}" d="${layerPath(bottoms, tops, y, perHour)}"><title>${LABEL[one.kind]}: ${count(sum)} ${one.unit}</title></path>`);
      bottoms = tops;
    }
    const up = band.far < band.zero;
    axis.push(html`<line class="grid" x1="${X0}" x2="${X0 + PLOT_WIDTH}" y1="${y(top / 2)}" y2="${y(top / 2)}" />
      <text class="axis" x="${X0 - 4}" y="${round(y(top)) + (up ? 3 : 0)}" text-anchor="end">${count(top)}</text>
      ${top > 1 ? html`<text class="axis" x="${X0 - 4}" y="${round(y(top / 2)) + 3}" text-anchor="end">${count(top / 2)}</text>` : ""}
      ${n === 0 ? html`<text class="axis" x="${X0 - 4}" y="${band.zero + 3}" text-anchor="end">0</text>` : ""}
      ${metered ? html`<text class="axis strip-label band-unit" x="${X0 - 4}" y="${round(y(top)) + (up ? 12 : -9)}" text-anchor="end">${band.unit}</text>` : ""}`);
  }
  // A period shorter than the drawing can show is still drawn, MIN_PERIOD_WIDTH wide, and the shorter periods over
  // the longer ones: an overdue spell of seconds before a suspension stays visible at its start.
  const byLength = [...periods].sort((a, b) => b.to - b.from - (a.to - a.from));
  const shading = byLength.map((p) => {
    const [y1, y2] = p.kind === "exempt" || p.kind === "limited" ? STRIP[p.kind] : [PLOT_TOP, PLOT_BOTTOM];
    return html`<rect class="period ${p.kind}" x="${round(x(p.from))}" y="${y1}" width="${Math.max(MIN_PERIOD_WIDTH, round(x(p.to) - x(p.from)))}" height="${y2 - y1}"><title>${PERIOD_LABEL[p.kind]} ${minute(p.from)} to ${p.to >= end ? "now" : minute(p.to)}</title></rect>`;
  });
  // 30 days: a date under every fifth day from the first whole one; a day: the time every sixth hour.
  const step = hours > CLOSE_HOURS ? 5 * 86_400_000 : 6 * HOUR_MS;
  const label = hours > CLOSE_HOURS ? day : clock;
  const ticks: Html[] = [];
  for (let t = Math.ceil(start / step) * step; t < end; t += step) {
    ticks.push(html`<line class="tick" x1="${round(x(t))}" x2="${round(x(t))}" y1="${PLOT_BOTTOM}" y2="${PLOT_BOTTOM + 3}" /><text class="axis" x="${round(x(t))}" y="${PLOT_BOTTOM + 13}" text-anchor="middle">${label(t)}</text>`);
  }
  const what = metered ? "Items that went upstream (above the line) and requests that did not (below it)" : "Requests";
  const zeroLine = metered ? MID : PLOT_BOTTOM;
  return html`<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" width="100%" role="img" aria-labelledby="${id}-title ${id}-desc" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">
      <title id="${id}-title">${what} per hour, ${span}: ${minute(start)} to ${minute(end)}</title>
      <desc id="${id}-desc">${summaryOf(series, metered, span)}; ${periodWords(periods, end)}.</desc>
      ${shading}
      ${axis}
      ${layers}
      <line class="axis-line" x1="${X0}" x2="${X0 + PLOT_WIDTH}" y1="${zeroLine}" y2="${zeroLine}" />
      ${metered ? html`<line class="axis-line" x1="${X0}" x2="${X0 + PLOT_WIDTH}" y1="${PLOT_BOTTOM}" y2="${PLOT_BOTTOM}" />` : ""}
      <text class="axis strip-label" x="${X0 - 4}" y="${STRIP.exempt[1]}" text-anchor="end">exempt</text>
      <text class="axis strip-label" x="${X0 - 4}" y="${STRIP.limited[1]}" text-anchor="end">limited</text>
      ${ticks}
      ${drawn ? "" : html`<text class="axis empty" x="${X0 + PLOT_WIDTH / 2}" y="${(PLOT_TOP + PLOT_BOTTOM) / 2}" text-anchor="middle">No ${metered ? "items or requests" : "requests"} counted in ${span}</text>`}
    </svg>`;
}

/** The table's rows: each kind in requests, metered items beside those that went upstream, the would-be refusals per code; every row names its unit when the chart mixes them. */
function tableRows(series: readonly SeriesPoint[], metered: boolean): { label: string; values: (p: SeriesPoint) => number }[] {
  const rows: { label: string; values: (p: SeriesPoint) => number }[] = [];
  const unit = (text: string) => (metered ? `, ${text}` : "");
  for (const kind of ACTIVITY_KINDS) {
    if (metered && (kind === "accepted" || kind === "would_refuse")) rows.push({ label: `${LABEL[kind]}, items`, values: (p) => p.items?.[kind] ?? 0 });
    rows.push({ label: `${LABEL[kind]}${unit("requests")}`, values: (p) => p[kind] });
    if (kind !== "would_refuse") continue;
    for (const code of WOULD_REFUSE_CODES) rows.push({ label: `${LABEL[kind]}${unit("requests")}: ${CODE_LABEL[code]}`, values: (p) => p.would_refuse_by_code[code] });
    // Counted by an ingest Worker from before the split: shown only when there are some.
    if (total(series, (p) => p.would_refuse_by_code.unknown) > 0) rows.push({ label: `${LABEL[kind]}${unit("requests")}: code not recorded`, values: (p) => p.would_refuse_by_code.unknown });
  }
  return rows;
}

const CODE_LABEL: Record<WouldRefuseCode, string> = { billing_suspended: "402 billing_suspended", plan_limit_reached: "429 plan_limit_reached" };

/**
 * Whether the window is drawn in items: only when every hour with requests that went upstream had their
 * items metered. One unmetered hour (metering off then, or counted by an ingest Worker from before items
 * were sent) and the whole window is in requests, so no hour is drawn as 0 items over requests that were
 * simply not metered.
 */
export function inItems(series: readonly SeriesPoint[]): boolean {
  return series.some((p) => p.items !== null) && series.every((p) => p.items !== null || p.accepted + p.would_refuse === 0);
}

/**
 * The chart, its legend and its table, for the org page: the last 30 days, then the last 24 hours
 * drawn closer (the same hours, wider), so a period of minutes or one busy hour can be seen.
 * `unit`: what the points count (requests); with metering on (an hour of the window has items) the
 * items metered in what went upstream are drawn instead of its requests (see the module's comment).
 */
export function activityChart(input: { points: readonly ActivityPoint[]; history: readonly ChartHistoryEntry[]; now: number; unit: string }): Html {
  const { start, end } = chartWindow(input.now);
  const series = hourlySeries(input.points, start);
  const metered = inItems(series);
  const periods = periodsFrom(input.history, start, end);
  const closeStart = end - CLOSE_HOURS * HOUR_MS;
  const lastDay = series.slice(-CLOSE_HOURS);
  const legend = metered
    ? [...(["accepted", "would_refuse"] as const).map((kind) => ({ kind, text: `${LABEL[kind]} (items, above the line)` })), ...(["parked", "refused"] as const).map((kind) => ({ kind, text: `${LABEL[kind]} (requests, below the line)` }))]
    : STACK.map((kind) => ({ kind, text: LABEL[kind] }));

  return html`<figure class="chart">
    ${drawing("chart-30d", series, periods, start, metered, "the last 30 days")}
    ${drawing("chart-24h", lastDay, periodsFrom(input.history, closeStart, end), closeStart, metered, "the last 24 hours")}
    <figcaption>
      <ul class="legend">
        ${legend.map(({ kind, text }) => html`<li><span class="swatch ${kind}" aria-hidden="true"></span>${text}</li>`)}
        ${PERIOD_KINDS.map((kind) => html`<li><span class="swatch period ${kind}" aria-hidden="true"></span>${PERIOD_LABEL[kind]}</li>`)}
      </ul>
      <p class="muted">${metered
        ? "Two units, each on its own scale. Above the line: items that went upstream, as metered. Below it: requests that did not, whose items are not known (a refusal's are never read, a parked batch's only when it is delivered)."
        : `In ${input.unit}: items are drawn only when the requests that went upstream were metered in every hour, and in these 30 days some were not (metering off then, or nothing metered went upstream).`}</p>
    </figcaption>
  </figure>
  <div class="scroll"><table class="chart-table">
    <caption>${metered ? "Items and requests, counted by the ingest Worker (each row names its unit)" : `${capital(input.unit)}, counted by the ingest Worker`}</caption>
    <thead><tr><th scope="col"></th><th scope="col">Last 24 hours</th><th scope="col">Last 30 days</th></tr></thead>
    <tbody>${tableRows(series, metered).map((row) => html`<tr><th scope="row">${row.label}</th><td>${count(total(lastDay, row.values))}</td><td>${count(total(series, row.values))}</td></tr>`)}</tbody>
  </table></div>
  ${periods.length === 0
    ? html`<p class="muted">Never overdue, suspended, exempt or limited in the last 30 days.</p>`
    : html`<ul class="periods">${periods.map((p) => html`<li><span class="swatch period ${p.kind}" aria-hidden="true"></span>${PERIOD_LABEL[p.kind]}: ${minute(p.from)} to ${p.to >= end ? "now" : minute(p.to)}</li>`)}</ul>`}`;
}
