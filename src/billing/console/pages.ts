import { relativeTime } from "../../shared/relative-time.ts";
import { httpsUrl } from "../../shared/https-url.ts";
import type { IndexEntryView, OrgView } from "../org/view.ts";
import type { SweepView } from "../reconcile/sweep-record.ts";
import { activityChart } from "./chart.ts";
import { html, type Html } from "./html.ts";
import { FAVICON_PATH } from "./favicon.ts";
import { UNTIL_PATTERN, UNTIL_PLACEHOLDER } from "./override-form.ts";
import { AFTER_EXEMPTION, DISAGREEMENT_LABELS, disagreementLabel, exemptionInForce, NO_END_EXEMPTION, utcMinute } from "./words.ts";

/**
 * The console's pages, rendered on the server so everything reads without JavaScript;
 * `console.js` only makes the relative times tick.
 */
const STATE_LABEL = { ok: "OK", overdue: "Overdue", suspended: "Suspended" } as const;

function layout(title: string, body: Html, signedIn = true): Html {
  return html`<html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>${title} · Tollgate</title>
      <link rel="icon" href="${FAVICON_PATH}" type="image/svg+xml" />
      <link rel="stylesheet" href="/admin/assets/console.css" />
      <script type="module" src="/admin/assets/console.js"></script>
    </head>
    <body>
      <header class="top">
        <a class="brand" href="/admin">Tollgate</a>
        ${signedIn
          ? html`<form class="search" method="get" action="/admin/org">
                <label for="org-search" class="visually-hidden">Org id</label>
                <input id="org-search" name="id" placeholder="Find an org by id" required />
                <button type="submit">Open</button>
              </form>
              <form class="sign-out" method="post" action="/admin/logout"><button type="submit" class="link">Sign out</button></form>`
          : ""}
      </header>
      <main>${body}</main>
    </body>
  </html>`;
}

/** A relative time ("in 2h 5m", "52s ago") that the script keeps ticking; a countdown is a deadline, which says when it is over. */
export function when(iso: string | null, now: number, countdown = false): Html {
  if (iso === null) return html`<span class="muted">—</span>`;
  return html`<time datetime="${iso}" data-relative ${countdown ? html`data-countdown` : ""} title="${iso}">${relativeTime(iso, now)}</time>`;
}

function badge(state: keyof typeof STATE_LABEL): Html {
  return html`<span class="badge ${state}">${STATE_LABEL[state]}</span>`;
}

function flashes(flash: Flash): Html {
  return html`${flash.error ? html`<p class="error" role="alert" data-error="${flash.error.code}">${flash.error.message}</p>` : ""}${flash.done ? html`<p class="done" role="status">${flash.done}</p>` : ""}`;
}

/** A refused form's stable code (also on the page, as `data-error`) and its sentence, or what was done. */
export type Flash = { error?: { code: string; message: string }; done?: string };

function orgLink(orgId: string): Html {
  return html`<a href="/admin/org/${encodeURIComponent(orgId)}">${orgId}</a>`;
}

export function loginPage(error: string | null): Html {
  return layout(
    "Sign in",
    html`<section class="card narrow">
      <h1>Sign in</h1>
      <p>Use the billing Worker's admin token (<code>ADMIN_TOKEN</code>).</p>
      ${error ? html`<p class="error" role="alert">${error}</p>` : ""}
      <form method="post" action="/admin/login">
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required autofocus />
        <button type="submit">Sign in</button>
      </form>
    </section>`,
    false,
  );
}

type Overview = {
  counts: Record<string, number>;
  due_soon: IndexEntryView[];
  recently_suspended: IndexEntryView[];
  recently_restored: IndexEntryView[];
  /** Orgs observe mode let through in the last 24 h (issue 21), the most first, with the latest hour counted. */
  would_refuse: { org_id: string; requests: number; last_hour: string }[];
};

/** The orgs that would have been refused (402 or 429) but for observe mode: what turning enforcement on would cut off. */
function wouldRefuseCard(rows: Overview["would_refuse"], now: number): Html {
  return html`<section class="card" id="would-refuse">
    <h2>Would have been refused in the last 24 hours</h2>
    <p class="muted">Requests accepted only because of observe mode (<code>ENFORCEMENT=observe</code> or the org's own override): each org's object reports them here at most once an hour, so the latest hour may be short.</p>
    ${rows.length === 0
      ? html`<p class="muted">No org would have been refused in the last 24 hours.</p>`
      : scroller(html`<table>
          <thead><tr><th scope="col">Org</th><th scope="col">Requests</th><th scope="col">Latest hour</th></tr></thead>
          <tbody>${rows.map((row) => html`<tr><td>${orgLink(row.org_id)}</td><td>${row.requests.toLocaleString("en-US")}</td><td>${when(row.last_hour, now)}</td></tr>`)}</tbody>
        </table>`)}
  </section>`;
}

function table(rows: IndexEntryView[], columns: [string, (row: IndexEntryView) => Html | string][], empty: string): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return scroller(html`<table>
    <thead><tr>${columns.map(([title]) => html`<th scope="col">${title}</th>`)}</tr></thead>
    <tbody>${rows.map((row) => html`<tr>${columns.map(([, cell]) => html`<td>${cell(row)}</td>`)}</tr>`)}</tbody>
  </table>`);
}

/** A wide table scrolls inside its card on a narrow screen, instead of widening the page. */
function scroller(table: Html): Html {
  return html`<div class="scroll">${table}</div>`;
}

const SWEEP_STATUS_LABEL = { running: "Running", held: "Held for confirmation", finished: "Finished", failed: "Failed", discarded: "Discarded" } as const;
/** How many of a sweep's newest errors the overview shows; the admin API has the rest. */
const SWEEP_ERRORS_SHOWN = 3;

/**
 * The last reconciliation sweep: what it found and whether it is healthy. `unavailable` when
 * the sweeper could not be asked (the rest of the overview still renders).
 */
export function sweepCard(sweep: SweepView | null | "unavailable", now: number): Html {
  const body =
    sweep === "unavailable"
      ? html`<p class="error">The sweeper could not be asked for its status; the overview is otherwise complete.</p>`
      : sweep === null
        ? html`<p class="muted">No sweep has run yet. The Cron Trigger starts one on its schedule, or start one now.</p>`
        : html`<dl class="facts">
            <dt>Status</dt>
            <dd><span class="sweep-status ${sweep.status}">${SWEEP_STATUS_LABEL[sweep.status]}</span> <span class="muted">(${sweep.trigger === "cron" ? "scheduled" : "started by an operator"})</span>
              ${sweep.status === "running" && sweep.page_attempts > 0 && sweep.next_page_at
                ? html` · page ${sweep.pages + 1} failed ${sweep.page_attempts}×, retrying ${when(sweep.next_page_at, now)}`
                : ""}</dd>
            ${sweep.status === "held"
              ? html`<dt>Held</dt>
                  <dd class="error">Would move ${sweep.would_restore.no_longer_past_due + sweep.would_restore.missing_from_autumn + sweep.would_restore.limit_lifted} orgs toward ok
                    (${sweep.would_restore.no_longer_past_due} no longer past due, ${sweep.would_restore.missing_from_autumn} missing from Autumn, ${sweep.would_restore.limit_lifted} limits lifted)
                    of ${sweep.restricted_held} restricted; more than ${sweep.restore_allowance} needs a confirmation. A wrong Autumn key or URL looks like this: check before confirming.
                    <ul class="plain">${sweep.would_restore_sample.map((h) => html`<li>${orgLink(h.org_id)} · ${DISAGREEMENT_LABELS[h.kind]}</li>`)}</ul>
                    <form method="post" action="/admin/sweep/${sweep.id}/confirm" class="inline"><button type="submit">Confirm this sweep</button></form>
                    <span class="muted">(otherwise the next sweep discards it)</span></dd>`
              : ""}
            <dt>Started</dt><dd>${when(sweep.started_at, now)}</dd>
            <dt>Finished</dt><dd>${sweep.finished_at ? when(sweep.finished_at, now) : html`<span class="muted">not yet (${sweep.pages} page${sweep.pages === 1 ? "" : "s"} so far)</span>`}</dd>
            <dt>Customers seen</dt><dd>${sweep.customers_seen} <span class="muted">on ${sweep.pages} page${sweep.pages === 1 ? "" : "s"} of Autumn's list</span></dd>
            <dt>Orgs handed over</dt>
            <dd>
              <ul class="plain">
                ${(Object.keys(DISAGREEMENT_LABELS) as (keyof typeof DISAGREEMENT_LABELS)[]).map(
                  (kind) => html`<li><strong>${sweep.orgs_handed_over[kind]}</strong> ${DISAGREEMENT_LABELS[kind]}</li>`,
                )}
                ${sweep.hand_over_failures > 0 ? html`<li class="error">${sweep.hand_over_failures} could not be handed over (the next sweep tries again)</li>` : ""}
              </ul>
            </dd>
            <dt>Errors</dt>
            <dd>
              ${sweep.error_count === 0
                ? "none"
                : html`${sweep.error_count}
                    <ul class="plain sweep-errors">
                      ${sweep.errors.slice(0, SWEEP_ERRORS_SHOWN).map(
                        (e) => html`<li>${when(e.at, now)} · page ${e.page}${e.org_id ? html` · ${orgLink(e.org_id)}` : ""}: ${e.message}</li>`,
                      )}
                    </ul>`}
            </dd>
          </dl>`;
  return html`<section class="card" id="sweep">
    <h2>Last reconciliation sweep</h2>
    <p class="muted">The sweep walks Autumn's customer list and hands every org Autumn and Tollgate disagree about to that org's object, which reads Autumn again and decides.</p>
    ${body}
    <form method="post" action="/admin/sweep" class="inline">
      <button type="submit">Run a sweep now</button>
    </form>
  </section>`;
}

export function overviewPage(overview: Overview, reasons: Record<string, string>, sweep: SweepView | null | "unavailable", now: number, flash: Flash = {}): Html {
  return layout(
    "Overview",
    html`<h1>Overview</h1>
      ${flashes(flash)}
      <section class="counts">
        <a class="count suspended" href="/admin/list/suspended"><strong>${overview.counts.suspended ?? 0}</strong> suspended</a>
        <a class="count overdue" href="/admin/list/overdue"><strong>${overview.counts.overdue ?? 0}</strong> overdue</a>
        <a class="count ok" href="/admin/list/ok"><strong>${overview.counts.ok ?? 0}</strong> restored in the last 30 days</a>
      </section>
      <section class="card">
        <h2>Suspended in the next 24 hours unless they pay</h2>
        ${table(
          overview.due_soon,
          [
            ["Org", (r) => orgLink(r.org_id)],
            ["Deadline", (r) => when(r.suspend_at, now, true)],
            ["Overdue since", (r) => when(r.since, now)],
          ],
          "No org is due for suspension in the next 24 hours.",
        )}
      </section>
      <section class="card">
        <h2>Recently suspended</h2>
        ${table(
          overview.recently_suspended,
          [
            ["Org", (r) => orgLink(r.org_id)],
            ["Suspended", (r) => when(r.suspended_at, now)],
            ["Why", (r) => reasons[r.reason] ?? r.reason],
          ],
          "No org is suspended.",
        )}
      </section>
      <section class="card">
        <h2>Recently restored</h2>
        ${table(
          overview.recently_restored,
          [
            ["Org", (r) => orgLink(r.org_id)],
            ["Back to OK", (r) => when(r.since, now)],
          ],
          "No org was restored in the last 30 days.",
        )}
      </section>
      ${wouldRefuseCard(overview.would_refuse, now)}
      ${sweepCard(sweep, now)}`,
  );
}

/** `paged`: a page after the first (reached by a cursor), which links back to the first. */
export function listPage(state: "ok" | "overdue" | "suspended", orgs: IndexEntryView[], nextCursor: string | null, now: number, paged = false): Html {
  const title = { ok: "Restored in the last 30 days", overdue: "Overdue", suspended: "Suspended" }[state];
  return layout(
    title,
    html`<h1>${title}</h1>
      <section class="card">
        ${table(
          orgs,
          [
            ["Org", (r) => orgLink(r.org_id)],
            ["State", (r) => badge(r.state)],
            ["Reason", (r) => r.reason],
            ["Deadline", (r) => when(r.suspend_at, now, true)],
            ["Since", (r) => when(r.since, now)],
          ],
          "Nothing here.",
        )}
        ${nextCursor || paged
          ? html`<p>${paged ? html`<a href="/admin/list/${state}">First page</a>` : ""}${paged && nextCursor ? " · " : ""}${nextCursor ? html`<a href="/admin/list/${state}?cursor=${nextCursor}">Next page</a>` : ""}</p>`
          : ""}
      </section>`,
  );
}

/** The terms of the deadline: the latest one is the deadline, so an org is never suspended without notice. */
function deadlineTerms(org: OrgView, now: number): Html {
  const terms = org.deadline_terms;
  if (terms === null) return html``;
  const at = (iso: string | null) => (iso === null ? -Infinity : Date.parse(iso));
  const latest = Math.max(at(terms.grace_ends_at), at(terms.notice_ends_at), at(terms.exemption_ends_at));
  // While exempt, the latest term is the deadline that applies after the exemption, not one running now.
  const label = exemptionInForce(org) ? "applies after the exemption" : "the deadline";
  const decides = (iso: string | null) => (at(iso) === latest ? html` <span class="decides">${label}</span>` : "");
  return html`<dt>Grace period ends</dt><dd>${when(terms.grace_ends_at, now)} <span class="muted">(${org.grace_period} after overdue since)</span>${decides(terms.grace_ends_at)}</dd>
    <dt>Minimum notice ends</dt><dd>${when(terms.notice_ends_at, now)} <span class="muted">(${org.min_notice} after the deadline was first published)</span>${at(terms.grace_ends_at) === latest ? "" : decides(terms.notice_ends_at)}</dd>
    ${terms.exemption_ends_at ? html`<dt>Exemption ends</dt><dd>${when(terms.exemption_ends_at, now)}${at(terms.grace_ends_at) === latest || at(terms.notice_ends_at) === latest ? "" : decides(terms.exemption_ends_at)}</dd>` : ""}`;
}

function historyNote(h: OrgView["history"][number]): Html {
  // The sweep's note is the kind of disagreement that made it hand the org over, not a person's words.
  if (h.source === "reconcile") return html`<span class="muted">sweep: ${disagreementLabel(h.note)}</span>`;
  return html`${h.note ? html`<q>${h.note}</q>` : ""} ${h.message_id ? html`<span class="muted">${h.message_id}</span>` : ""}`;
}

function bytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

const batchCount = (n: number) => `${n} ${n === 1 ? "batch" : "batches"}`;

/** Batches kept while suspended or while the upstream was down (README, "Parking"); shown once there are any. */
function parkingCard(org: OrgView, now: number): Html | "" {
  const p = org.parking;
  if (p.parked_batches === 0 && p.delivered_batches === 0 && p.expired_batches === 0) return "";
  return html`<section class="card" id="parking">
    <h2>Parked data</h2>
    <p class="muted">Batches kept in R2 while the org was suspended or the backend was down, delivered once it can take them.</p>
    <dl class="facts">
      <dt>Parked</dt><dd>${batchCount(p.parked_batches)}, ${bytes(p.parked_bytes)}</dd>
      <dt>Delivered</dt><dd>${batchCount(p.delivered_batches)}, ${bytes(p.delivered_bytes)}${p.last_delivery_at ? html` <span class="muted">(last ${when(p.last_delivery_at, now)})</span>` : ""}</dd>
      <dt>Expired</dt><dd>${batchCount(p.expired_batches)}, ${bytes(p.expired_bytes)}</dd>
      ${p.refused_batches > 0 ? html`<dt>Refused by the backend</dt><dd>${batchCount(p.refused_batches)}</dd>` : ""}
      <dt>Waiting</dt><dd>${batchCount(p.waiting_batches)}, ${bytes(p.waiting_bytes)}</dd>
    </dl>
  </section>`;
}

/**
 * Usage against the balances Autumn showed at the last read, the limits in force, and what the
 * ledger still owes Autumn (README, "Usage metering"). Shown once metering is on or usage was ever recorded.
 */
function usageCard(org: OrgView, now: number): Html | "" {
  const usage = org.usage;
  if (!usage.metering && usage.features.length === 0) return "";
  const amount = (feature: OrgView["usage"]["features"][number]) => (feature.signals.includes("bytes") ? bytes : (n: number) => n.toLocaleString("en-US"));
  return html`<section class="card" id="usage">
    <h2>Usage and plan limits</h2>
    <p class="muted">Items and bytes accepted, reported to Autumn in reports gathering ${usage.report_interval} of usage each; used and granted are Autumn's, as of its last read. Limits are ${!usage.enforced ? "not enforced (ENFORCE_LIMITS is off): shown, announced, never refused" : org.enforcement_mode === "observe" ? "enforced, but this org is observed: a used-up feature's requests are accepted and counted as would-be refusals (429 plan_limit_reached)" : "enforced: the ingest Worker refuses a used-up feature (429 plan_limit_reached)"}.</p>
    ${scroller(html`<table>
      <thead><tr><th scope="col">Feature</th><th scope="col">Signals</th><th scope="col">Used / granted (Autumn)</th><th scope="col">Resets</th><th scope="col">Limit</th><th scope="col">Received</th><th scope="col">Reported</th><th scope="col">Owed to Autumn</th></tr></thead>
      <tbody>
        ${usage.features.map((f) => {
          const fmt = amount(f);
          const balance = f.balance === null ? html`<span class="muted">no balance</span>` : f.balance.unlimited ? html`${fmt(f.balance.usage)} / unlimited` : html`${fmt(f.balance.usage)} / ${fmt(f.balance.granted)}${f.balance.overage_allowed ? html` <span class="muted">(overage allowed)</span>` : ""}`;
          const limit = f.limit === null ? html`<span class="muted">none</span>` : f.limit.in_force ? html`<span class="error">used up</span> <span class="muted">(limited ${when(f.limit.since, now)})</span>` : html`<span class="muted">reset passed, awaiting a read</span>`;
          const owed = f.backlog === 0 ? "0" : html`${fmt(f.backlog)}${f.in_flight ? html` <span class="muted">(report of ${fmt(f.in_flight.value)}, attempt ${f.in_flight.attempts + 1} ${when(f.in_flight.next_attempt_at, now, true)})</span>` : ""}${f.last_error ? html` <span class="error">${f.last_error}</span>` : ""}`;
          return html`<tr><td><code>${f.feature_id}</code></td><td>${f.signals.join(", ") || html`<span class="muted">not mapped</span>`}</td><td>${balance}</td><td>${f.balance?.next_reset_at ? when(f.balance.next_reset_at, now, true) : "never"}</td><td>${limit}</td><td>${fmt(f.received)}</td><td>${fmt(f.reported)}</td><td>${owed}</td></tr>`;
        })}
      </tbody>
    </table>`)}
  </section>`;
}

export function orgPage(org: OrgView, keys: { key_id: string; created_at: string }[], now: number, flash: Flash): Html {
  const evidence = org.evidence;
  // The deadline that can still fire comes from the org view (publishedDeadline): the policy's one rule.
  // While an exemption is in force, its end and what applies then are shown instead of a running deadline.
  const exemption = exemptionInForce(org);
  return layout(
    org.org_id,
    html`<h1>${org.org_id} ${badge(org.state)}</h1>
      ${flashes(flash)}
      ${org.version === 0 && keys.length === 0
        ? html`<p class="notice">Tollgate has no record of this org: no webhook, no read from Autumn and no ingest key yet. Check the id; an org Tollgate never heard of is served as <code>ok</code>.</p>`
        : ""}
      <section class="card">
        <h2>Why</h2>
        <p class="reason"><code>${org.reason}</code> ${org.reason_message}</p>
        <dl class="facts">
          <dt>In this state since</dt><dd>${when(org.since, now)}</dd>
          ${exemption
            ? html`<dt>Exempt</dt><dd class="exemption">${exemption.until === null
                ? NO_END_EXEMPTION
                : html`until ${utcMinute(exemption.until)} (${when(exemption.until, now)})${exemption.then_deadline
                    ? html`; then the deadline ${utcMinute(exemption.then_deadline)} applies (${when(exemption.then_deadline, now)}), ${AFTER_EXEMPTION}`
                    : ""}`}</dd>`
            : org.published_deadline
              ? html`<dt>Suspension deadline</dt><dd class="deadline">${when(org.published_deadline, now, true)}</dd>`
              : ""}
          ${org.suspended_at ? html`<dt>Suspended at</dt><dd>${when(org.suspended_at, now)}</dd>` : ""}
          ${org.anchor ? html`<dt>Overdue since</dt><dd>${when(org.anchor, now)} (grace period ${org.grace_period})</dd>` : ""}
          ${org.noticed_at ? html`<dt>First seen overdue</dt><dd>${when(org.noticed_at, now)} <span class="muted">(by Tollgate; minimum notice ${org.min_notice})</span></dd>` : ""}
          ${deadlineTerms(org, now)}
          ${org.override
            ? html`<dt>Override</dt><dd>${org.override.action} until ${org.override.until ? when(org.override.until, now) : "cleared"}: “${org.override.note}”</dd>`
            : ""}
          <dt>Enforcement</dt><dd class="enforcement">${org.enforcement
            ? html`<strong>${org.enforcement.mode}</strong> (this org's own override, ${when(org.enforcement.at, now)}): “${org.enforcement.note}”`
            : html`<strong>${org.enforcement_mode}</strong> (the Workers' <code>ENFORCEMENT</code>)`}${org.enforcement_mode === "observe" ? html` <span class="muted">nothing is refused for billing: would-be refusals are only counted and logged</span>` : ""}</dd>
          ${org.autumn_customer_unknown
            ? html`<dt>Autumn</dt><dd class="error">does not know this customer (404 customer_not_found): the state is kept, re-read on the resync schedule. Check the customer, the key and AUTUMN_API_URL.</dd>`
            : ""}
          <dt>Last read from Autumn</dt><dd>${org.last_sync ? html`${when(org.last_sync.at, now)}: ${org.last_sync.ok ? "succeeded" : html`<span class="error">failed: ${org.last_sync.error}</span>`}` : "never"}</dd>
          ${org.follow_up_at
            ? html`<dt>Follow-up read</dt><dd>${when(org.follow_up_at, now)} <span class="muted">(a short re-read after a webhook, in case a payment shows late)</span></dd>`
            : ""}
          <dt>Next check</dt><dd>${when(org.next_check_at, now)}</dd>
        </dl>
      </section>
      ${usageCard(org, now)}
      ${parkingCard(org, now)}
      ${org.dead_letters.length === 0
        ? ""
        : html`<section class="card" id="dead-letters">
            <h2>Undelivered events</h2>
            <p>These events were given up after 3 days of failed deliveries: the receiver never got them, so the customer may not have been told.</p>
            ${scroller(html`<table>
              <thead><tr><th scope="col">Event</th><th scope="col">Id</th><th scope="col">Given up</th><th scope="col">Attempts</th><th scope="col">Last error</th></tr></thead>
              <tbody>
                ${org.dead_letters.map(
                  (d) => html`<tr><td><code>${d.event.type}</code></td><td><code>${d.event.id}</code></td><td>${when(d.at, now)}</td><td>${d.attempts}</td><td>${d.error}</td></tr>`,
                )}
              </tbody>
            </table>`)}
          </section>`}
      <section class="card">
        <h2>Evidence from Autumn</h2>
        ${evidence === null
          ? html`<p class="muted">No successful read yet.</p>`
          : html`<dl class="facts">
              <dt>Customer</dt><dd>${evidence.customer_found ? "found" : "unknown to Autumn (no subscription)"}</dd>
              <dt>Past-due subscriptions</dt><dd>${evidence.past_due_subscriptions.length === 0 ? "none" : evidence.past_due_subscriptions.map((s) => html`<code>${s.plan_id}</code> `)}</dd>
              <dt>Open invoices</dt>
              <dd>
                ${evidence.open_invoices.length === 0
                  ? "none"
                  : html`<ul>
                      ${evidence.open_invoices.map(
                        (i) => html`<li>${i.total} ${i.currency.toUpperCase()} since ${when(i.created_at, now)}
                          ${httpsUrl(i.hosted_invoice_url) ? html` · <a href="${i.hosted_invoice_url}" rel="noreferrer">${i.stripe_id}</a>` : html` · ${i.stripe_id}`}</li>`,
                      )}
                    </ul>`}
              </dd>
              <dt>Ever paid</dt>
              <dd>${evidence.paid_invoice ? html`yes: ${evidence.paid_invoice.stripe_id}, ${evidence.paid_invoice.total} ${evidence.paid_invoice.currency.toUpperCase()}` : evidence.paid_checked === "not_needed" ? "not asked (nothing is past due)" : "never (no paid invoice with money)"}
                ${evidence.paid_checked === "not_needed" ? "" : html`<span class="muted">(checked in ${evidence.paid_checked === "recent_invoices" ? "the 10 recent invoices" : "every paid invoice listed"})</span>`}</dd>
            </dl>`}
      </section>
      <section class="card">
        <h2>Actions</h2>
        <form method="post" action="/admin/org/${encodeURIComponent(org.org_id)}/resync" class="inline">
          <button type="submit">Resync from Autumn now</button>
        </form>
        <form method="post" action="/admin/org/${encodeURIComponent(org.org_id)}/override" class="override">
          <label for="action">Override</label>
          <select id="action" name="action">
            <option value="exempt">exempt: never suspended until the date (or until cleared)</option>
            <option value="unsuspend">unsuspend: lift now, one more grace period</option>
            <option value="suspend">suspend: by hand, whatever billing says</option>
            <option value="clear">clear: back to the policy</option>
          </select>
          <label for="until">Until (UTC, optional: ${UNTIL_PLACEHOLDER})</label>
          <input id="until" name="until" type="text" inputmode="text" autocomplete="off" spellcheck="false" pattern="${UNTIL_PATTERN}" placeholder="${UNTIL_PLACEHOLDER}" title="A UTC date and time to the minute, e.g. 2026-12-31T18:00Z" aria-describedby="until-hint" />
          <p id="until-hint" class="hint muted">In UTC, not your local time: it is now <time data-utc-now datetime="${new Date(now).toISOString()}">${utcMinute(new Date(now).toISOString())}</time>. Empty: until cleared.</p>
          <label for="note">Note (required: who asked and why)</label>
          <textarea id="note" name="note" required rows="2"></textarea>
          <button type="submit">Apply override</button>
        </form>
        <form method="post" action="/admin/org/${encodeURIComponent(org.org_id)}/enforcement" class="override enforcement">
          <label for="mode">Enforcement (a canary against the Workers' <code>ENFORCEMENT</code>)</label>
          <select id="mode" name="mode">
            <option value="enforce">enforce: refuse this org (402, 429) even while the Workers observe</option>
            <option value="observe">observe: accept and count what this org would be refused</option>
            <option value="default">default: back to the Workers' ENFORCEMENT</option>
          </select>
          <label for="enforcement-note">Note (required: who asked and why)</label>
          <textarea id="enforcement-note" name="note" required rows="2"></textarea>
          <button type="submit">Set enforcement</button>
        </form>
      </section>
      <section class="card" id="activity">
        <h2>The last 30 days</h2>
        <p class="muted">What became of this org's ${org.activity.unit} each hour, as the ingest Worker counted them, with the periods it was overdue, suspended, exempt or limited shaded behind.</p>
        ${activityChart({ points: org.activity.hours.map((h) => ({ ...h, hour: Date.parse(h.hour) })), history: org.history, now, unit: org.activity.unit })}
        ${org.activity.incomplete ? html`<p class="error" data-activity-incomplete>Part of this org's activity could not be read just now (its index shard did not answer): the chart shows less than was counted. Reload to try again.</p>` : ""}
      </section>
      <section class="card">
        <h2>Timeline</h2>
        ${org.history.length === 0
          ? html`<p class="muted">No transition, override or plan limit yet.</p>`
          : html`<ol class="timeline">
              ${org.history.map(
                (h) => html`<li class="${h.kind}">
                  <time class="absolute" datetime="${h.at ?? ""}">${h.at}</time>
                  <span class="source">${h.source}</span>
                  ${h.kind === "override" && h.enforcement
                    ? html`<strong>enforcement ${h.enforcement}</strong>`
                    : h.kind === "override"
                    ? html`<strong>override ${h.override?.action}</strong>${h.override?.until ? html` until ${h.override.until}` : ""}`
                    : h.limit
                      ? html`<strong>${h.kind === "limit_reached" ? "plan limit reached" : "plan limit cleared"}</strong> <code>${h.limit.feature_id}</code> ${h.limit.usage} / ${h.limit.granted}${h.limit.reset_at ? html` until ${h.limit.reset_at}` : ""}`
                      : html`${badge(h.from)} → ${badge(h.to)} <code>${h.reason}</code>`}
                  ${historyNote(h)}
                </li>`,
              )}
            </ol>`}
      </section>
      <section class="card">
        <h2>Ingest keys</h2>
        ${keys.length === 0
          ? html`<p class="muted">No active key.</p>`
          : html`<ul>${keys.map((k) => html`<li><code>${k.key_id}</code> created ${when(k.created_at, now)}</li>`)}</ul>`}
      </section>`,
  );
}
