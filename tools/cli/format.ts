import { AFTER_EXEMPTION, DISAGREEMENT_LABELS, disagreementLabel, exemptionInForce, NO_END_EXEMPTION, utcMinute } from "../../src/billing/console/words.ts";
import type { IndexEntryView, OrgView } from "../../src/billing/org/view.ts";
import type { SweepView } from "../../src/billing/reconcile/sweep-record.ts";
import type { OrgStatus } from "../../src/ingest/status/answer.ts";
import { formatDuration } from "../../src/shared/duration.ts";
import { relativeTime } from "../../src/shared/relative-time.ts";

function ago(iso: string | null, now: number): string {
  return iso === null ? "—" : `${iso} (${relativeTime(iso, now)})`;
}

/**
 * The deadline and the terms it is the latest of; "← the deadline" marks the one that decides.
 * While an exemption is in force, its end and the deadline that applies then instead: that
 * deadline is not running yet. The deadline is the org view's (publishedDeadline), not recomputed.
 */
function deadlineLines(org: OrgView, now: number): string[] {
  const lines: string[] = [];
  const exemption = exemptionInForce(org);
  if (exemption && exemption.until === null) lines.push(`  exempt:     ${NO_END_EXEMPTION}`);
  else if (exemption) {
    const then = exemption.then_deadline ? `; then the deadline ${utcMinute(exemption.then_deadline)} applies (${relativeTime(exemption.then_deadline, now)}), the later of:` : "";
    lines.push(`  exempt:     until ${utcMinute(exemption.until!)} (${relativeTime(exemption.until!, now)})${then}`);
  } else if (org.published_deadline) lines.push(`  deadline:   ${ago(org.published_deadline, now)}, the later of:`);
  else if (org.deadline_terms) lines.push("  deadline terms:");
  if (org.deadline_terms) {
    const { grace_ends_at, notice_ends_at, exemption_ends_at } = org.deadline_terms;
    const at = (iso: string | null) => (iso === null ? -Infinity : Date.parse(iso));
    const latest = Math.max(at(grace_ends_at), at(notice_ends_at), at(exemption_ends_at));
    const decides = at(grace_ends_at) === latest ? "grace" : at(notice_ends_at) === latest ? "notice" : "exemption";
    const mark = exemption ? `  ← applies after the exemption (${AFTER_EXEMPTION})` : "  ← the deadline";
    lines.push(`    grace period ends    ${ago(grace_ends_at, now)}${decides === "grace" ? mark : ""}`);
    lines.push(`    minimum notice ends  ${ago(notice_ends_at, now)}${decides === "notice" ? mark : ""}`);
    if (exemption_ends_at) lines.push(`    exemption ends       ${ago(exemption_ends_at, now)}${decides === "exemption" ? mark : ""}`);
  }
  return lines;
}

/** An org as a support person reads it: state, why, what happens next, and the timeline. */
export function formatOrg(org: OrgView, now = Date.now()): string {
  const lines = [
    `${org.org_id}: ${org.state.toUpperCase()} since ${ago(org.since, now)}`,
    `  why:        ${org.reason} — ${org.reason_message}`,
  ];
  if (org.anchor) lines.push(`  clock:      past due since ${ago(org.anchor, now)} (the anchor; grace period ${org.grace_period})`);
  if (org.noticed_at) lines.push(`  first seen: overdue by Tollgate ${ago(org.noticed_at, now)} (minimum notice ${org.min_notice})`);
  lines.push(...deadlineLines(org, now));
  if (org.suspended_at) lines.push(`  suspended:  ${ago(org.suspended_at, now)}`);
  if (org.override) lines.push(`  override:   ${org.override.action} until ${org.override.until ?? "cleared"} — "${org.override.note}"`);
  if (org.enforcement) lines.push(`  enforcement: ${org.enforcement.mode} (this org's own override, since ${ago(org.enforcement.at, now)}) — "${org.enforcement.note}"`);
  else if (org.enforcement_mode) lines.push(`  enforcement: ${org.enforcement_mode} (the Workers' ENFORCEMENT)${org.enforcement_mode === "observe" ? ": nothing is refused for billing, would-be refusals are only counted" : ""}`);
  if (org.evidence) {
    const e = org.evidence;
    const open = e.open_invoices.map((i) => `${i.stripe_id} ${i.total} ${i.currency}${i.hosted_invoice_url ? ` ${i.hosted_invoice_url}` : ""}`).join(", ");
    if (!e.customer_found) lines.push("  evidence:   Autumn has no such customer (so nothing is past due)");
    else lines.push(`  evidence:   past-due subscriptions: ${e.past_due_subscriptions.map((s) => s.plan_id).join(", ") || "none"}; open invoices: ${open || "none"}`);
    const checked = { recent_invoices: " (in the 10 recent invoices)", invoices_list: " (every paid invoice listed)", not_needed: "" }[e.paid_checked];
    if (e.customer_found) lines.push(`              has paid: ${e.paid_invoice ? `yes (${e.paid_invoice.stripe_id}, ${e.paid_invoice.total} ${e.paid_invoice.currency})` : e.paid_checked === "not_needed" ? "not asked (nothing past due)" : "never"}${checked}`);
  }
  if (org.autumn_customer_unknown) lines.push("  AUTUMN DOES NOT KNOW THIS CUSTOMER (404 customer_not_found): the state is kept, re-read on the resync schedule; check the customer, the key and AUTUMN_API_URL");
  if (org.last_sync) lines.push(`  last sync:  ${ago(org.last_sync.at, now)} ${org.last_sync.ok ? "succeeded" : `FAILED: ${org.last_sync.error}`}`);
  if (org.follow_up_at) lines.push(`  follow-up:  ${ago(org.follow_up_at, now)} (a short re-read after a webhook, in case a payment shows late)`);
  lines.push(`  next check: ${ago(org.next_check_at, now)}`);
  lines.push(`  mirror:     version ${org.mirror.version}${org.mirror.in_sync ? "" : " (behind, being repaired)"}`);
  const p = org.parking;
  if (p && p.parked_batches > 0) {
    lines.push(`  parked:     ${p.parked_batches} ${p.parked_batches === 1 ? "batch" : "batches"} (${p.parked_bytes} bytes); delivered ${p.delivered_batches}, expired ${p.expired_batches}, refused ${p.refused_batches}; waiting ${p.waiting_batches} (${p.waiting_bytes} bytes)`);
  }
  const usage = org.usage;
  if (usage && (usage.metering || usage.features.length > 0)) {
    lines.push(`  usage:      limits ${usage.enforced ? "enforced" : "not enforced"}; each report to Autumn gathers ${usage.report_interval} of usage; "used" is Autumn's, as of its last read`);
    for (const f of usage.features) {
      const balance = f.balance === null ? "no balance" : f.balance.unlimited ? `${f.balance.usage} used (Autumn), unlimited` : `${f.balance.usage}/${f.balance.granted} used (Autumn)${f.balance.overage_allowed ? ", overage allowed" : ""}`;
      const limit = f.limit ? (f.limit.in_force ? `, LIMITED until ${f.limit.reset_at ?? "a plan change"}` : ", limit past its reset") : "";
      const owed = f.backlog > 0 ? `; owed to Autumn ${f.backlog}${f.last_error ? ` (${f.last_error})` : ""}` : "";
      lines.push(`    ${f.feature_id} (${f.signals.join(", ") || "not mapped"}): ${balance}${limit}; received ${f.received}, reported ${f.reported}${owed}`);
    }
  }
  lines.push("", "History (newest first):");
  if (org.history.length === 0) lines.push("  (no transitions yet)");
  for (const h of org.history) {
    const what =
      h.kind === "override" && h.enforcement
        ? `enforcement ${h.enforcement}`
        : h.kind === "override"
        ? `override ${h.override?.action}${h.override?.until ? ` until ${h.override.until}` : ""}`
        : h.limit
          ? `${h.kind === "limit_reached" ? "limit reached" : "limit cleared"}: ${h.limit.feature_id} ${h.limit.usage}/${h.limit.granted}${h.limit.reset_at ? ` until ${h.limit.reset_at}` : ""}`
          : `${h.from} → ${h.to} (${h.reason})`;
    // The sweep's note is the kind of disagreement that made it hand the org over, not a person's words.
    const ref = h.source === "reconcile" ? ` — sweep: ${disagreementLabel(h.note)}` : h.note ? ` — "${h.note}"` : h.message_id ? ` [${h.message_id}]` : "";
    lines.push(`  ${h.at}  ${h.source.padEnd(9)} ${what}${ref}`);
  }
  if (org.dead_letters.length > 0) {
    lines.push("", "Undelivered events (given up after 3 days; the receiver never got them):");
    for (const letter of org.dead_letters) lines.push(`  ${formatDeadLetter(letter)}`);
    // The view carries the newest page only (issue 23).
    if (org.dead_letters_count > org.dead_letters.length) lines.push(`  (newest ${org.dead_letters.length} of ${org.dead_letters_count}: \`tollgate dead-letters ${org.org_id} --all\` lists them all)`);
  }
  return lines.join("\n");
}

/** One undelivered event, as `org` and `dead-letters` list them. */
export function formatDeadLetter(letter: Pick<OrgView["dead_letters"][number], "at" | "attempts" | "error"> & { event: { type: string; id: string } }): string {
  return `${letter.at}  ${letter.event.type} ${letter.event.id} after ${letter.attempts} attempts: ${letter.error}`;
}

/** One org of an index page (`tollgate orgs`): its state, reason and the date that matters for it. */
export function formatIndexEntry(entry: IndexEntryView): string {
  const when = entry.state === "suspended" ? `suspended ${entry.suspended_at ?? "—"}` : entry.suspend_at ? `deadline ${entry.suspend_at}` : "";
  return [entry.org_id, entry.state, entry.reason, when].filter(Boolean).join("  ");
}

function handedOver(sweep: SweepView): string {
  const counts = sweep.orgs_handed_over;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  if (total === 0) return "none";
  const kinds = (Object.keys(DISAGREEMENT_LABELS) as (keyof typeof counts)[]).filter((kind) => counts[kind] > 0).map((kind) => `${counts[kind]} ${DISAGREEMENT_LABELS[kind]}`);
  return `${total} (${kinds.join("; ")})`;
}

function duration(fromIso: string | null, toIso: string): string {
  const ms = Math.max(0, Date.parse(toIso) - Date.parse(fromIso ?? toIso));
  return formatDuration(ms >= 1_000 ? Math.round(ms / 1_000) * 1_000 : ms);
}

/** A reconciliation sweep, the way `tollgate reconcile` prints it. */
export function formatSweep(sweep: SweepView, now = Date.now()): string {
  const lines = [`sweep ${sweep.id} (${sweep.trigger}): ${sweep.status.toUpperCase()}`];
  lines.push(`  started:      ${ago(sweep.started_at, now)}`);
  if (sweep.finished_at) lines.push(`  finished:     ${ago(sweep.finished_at, now)}, after ${duration(sweep.started_at, sweep.finished_at)}`);
  else if (sweep.status === "running") lines.push(`  now:          ${sweep.phase === "missing" ? "checking orgs missing from the listing" : `page ${sweep.pages + 1} next`}${retrying(sweep, now)}`);
  lines.push(`  pages:        ${sweep.pages}`);
  lines.push(`  customers:    ${sweep.customers_seen} seen`);
  lines.push(`  handed over:  ${handedOver(sweep)}${sweep.hand_over_failures > 0 ? `; ${sweep.hand_over_failures} could not be handed over` : ""}`);
  if (sweep.status === "held") {
    const w = sweep.would_restore;
    lines.push(`  HELD:         would move ${w.no_longer_past_due + w.missing_from_autumn + w.limit_lifted} orgs toward ok (${w.no_longer_past_due} no longer past due, ${w.missing_from_autumn} missing from Autumn, ${w.limit_lifted} limits lifted) of ${sweep.restricted_held} restricted; more than ${sweep.restore_allowance} needs a confirmation`);
    for (const h of sweep.would_restore_sample) lines.push(`    ${h.org_id}  ${h.kind}`);
    lines.push(`  confirm with: tollgate reconcile --confirm ${sweep.id}   (the next sweep discards it otherwise)`);
  }
  if (sweep.still_missing > 0) lines.push(`  still missing: ${sweep.still_missing} ${sweep.still_missing === 1 ? "org" : "orgs"} Autumn did not list last time either (left to their objects' resync)`);
  lines.push(`  calls:        ${sweep.autumn_calls} to Autumn, ${sweep.object_calls} to org objects`);
  lines.push(`  errors:       ${sweep.error_count}${sweep.error_count > sweep.errors.length ? ` (newest ${sweep.errors.length} below)` : ""}`);
  for (const error of sweep.errors) lines.push(`    ${error.at}  page ${error.page}${error.org_id ? ` ${error.org_id}` : ""}: ${error.message}`);
  return lines.join("\n");
}

function retrying(sweep: SweepView, now: number): string {
  if (sweep.page_attempts === 0 || sweep.next_page_at === null) return "";
  return `, retrying ${relativeTime(sweep.next_page_at, now)} (failed ${sweep.page_attempts}× so far)`;
}

/** One line of progress while `tollgate reconcile --wait` polls. */
export function formatSweepProgress(sweep: SweepView, now = Date.now()): string {
  const total = Object.values(sweep.orgs_handed_over).reduce((a, b) => a + b, 0);
  const errors = sweep.error_count === 0 ? "" : ` · ${sweep.error_count} error${sweep.error_count === 1 ? "" : "s"}`;
  return `  ${sweep.pages} page${sweep.pages === 1 ? "" : "s"} · ${sweep.customers_seen} customers seen · ${total} handed over${errors}${retrying(sweep, now)}`;
}

/** `tollgate status`: the org's standing as its own engineers read it (GET /v1/status on the ingest Worker). */
export function formatStatus(status: OrgStatus, now = Date.now()): string {
  const lines = [`${status.org_id}: ${status.state.toUpperCase()}${status.since ? ` since ${ago(status.since, now)}` : ""}`, `  why:         ${status.reason}`];
  if (status.deadline) lines.push(`  deadline:    ${ago(status.deadline, now)} (ingestion stops then unless paid)`);
  if (status.suspended_at) lines.push(`  suspended:   ${ago(status.suspended_at, now)}`);
  if (status.pay_url) lines.push(`  pay at:      ${status.pay_url}`);
  status.limits.forEach((limit, i) => {
    const until = limit.reset_at === null ? "until the plan changes" : `until ${ago(limit.reset_at, now)}`;
    lines.push(`  ${i === 0 ? "limits:     " : "           "} ${limit.feature_id} (${limit.signals.join(", ")}) used up ${until}; ${limit.enforced ? "refused (429)" : "not enforced"}`);
  });
  if (status.limits.length > 0 && status.upgrade_url) lines.push(`  upgrade at:  ${status.upgrade_url}`);
  const { batches, bytes, updated_at } = status.parked;
  lines.push(`  parked:      ${batches} ${batches === 1 ? "batch" : "batches"} (${bytes} bytes) waiting${updated_at ? `, as of ${ago(updated_at, now)}` : ""}`);
  lines.push(`  enforcement: ${status.enforcement}`);
  return lines.join("\n");
}
