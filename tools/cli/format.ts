import type { OrgView } from "../../src/billing/org-view.ts";
import { relativeTime } from "../../src/shared/relative-time.ts";

function ago(iso: string | null, now: number): string {
  return iso === null ? "—" : `${iso} (${relativeTime(iso, now)})`;
}

/** An org as a support person reads it: state, why, what happens next, and the timeline. */
export function formatOrg(org: OrgView, now = Date.now()): string {
  const lines = [
    `${org.org_id}: ${org.state.toUpperCase()} since ${ago(org.since, now)}`,
    `  why:        ${org.reason} — ${org.reason_message}`,
  ];
  if (org.anchor) lines.push(`  overdue:    since ${ago(org.anchor, now)} (grace period ${org.grace_period})`);
  if (org.suspend_at && org.state === "overdue") lines.push(`  deadline:   ${ago(org.suspend_at, now)}`);
  if (org.suspended_at) lines.push(`  suspended:  ${ago(org.suspended_at, now)}`);
  if (org.override) lines.push(`  override:   ${org.override.action} until ${org.override.until ?? "cleared"} — "${org.override.note}"`);
  if (org.evidence) {
    const e = org.evidence;
    const open = e.open_invoices.map((i) => `${i.stripe_id} ${i.total} ${i.currency}${i.hosted_invoice_url ? ` ${i.hosted_invoice_url}` : ""}`).join(", ");
    lines.push(`  evidence:   past-due subscriptions: ${e.past_due_subscriptions.map((s) => s.plan_id).join(", ") || "none"}; open invoices: ${open || "none"}`);
    lines.push(`              has paid: ${e.paid_invoice ? `yes (${e.paid_invoice.stripe_id}, ${e.paid_invoice.total} ${e.paid_invoice.currency})` : "never"} [checked via ${e.paid_checked}]`);
  }
  if (org.last_sync) lines.push(`  last sync:  ${ago(org.last_sync.at, now)} ${org.last_sync.ok ? "ok" : `FAILED: ${org.last_sync.error}`}`);
  lines.push(`  next check: ${ago(org.next_check_at, now)}`);
  lines.push(`  mirror:     version ${org.mirror.version}${org.mirror.in_sync ? "" : " (behind, being repaired)"}`);
  lines.push("", "History (newest first):");
  if (org.history.length === 0) lines.push("  (no transitions yet)");
  for (const h of org.history) {
    const what = h.kind === "override" ? `override ${h.override?.action}${h.override?.until ? ` until ${h.override.until}` : ""}` : `${h.from} → ${h.to} (${h.reason})`;
    const ref = h.note ? ` — "${h.note}"` : h.message_id ? ` [${h.message_id}]` : "";
    lines.push(`  ${h.at}  ${h.source.padEnd(7)} ${what}${ref}`);
  }
  return lines.join("\n");
}
