import { describe, expect, it } from "vitest";
import { factsFromCustomer, payUrlOf, type BillingFacts } from "../../src/billing/autumn/answers.ts";
import type { AutumnCustomer, AutumnInvoice } from "../../src/billing/autumn/answers.ts";
import { decide, newOrgRecord, type Override, type PolicyInput } from "../../src/billing/org/record.ts";
import { eventsFor } from "../../src/billing/org/events.ts";

const DAY = 86_400_000;
const GRACE = 3 * DAY;
// The grace period alone; the minimum notice has tests of its own below.
const config = { gracePeriodMs: GRACE, minNoticeMs: 0 };
const T0 = Date.UTC(2026, 10, 1);

function invoice(status: string, total: number, created_at: number, stripe_id = `in_${status}_${total}_${created_at}`): AutumnInvoice {
  return { stripe_id, plan_ids: ["pro"], status, total, currency: "usd", created_at, hosted_invoice_url: null };
}

function customer(opts: { pastDue?: boolean; addOnPastDue?: boolean; invoices?: AutumnInvoice[] } = {}): AutumnCustomer {
  const subscriptions = [{ id: "sub_base", plan_id: "pro", add_on: false, status: "active", past_due: opts.pastDue ?? false }];
  if (opts.addOnPastDue) subscriptions.push({ id: "sub_addon", plan_id: "extra", add_on: true, status: "active", past_due: true });
  return { id: "org_a", subscriptions, invoices: opts.invoices ?? [] };
}

function facts(c: AutumnCustomer | null, lookup?: AutumnInvoice | null): BillingFacts {
  return factsFromCustomer(c, lookup);
}

const fresh: PolicyInput = newOrgRecord("org_a", T0);
const pastDueNeverPaid = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0)] }), null);

describe("facts from Autumn", () => {
  it("counts only base subscriptions as past due", () => {
    expect(facts(customer({ addOnPastDue: true })).pastDue).toBe(false);
    expect(facts(customer({ pastDue: true }), null).pastDue).toBe(true);
  });

  it("does not count a $0 paid trial invoice as having paid", () => {
    const f = facts(customer({ pastDue: true, invoices: [invoice("paid", 0, T0 - DAY), invoice("open", 29.99, T0)] }), null);
    expect(f.hasPaid).toBe(false);
  });

  it("counts a paid invoice with money among the recent ones", () => {
    const f = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0), invoice("paid", 29.99, T0 - 30 * DAY)] }));
    expect(f.hasPaid).toBe(true);
    expect(f.evidence.paid_checked).toBe("recent_invoices");
  });

  it("counts an older paid invoice found by invoices.list behind 10 unpaid recent ones", () => {
    const recent = Array.from({ length: 10 }, (_, i) => invoice("open", 29.99, T0 - i * DAY));
    const old = invoice("paid", 29.99, T0 - 400 * DAY, "in_old_paid");
    const f = facts(customer({ pastDue: true, invoices: recent }), old);
    expect(f.hasPaid).toBe(true);
    expect(f.evidence.paid_invoice?.stripe_id).toBe("in_old_paid");
    expect(f.evidence.paid_checked).toBe("invoices_list");
  });

  it("takes the oldest open invoice's creation time", () => {
    const f = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0), invoice("open", 29.99, T0 - 5 * DAY), invoice("void", 1, T0 - 9 * DAY)] }), null);
    expect(f.oldestOpenInvoiceAt).toBe(T0 - 5 * DAY);
  });

  it("treats a customer Autumn does not know as not past due", () => {
    expect(facts(null)).toMatchObject({ pastDue: false, hasPaid: false, evidence: { customer_found: false } });
  });
});

describe("the suspension policy", () => {
  it("ok → overdue when a sync first sees past due, anchored at that moment", () => {
    const f = facts(customer({ pastDue: true }), null);
    expect(decide(fresh, f, T0, config)).toMatchObject({ state: "overdue", reason: "in_grace_period", anchor: T0, suspend_at: T0 + GRACE, since: T0 });
  });

  it("anchors at an older open invoice when there is one", () => {
    const f = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - 2 * DAY)] }), null);
    expect(decide(fresh, f, T0, config)).toMatchObject({ state: "overdue", anchor: T0 - 2 * DAY, suspend_at: T0 + DAY });
  });

  it("suspends at once when the oldest open invoice is already older than the grace period", () => {
    const f = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - GRACE)] }), null);
    expect(decide(fresh, f, T0, config)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: T0 });
  });

  it("never moves the anchor later", () => {
    const overdue = decide(fresh, pastDueNeverPaid, T0, config);
    const later = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 + DAY)] }), null);
    expect(decide({ ...fresh, ...overdue }, later, T0 + 2 * DAY, config).anchor).toBe(T0);
  });

  describe("the grace boundary", () => {
    const overdue = { ...fresh, ...decide(fresh, pastDueNeverPaid, T0, config) };
    it("stays overdue 1 ms before anchor + grace", () => {
      expect(decide(overdue, pastDueNeverPaid, T0 + GRACE - 1, config)).toMatchObject({ state: "overdue", reason: "in_grace_period" });
    });
    it("suspends exactly at anchor + grace", () => {
      expect(decide(overdue, pastDueNeverPaid, T0 + GRACE, config)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: T0 + GRACE, since: T0 + GRACE });
    });
    it("follows the configured grace period", () => {
      expect(decide(overdue, pastDueNeverPaid, T0 + 5_000, { gracePeriodMs: 5_000, minNoticeMs: 0 }).state).toBe("suspended");
      expect(decide(overdue, pastDueNeverPaid, T0 + 4_999, { gracePeriodMs: 5_000, minNoticeMs: 0 }).state).toBe("overdue");
    });
    it("does not suspend without a fresh read, and says it is waiting for one", () => {
      expect(decide(overdue, null, T0 + GRACE + 1, config)).toMatchObject({ state: "overdue", reason: "grace_elapsed_awaiting_autumn" });
    });
  });

  it("suspends an org whose only paid invoice is a $0 trial", () => {
    const f = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - GRACE), invoice("paid", 0, T0 - 20 * DAY)] }), null);
    expect(decide(fresh, f, T0, config).state).toBe("suspended");
  });

  it("leaves a lapsed customer (paid money before) overdue, with no deadline", () => {
    const f = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - 10 * DAY), invoice("paid", 29.99, T0 - 40 * DAY)] }));
    expect(decide(fresh, f, T0, config)).toMatchObject({ state: "overdue", reason: "lapsed_customer", lapsed: true, suspend_at: null });
  });

  it("lifts a suspension once the org turns out to have paid money", () => {
    const suspended = { ...fresh, ...decide(fresh, facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - GRACE)] }), null), T0, config) };
    const paidOld = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - GRACE)] }), invoice("paid", 5, T0 - 100 * DAY));
    expect(decide(suspended, paidOld, T0 + 1, config)).toMatchObject({ state: "overdue", reason: "lapsed_customer", suspended_at: null });
  });

  it("ignores a past-due add-on", () => {
    expect(decide(fresh, facts(customer({ addOnPastDue: true })), T0, config)).toMatchObject({ state: "ok", reason: "not_past_due", anchor: null });
  });

  it.each(["overdue", "suspended"] as const)("%s → ok when a sync no longer sees past due, and the clock resets", (state) => {
    const prev: PolicyInput = { ...fresh, state, anchor: T0 - GRACE, suspended_at: state === "suspended" ? T0 : null, reason: "in_grace_period" };
    expect(decide(prev, facts(customer()), T0 + DAY, config)).toMatchObject({ state: "ok", reason: "not_past_due", anchor: null, suspended_at: null, since: T0 + DAY });
  });

  it("keeps a confirmed suspension when Autumn cannot be read", () => {
    const suspended = { ...fresh, ...decide(fresh, facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - GRACE)] }), null), T0, config) };
    expect(decide(suspended, null, T0 + DAY, config)).toMatchObject({ state: "suspended", suspended_at: T0, since: T0 });
  });

  it("keeps an ok org ok when Autumn cannot be read", () => {
    expect(decide(fresh, null, T0, config)).toMatchObject({ state: "ok" });
  });

  describe("overrides", () => {
    const override = (action: Override["action"], until: number | null): Override => ({ action, until, note: "support ticket 42", at: T0 });
    const dueNow = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - GRACE)] }), null);

    it("an exemption prevents suspension until it ends", () => {
      const exempt = { ...fresh, override: override("exempt", T0 + DAY) };
      expect(decide(exempt, dueNow, T0, config)).toMatchObject({ state: "overdue", reason: "exempt" });
      expect(decide(exempt, dueNow, T0 + DAY - 1, config).state).toBe("overdue");
      expect(decide(exempt, dueNow, T0 + DAY, config).state).toBe("suspended");
    });

    it("an exemption without end lasts until cleared", () => {
      expect(decide({ ...fresh, override: override("exempt", null) }, dueNow, T0 + 365 * DAY, config).state).toBe("overdue");
    });

    it("a manual suspension wins over a paying org, even without a fresh read", () => {
      const manual = { ...fresh, override: override("suspend", null) };
      expect(decide(manual, facts(customer()), T0, config)).toMatchObject({ state: "suspended", reason: "manual_suspend" });
      expect(decide(manual, null, T0, config)).toMatchObject({ state: "suspended", reason: "manual_suspend" });
    });

    it("a manual suspension ends at its until", () => {
      const manual = { ...fresh, state: "suspended" as const, suspended_at: T0, override: override("suspend", T0 + DAY) };
      expect(decide(manual, facts(customer()), T0 + DAY, config)).toMatchObject({ state: "ok", suspended_at: null });
    });
  });
});

describe("records from before the minimum notice", () => {
  const notice = { gracePeriodMs: GRACE, minNoticeMs: DAY };
  it("an overdue org gets its notice from when it entered overdue, whatever its old anchor", () => {
    // An old anchor from another plan's invoice, 2.5 days ago; overdue since an hour ago; no noticed_at yet.
    const legacy: PolicyInput = { ...fresh, state: "overdue", reason: "in_grace_period", since: T0 - 3_600_000, anchor: T0 - 2.5 * DAY, noticed_at: null };
    const decision = decide(legacy, pastDueNeverPaid, T0, notice);
    expect(decision).toMatchObject({ state: "overdue", noticed_at: T0 - 3_600_000, suspend_at: T0 - 3_600_000 + DAY });
  });

  it("a suspended org stays suspended (its notice counts from its anchor)", () => {
    const legacy: PolicyInput = { ...fresh, state: "suspended", reason: "grace_elapsed_never_paid", since: T0 - DAY, anchor: T0 - 10 * DAY, noticed_at: null, suspended_at: T0 - DAY };
    expect(decide(legacy, pastDueNeverPaid, T0, notice)).toMatchObject({ state: "suspended", noticed_at: T0 - 10 * DAY });
  });
});

describe("the pay link", () => {
  it("is the oldest open invoice's hosted page that is https, passing over other links", () => {
    const open = [
      { created_at: T0 - 3 * DAY, hosted_invoice_url: "http://pay.example/old" },
      { created_at: T0 - 2 * DAY, hosted_invoice_url: "https://pay.example/next" },
      { created_at: T0 - 4 * DAY, hosted_invoice_url: null },
      { created_at: T0 - DAY, hosted_invoice_url: "https://pay.example/newest" },
    ];
    expect(payUrlOf(open)).toBe("https://pay.example/next");
    expect(payUrlOf([{ created_at: T0, hosted_invoice_url: "javascript:alert(1)" }])).toBeNull();
  });
});

describe("the suspension warning", () => {
  it("goes out once per overdue period, even when a later read moves the anchor earlier", () => {
    const warned = { ...newOrgRecord("org_w", T0), state: "overdue" as const, reason: "in_grace_period" as const, since: T0, anchor: T0, noticed_at: T0, suspend_at: T0 + GRACE, warned_anchor: T0 };
    const olderInvoiceFound = { ...warned, anchor: T0 - DAY, suspend_at: T0 + GRACE - DAY };
    expect(eventsFor(warned, olderInvoiceFound, T0 + GRACE - DAY - 1, DAY).events).toEqual([]);
  });
});

describe("the minimum notice holds for exemptions too", () => {
  // Never suspended by the policy before the deadline in force has been published for MIN_NOTICE.
  const notice = { gracePeriodMs: GRACE, minNoticeMs: DAY };
  const HOUR = 3_600_000;
  const longPastDue = facts(customer({ pastDue: true, invoices: [invoice("open", 29.99, T0 - 10 * DAY)] }), null);
  const run = (prev: PolicyInput, at: number): PolicyInput => ({ ...prev, ...decide(prev, longPastDue, at, notice) });
  const exempt = (until: number | null, at: number): Override => ({ action: "exempt", until, note: "support ticket 42", at });
  // First seen at T0 (deadline T0 + MIN_NOTICE), suspended then.
  const suspended = run(run(fresh, T0), T0 + DAY);
  const E = T0 + 2 * DAY;

  it("(the setting: an org suspended at its deadline)", () => {
    expect(suspended).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid" });
  });

  it("an exemption shorter than the notice publishes the deadline that follows it, and suspends only then", () => {
    const exempted = run({ ...suspended, override: exempt(E + HOUR, E) }, E);
    expect(exempted).toMatchObject({ state: "overdue", reason: "exempt", suspend_at: E + DAY });
    const ended = run(exempted, E + HOUR);
    expect(ended).toMatchObject({ state: "overdue", reason: "in_grace_period", suspend_at: E + DAY });
    expect(run(ended, E + DAY - 1)).toMatchObject({ state: "overdue", reason: "in_grace_period" });
    expect(run(ended, E + DAY)).toMatchObject({ state: "suspended", reason: "grace_elapsed_never_paid", suspended_at: E + DAY });
  });

  it("unsuspend (an exemption for one grace period) suspends exactly at its end, not 1 ms before", () => {
    const exempted = run({ ...suspended, override: exempt(E + GRACE, E) }, E);
    expect(exempted).toMatchObject({ state: "overdue", reason: "exempt", suspend_at: E + GRACE });
    expect(run(exempted, E + GRACE - 1)).toMatchObject({ state: "overdue", reason: "exempt" });
    expect(run(exempted, E + GRACE)).toMatchObject({ state: "suspended", suspended_at: E + GRACE });
  });

  it("an exemption cleared early starts the notice when it is cleared", () => {
    const exempted = run({ ...suspended, override: exempt(E + 10 * DAY, E) }, E);
    const C = E + 2 * DAY;
    const cleared = run({ ...exempted, override: null }, C);
    expect(cleared).toMatchObject({ state: "overdue", reason: "in_grace_period", suspend_at: C + DAY });
    expect(run(cleared, C + DAY - 1).state).toBe("overdue");
    expect(run(cleared, C + DAY).state).toBe("suspended");
  });

  it("an exemption without end publishes no deadline; once cleared, the notice starts then", () => {
    const exempted = run({ ...suspended, override: exempt(null, E) }, E);
    expect(exempted).toMatchObject({ state: "overdue", reason: "exempt", suspend_at: null });
    const C = E + 30 * DAY;
    const cleared = run({ ...run(exempted, C - 1), override: null }, C);
    expect(cleared).toMatchObject({ state: "overdue", reason: "in_grace_period", suspend_at: C + DAY });
    expect(run(cleared, C + DAY - 1).state).toBe("overdue");
    expect(run(cleared, C + DAY).state).toBe("suspended");
  });

  it("an exemption granted in the grace period never brings the deadline earlier", () => {
    const inGrace = run(fresh, T0);
    expect(inGrace.suspend_at).toBe(T0 + DAY);
    const exempted = run({ ...inGrace, override: exempt(T0 + HOUR, T0 + 1) }, T0 + 1);
    expect(exempted.suspend_at).toBeGreaterThanOrEqual(T0 + DAY);
  });

  it("a suspended org without an exemption stays suspended", () => {
    expect(run(suspended, E)).toMatchObject({ state: "suspended", suspended_at: T0 + DAY });
  });
});
