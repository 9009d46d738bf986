import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { mapBounded } from "../../src/shared/fan-out.ts";
import { MAX_BATCH_ORGS } from "../../src/billing/admin/requests.ts";
import { hashIngestKey, IngestKeyRecord } from "../../src/shared/ingest-key.ts";
import { ingestKeyHashKey } from "../../src/shared/storage-keys.ts";
import { admin, uniqueOrg } from "../support/billing.ts";
import { TEST_INGEST_KEY_PEPPER } from "../support/secrets.ts";

/** Issue 23: minting keys for many orgs in one call, `POST /admin/ingest-keys:batch`. */
type Minted = { org_id: string; key_id: string; key: string; created_at: string };
type BatchAnswer = { keys: Minted[]; failed: { org_id: string; error: string; message: string }[] };

function batch(body: unknown, path = "/ingest-keys:batch", init: { authorization?: string | null } = {}) {
  return admin(path, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body), ...init });
}

async function activeKeys(org: string): Promise<string[]> {
  const listed = (await (await admin(`/orgs/${org}/ingest-keys`)).json()) as { keys: { key_id: string }[] };
  return listed.keys.map((key) => key.key_id);
}

describe("POST /admin/ingest-keys:batch", () => {
  it("mints one key per org, in the order asked, each one working as a single mint's would (201)", async () => {
    const orgs = [uniqueOrg("batch-c"), uniqueOrg("batch-a"), uniqueOrg("batch-b")];
    const response = await batch({ orgs });
    expect(response.status).toBe(201);
    const body = (await response.json()) as BatchAnswer;
    expect(body.failed).toEqual([]);
    expect(body.keys.map((key) => key.org_id)).toEqual(orgs);
    for (const minted of body.keys) {
      expect(minted.key).toMatch(/^tg_ik_[A-Za-z0-9_-]{43}$/);
      expect(minted.key_id).toMatch(/^ik_[0-9a-f]{16}$/);
      expect(Date.parse(minted.created_at)).not.toBeNaN();
      expect(await activeKeys(minted.org_id)).toEqual([minted.key_id]);
      // The ingest Worker finds the key by its hash, with its org and a verdict (as for a single mint).
      const stored = IngestKeyRecord.parse(await env.INGEST_KEYS.get(ingestKeyHashKey(await hashIngestKey(TEST_INGEST_KEY_PEPPER, minted.key)), "json"));
      expect(stored).toMatchObject({ org_id: minted.org_id, key_id: minted.key_id, verdict: { state: "ok" } });
    }
  });

  it("is reached with the colon percent-encoded too; a near miss of the path is 404", async () => {
    const org = uniqueOrg("batch-enc");
    const encoded = await batch({ orgs: [org] }, "/ingest-keys%3Abatch");
    expect(encoded.status).toBe(201);
    expect(((await encoded.json()) as BatchAnswer).keys.map((key) => key.org_id)).toEqual([org]);
    for (const path of ["/ingest-keys:batches", "/ingest-keysbatch", "/ingest-keys:"]) {
      const missed = await batch({ orgs: [uniqueOrg("batch-miss")] }, path);
      expect(missed.status, path).toBe(404);
      expect(await missed.json()).toMatchObject({ error: "not_found" });
    }
  });

  it("refuses without the admin token (401) and mints nothing", async () => {
    const org = uniqueOrg("batch-auth");
    const response = await batch({ orgs: [org] }, undefined, { authorization: "Bearer nope" });
    expect(response.status).toBe(401);
    expect(await activeKeys(org)).toEqual([]);
  });

  it.each([
    ["no orgs", { orgs: [] }, "orgs"],
    ["no orgs field", {}, "orgs"],
    ["orgs not a list", { orgs: "org_a" }, "orgs"],
    [`more than ${MAX_BATCH_ORGS} orgs`, { orgs: Array.from({ length: MAX_BATCH_ORGS + 1 }, (_, i) => `org_${i}`) }, String(MAX_BATCH_ORGS)],
    ["an invalid org id", { orgs: ["org_fine", "bad id!"] }, "orgs.1"],
    ["an unknown field", { orgs: ["org_fine"], extra: true }, "extra"],
  ])("refuses %s with 400 invalid_request naming the problem", async (_name, body, named) => {
    const response = await batch(body);
    expect(response.status).toBe(400);
    const refusal = (await response.json()) as { error: string; message: string };
    expect(refusal.error).toBe("invalid_request");
    expect(refusal.message).toContain(named);
  });

  it("refuses a list naming an org twice with 400 duplicate_org and mints nothing at all", async () => {
    const [a, b] = [uniqueOrg("batch-dup"), uniqueOrg("batch-dup")];
    const response = await batch({ orgs: [a, b, a] });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "duplicate_org", message: expect.stringContaining(a) });
    expect(await activeKeys(a)).toEqual([]);
    expect(await activeKeys(b)).toEqual([]);
  });

  it("refuses a body that is not JSON (400 invalid_json)", async () => {
    const response = await batch("{");
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_json" });
  });

  it(`takes ${MAX_BATCH_ORGS} orgs of the longest id in one body`, async () => {
    // 1,000 ids of 128 characters are about 131 KB of JSON: more than the admin API's usual 64 KiB body.
    const orgs = Array.from({ length: MAX_BATCH_ORGS }, (_, i) => `o${String(i).padStart(4, "0")}${"x".repeat(123)}`);
    const response = await batch({ orgs: [...orgs, orgs[0]] });
    // Read far enough to find the duplicate at the end: the size was no reason to refuse it.
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: "invalid_request", message: expect.stringContaining(String(MAX_BATCH_ORGS)) });
    const dup = await batch({ orgs: [...orgs.slice(0, 999), orgs[0]] });
    expect(await dup.json()).toMatchObject({ error: "duplicate_org" });
  });

  it("an org already at 20 active keys fails alone: 207 with the others' keys and that org's error, never a 5xx", async () => {
    const full = uniqueOrg("batch-full");
    for (let i = 0; i < 20; i++) expect((await admin(`/orgs/${full}/ingest-keys`, { method: "POST" })).status).toBe(201);
    const [before, after] = [uniqueOrg("batch-ok"), uniqueOrg("batch-ok")];
    const response = await batch({ orgs: [before, full, after] });
    expect(response.status).toBe(207);
    const body = (await response.json()) as BatchAnswer;
    expect(body.keys.map((key) => key.org_id)).toEqual([before, after]);
    expect(body.failed).toEqual([{ org_id: full, error: "too_many_keys", message: expect.stringContaining("revoke one first") }]);
    expect(await activeKeys(full)).toHaveLength(20);
    expect(await activeKeys(before)).toHaveLength(1);
  });

  it("a batch whose every org is full still answers 207, every org failed, and no 5xx", async () => {
    const full = uniqueOrg("batch-allfull");
    for (let i = 0; i < 20; i++) await admin(`/orgs/${full}/ingest-keys`, { method: "POST" });
    const response = await batch({ orgs: [full] });
    expect(response.status).toBe(207);
    expect(await response.json()).toEqual({ keys: [], failed: [{ org_id: full, error: "too_many_keys", message: expect.any(String) }] });
  });
});

describe("mapBounded (the batch's bounded concurrency)", () => {
  it("keeps the order, and never has more than the limit in flight", async () => {
    let inFlight = 0;
    let most = 0;
    const items = Array.from({ length: 100 }, (_, i) => i);
    const results = await mapBounded(items, 16, async (item) => {
      inFlight++;
      most = Math.max(most, inFlight);
      // Uneven durations, so later items finish before earlier ones.
      await new Promise((resolve) => setTimeout(resolve, (item * 7) % 5));
      inFlight--;
      return item * 2;
    });
    expect(results).toEqual(items.map((item) => item * 2));
    expect(most).toBe(16);
  });

  it("uses fewer workers than the limit for a short list, and none for an empty one", async () => {
    let calls = 0;
    expect(await mapBounded([], 16, async () => calls++)).toEqual([]);
    expect(await mapBounded(["a", "b"], 16, async (item) => `${item}!`)).toEqual(["a!", "b!"]);
    expect(calls).toBe(0);
  });
});
