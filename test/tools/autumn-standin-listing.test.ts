import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAutumnStandIn, type AutumnStandIn } from "../../tools/autumn-standin/server.ts";
import { AutumnStore, type ListCustomersFilter } from "../../tools/autumn-standin/store.ts";

/**
 * The stand-in's customers.list keeps its customers in (created_at, id) order between listings and
 * resumes a walk by binary search (a million-customer sweep reads a thousand pages). These walks are
 * compared with the plain definition: sort every customer, keep those strictly past the cursor's key.
 */
const T0 = 1_780_000_000_000;

function walk(store: AutumnStore, filter: Omit<ListCustomersFilter, "start_cursor">, between?: (page: number) => void): string[] {
  const seen: string[] = [];
  let cursor = "";
  for (let page = 0; page < 10_000; page++) {
    const result = store.listCustomers({ ...filter, start_cursor: cursor });
    seen.push(...result.list.map((c) => c.id!));
    if (result.next_cursor === null) return seen;
    cursor = result.next_cursor;
    between?.(page);
  }
  throw new Error("the walk did not end");
}

/** The definition: every customer in (created_at, id) order, the requested direction. */
function expected(customers: { id: string; created_at: number }[], direction: 1 | -1): string[] {
  return [...customers].sort((a, b) => direction * (a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))).map((c) => c.id);
}

describe("customers.list over many customers", () => {
  it("pages both directions in key order, ties on created_at broken by id, every customer once", () => {
    const store = new AutumnStore("sandbox", () => T0);
    const customers: { id: string; created_at: number }[] = [];
    // Three creation times, ids shuffled across them, so order is neither insertion nor id alone.
    for (let i = 0; i < 2_500; i++) {
      const id = `c-${(i * 7919) % 2_500}`;
      const created_at = T0 + ((i * 31) % 3) * 1000;
      store.createCustomer({ id, created_at }, T0);
      customers.push({ id, created_at });
    }
    for (const limit of [1, 7, 1000]) {
      expect(walk(store, { limit, sort_order: "asc" })).toEqual(expected(customers, 1));
      expect(walk(store, { limit })).toEqual(expected(customers, -1));
    }
  });

  it("a customer created or deleted during a walk neither skips nor repeats the others", () => {
    const store = new AutumnStore("sandbox", () => T0);
    for (let i = 0; i < 300; i++) store.createCustomer({ id: `w-${String(i).padStart(3, "0")}`, created_at: T0 }, T0);
    const seen = walk(store, { limit: 50, sort_order: "asc" }, (page) => {
      // Behind the walk (seen already), ahead of it, and a deletion ahead: the rest keep their places.
      store.createCustomer({ id: `w-000-late-${page}`, created_at: T0 }, T0);
      store.createCustomer({ id: `w-299-late-${page}`, created_at: T0 }, T0);
      if (page === 0) store.deleteCustomer("w-200");
    });
    const original = Array.from({ length: 300 }, (_, i) => `w-${String(i).padStart(3, "0")}`).filter((id) => id !== "w-200");
    expect(seen.filter((id) => !id.includes("late"))).toEqual(original);
    expect(new Set(seen).size).toBe(seen.length);
    // Created ahead of the walk: listed; behind it: not.
    expect(seen.filter((id) => id.startsWith("w-299-late")).length).toBeGreaterThan(0);
    expect(seen.filter((id) => id.startsWith("w-000-late"))).toEqual([]);
  });

  it("a filtered walk (search, created_at range) pages only over the matching customers", () => {
    const store = new AutumnStore("sandbox", () => T0);
    for (let i = 0; i < 400; i++) store.createCustomer({ id: i % 4 === 0 ? `match-${i}` : `other-${i}`, created_at: T0 + i }, T0);
    const found = walk(store, { limit: 9, search: "match", created_at_range: { start: T0 + 100, end: T0 + 299 } });
    expect(found).toEqual(Array.from({ length: 400 }, (_, i) => i).filter((i) => i % 4 === 0 && i >= 100 && i <= 299).reverse().map((i) => `match-${i}`));
  });

  it("invoices.list for one customer lists only that customer's invoices", () => {
    const store = new AutumnStore("sandbox", () => T0);
    store.seed({ count: 50, past_due: 50, prefix: "i-", plan_id: "pro", created_at: T0, past_due_at: T0, total: 9 });
    const page = store.listInvoices({ customer_id: "i-07", limit: 10, start_cursor: "" });
    expect(page.list.map((invoice) => invoice.customer_id)).toEqual(["i-07"]);
    expect(store.listInvoices({ customer_id: "nobody", limit: 10, start_cursor: "" })).toEqual({ list: [], next_cursor: null });
    expect(store.listInvoices({ limit: 100, start_cursor: "" }).list).toHaveLength(50);
  });
});

describe("per-customer call counts (/_control/stats/customers)", () => {
  let standIn: AutumnStandIn;
  const key = "am_sk_test_listing";
  beforeAll(async () => {
    standIn = await startAutumnStandIn({ secretKey: key, webhook: null });
  });
  afterAll(() => standIn.close());
  const api = (path: string, body: unknown) =>
    fetch(`${standIn.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "x-api-version": "2.3.0", "content-type": "application/json" }, body: JSON.stringify(body) });
  const counts = async () => ((await (await fetch(`${standIn.url}/_control/stats/customers`)).json()) as { customers: Record<string, Record<string, number>> }).customers;

  it("counts each customer's calls by path, names no customer for a listing, and clears with the stats", async () => {
    await fetch(`${standIn.url}/_control/seed`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ count: 3, prefix: "k-" }) });
    await api("/v1/customers.list", { limit: 10 });
    await api("/v1/customers.get", { customer_id: "k-1" });
    await api("/v1/customers.get", { customer_id: "k-1" });
    await api("/v1/invoices.list", { customer_id: "k-1" });
    await api("/v1/customers.get", { customer_id: "unknown" });
    expect(await counts()).toEqual({ "k-1": { "/v1/customers.get": 2, "/v1/invoices.list": 1 }, unknown: { "/v1/customers.get": 1 } });
    await fetch(`${standIn.url}/_control/stats`, { method: "DELETE" });
    expect(await counts()).toEqual({});
  });
});
