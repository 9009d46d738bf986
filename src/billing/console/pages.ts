import { relativeTime } from "../../shared/relative-time.ts";
import type { IndexEntryView, OrgView } from "../org-view.ts";
import { html, type Html } from "./html.ts";

/**
 * The console's pages, rendered on the server so everything reads without JavaScript;
 * `console.js` only adds live countdowns.
 */
const STATE_LABEL = { ok: "OK", overdue: "Overdue", suspended: "Suspended" } as const;

function layout(title: string, body: Html, signedIn = true): Html {
  return html`<html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>${title} · Tollgate</title>
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
              <form method="post" action="/admin/logout"><button type="submit" class="link">Sign out</button></form>`
          : ""}
      </header>
      <main>${body}</main>
    </body>
  </html>`;
}

export function when(iso: string | null, now: number, countdown = false): Html {
  if (iso === null) return html`<span class="muted">—</span>`;
  return html`<time datetime="${iso}" ${countdown ? html`data-countdown` : ""} title="${iso}">${relativeTime(iso, now)}</time>`;
}

function badge(state: keyof typeof STATE_LABEL): Html {
  return html`<span class="badge ${state}">${STATE_LABEL[state]}</span>`;
}

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

type Overview = { counts: Record<string, number>; due_soon: IndexEntryView[]; recently_suspended: IndexEntryView[]; recently_restored: IndexEntryView[] };

function table(rows: IndexEntryView[], columns: [string, (row: IndexEntryView) => Html | string][], empty: string): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return html`<table>
    <thead><tr>${columns.map(([title]) => html`<th scope="col">${title}</th>`)}</tr></thead>
    <tbody>${rows.map((row) => html`<tr>${columns.map(([, cell]) => html`<td>${cell(row)}</td>`)}</tr>`)}</tbody>
  </table>`;
}

export function overviewPage(overview: Overview, reasons: Record<string, string>, now: number): Html {
  return layout(
    "Overview",
    html`<h1>Overview</h1>
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
      </section>`,
  );
}

export function listPage(state: "ok" | "overdue" | "suspended", orgs: IndexEntryView[], nextCursor: string | null, now: number): Html {
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
        ${nextCursor ? html`<p><a href="/admin/list/${state}?cursor=${nextCursor}">Next page</a></p>` : ""}
      </section>`,
  );
}

export function orgPage(org: OrgView, keys: { key_id: string; created_at: string }[], now: number, flash: { error?: string; done?: string }): Html {
  const evidence = org.evidence;
  const liveDeadline = org.state === "overdue" && (org.reason === "in_grace_period" || org.reason === "grace_elapsed_awaiting_autumn");
  return layout(
    org.org_id,
    html`<h1>${org.org_id} ${badge(org.state)}</h1>
      ${flash.error ? html`<p class="error" role="alert">${flash.error}</p>` : ""}
      ${flash.done ? html`<p class="done" role="status">${flash.done}</p>` : ""}
      <section class="card">
        <h2>Why</h2>
        <p class="reason"><code>${org.reason}</code> ${org.reason_message}</p>
        <dl class="facts">
          <dt>In this state since</dt><dd>${when(org.since, now)}</dd>
          ${liveDeadline ? html`<dt>Suspension deadline</dt><dd class="deadline">${when(org.suspend_at, now, true)}</dd>` : ""}
          ${org.suspended_at ? html`<dt>Suspended at</dt><dd>${when(org.suspended_at, now)}</dd>` : ""}
          ${org.anchor ? html`<dt>Overdue since</dt><dd>${when(org.anchor, now)} (grace period ${org.grace_period})</dd>` : ""}
          ${org.override
            ? html`<dt>Override</dt><dd>${org.override.action} until ${org.override.until ? when(org.override.until, now) : "cleared"}: “${org.override.note}”</dd>`
            : ""}
          <dt>Last read from Autumn</dt><dd>${org.last_sync ? html`${when(org.last_sync.at, now)} ${org.last_sync.ok ? "ok" : html`<span class="error">failed: ${org.last_sync.error}</span>`}` : "never"}</dd>
          <dt>Next check</dt><dd>${when(org.next_check_at, now)}</dd>
        </dl>
      </section>
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
                          ${i.hosted_invoice_url ? html` · <a href="${i.hosted_invoice_url}" rel="noreferrer">${i.stripe_id}</a>` : html` · ${i.stripe_id}`}</li>`,
                      )}
                    </ul>`}
              </dd>
              <dt>Ever paid</dt>
              <dd>${evidence.paid_invoice ? html`yes: ${evidence.paid_invoice.stripe_id}, ${evidence.paid_invoice.total} ${evidence.paid_invoice.currency.toUpperCase()}` : "never (no paid invoice with money)"}
                <span class="muted">(checked via ${evidence.paid_checked.replace("_", " ")})</span></dd>
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
          <label for="until">Until (UTC, optional)</label>
          <input id="until" name="until" type="datetime-local" />
          <label for="note">Note (required: who asked and why)</label>
          <textarea id="note" name="note" required rows="2"></textarea>
          <button type="submit">Apply override</button>
        </form>
      </section>
      <section class="card">
        <h2>Timeline</h2>
        ${org.history.length === 0
          ? html`<p class="muted">No transition or override yet.</p>`
          : html`<ol class="timeline">
              ${org.history.map(
                (h) => html`<li class="${h.kind}">
                  <time datetime="${h.at ?? ""}">${h.at}</time>
                  <span class="source">${h.source}</span>
                  ${h.kind === "override"
                    ? html`<strong>override ${h.override?.action}</strong>${h.override?.until ? html` until ${h.override.until}` : ""}`
                    : html`${badge(h.from)} → ${badge(h.to)} <code>${h.reason}</code>`}
                  ${h.note ? html`<q>${h.note}</q>` : ""} ${h.message_id ? html`<span class="muted">${h.message_id}</span>` : ""}
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
