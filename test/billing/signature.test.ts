import { afterEach, describe, expect, it, vi } from "vitest";
import { importSigningSecret, MAX_SIGNATURE_ENTRIES, verifySignature } from "../../src/billing/signature.ts";

const encoder = new TextEncoder();

type Vector = { secret: string; id: string; timestamp: number; payload: string; signature: string };

// The public Svix / Standard Webhooks vectors (shared/reference/webhook-signing.md).
const VECTORS: Record<string, Vector> = {
  svix: {
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
    timestamp: 1614265330,
    payload: '{"test": 2432232314}',
    signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
  },
  standard: {
    secret: "whsec_plJ3nmyCDGBKInavdOK15jsl",
    id: "msg_loFOjxBNrRLzqYUf",
    timestamp: 1731705121,
    payload: '{"event_type":"ping","data":{"success":true}}',
    signature: "v1,rAvfW3dJ/X/qxhsaXPOyyCGmRKsaKWcsNccKXlIktD0=",
  },
  oneMebibyte: {
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
    timestamp: 1614265330,
    payload: "a".repeat(1048576),
    signature: "v1,txpEUxqWZJ5nteTnymUVa+7C4NHpBeXJ6CsBAW0c3/A=",
  },
  quarterMebibyte: {
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
    timestamp: 1614265330,
    payload: "a".repeat(262144),
    signature: "v1,Mw4Pe2WgApuT7NSqnSq0PQPV9gbLdggCl9B865x5Xh0=",
  },
};
const KNOWN_INVALID = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

function headers(v: Vector, overrides: Record<string, string | null> = {}, prefix = "svix"): Headers {
  const h = new Headers({ [`${prefix}-id`]: v.id, [`${prefix}-timestamp`]: String(v.timestamp), [`${prefix}-signature`]: v.signature });
  for (const [name, value] of Object.entries(overrides)) {
    if (value === null) h.delete(name);
    else h.set(name, value);
  }
  return h;
}

async function verify(v: Vector, options: { headers?: Headers; payload?: string; secrets?: string[]; nowMs?: number } = {}) {
  const keys = await Promise.all((options.secrets ?? [v.secret]).map((secret) => importSigningSecret(secret)));
  return verifySignature({
    keys,
    headers: options.headers ?? headers(v),
    body: encoder.encode(options.payload ?? v.payload),
    nowMs: options.nowMs ?? v.timestamp * 1000,
  });
}

describe("webhook signatures", () => {
  it.each(Object.entries(VECTORS))("accepts the public vector %s", async (_name, vector) => {
    expect(await verify(vector)).toEqual({ ok: true, id: vector.id, timestamp: vector.timestamp });
  });

  it.each(Object.entries(VECTORS))("accepts %s under the unbranded webhook-* headers", async (_name, vector) => {
    expect((await verify(vector, { headers: headers(vector, {}, "webhook") })).ok).toBe(true);
  });

  it("accepts a header mixing a known-invalid v1, a v2 entry and one valid v1", async () => {
    const v = VECTORS.svix!;
    const mixed = `${KNOWN_INVALID} v2,${v.signature.slice(3)} ${v.signature}`;
    expect((await verify(v, { headers: headers(v, { "svix-signature": mixed }) })).ok).toBe(true);
  });

  it("refuses the known-invalid signature alone", async () => {
    const v = VECTORS.svix!;
    expect(await verify(v, { headers: headers(v, { "svix-signature": KNOWN_INVALID }) })).toMatchObject({ ok: false, code: "invalid_signature" });
  });

  it("refuses a tampered body", async () => {
    const v = VECTORS.svix!;
    expect(await verify(v, { payload: '{"test": 2432232315}' })).toMatchObject({ ok: false, code: "invalid_signature" });
  });

  it("refuses a body re-serialised without its original whitespace", async () => {
    const v = VECTORS.svix!;
    expect(await verify(v, { payload: JSON.stringify(JSON.parse(v.payload)) })).toMatchObject({ ok: false, code: "invalid_signature" });
  });

  it("refuses the wrong secret", async () => {
    const v = VECTORS.svix!;
    expect(await verify(v, { secrets: [VECTORS.standard!.secret] })).toMatchObject({ ok: false, code: "invalid_signature" });
  });

  it("accepts any of several rotated secrets, in either order", async () => {
    const v = VECTORS.svix!;
    expect((await verify(v, { secrets: [VECTORS.standard!.secret, v.secret] })).ok).toBe(true);
    expect((await verify(v, { secrets: [v.secret, VECTORS.standard!.secret] })).ok).toBe(true);
  });

  it("refuses non-v1 entries even when their bytes are right", async () => {
    const v = VECTORS.svix!;
    const asV1a = v.signature.replace(/^v1,/, "v1a,");
    expect(await verify(v, { headers: headers(v, { "svix-signature": asV1a }) })).toMatchObject({ ok: false, code: "invalid_signature" });
  });

  it.each([
    ["a bare v1,", "v1,"],
    ["a truncated signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O"],
    ["a signature without version", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="],
    ["garbage base64", "v1,!!!notbase64!!!"],
    ["only separators", " , "],
  ])("refuses %s", async (_name, signature) => {
    const v = VECTORS.svix!;
    expect(await verify(v, { headers: headers(v, { "svix-signature": signature }) })).toMatchObject({ ok: false, code: "invalid_signature" });
  });

  it("treats a blank signature header as missing", async () => {
    const v = VECTORS.svix!;
    expect(await verify(v, { headers: headers(v, { "svix-signature": "   " }) })).toMatchObject({ ok: false, code: "missing_signature_headers" });
  });

  it.each(["svix-id", "svix-timestamp", "svix-signature"])("refuses a missing %s", async (name) => {
    const v = VECTORS.svix!;
    expect(await verify(v, { headers: headers(v, { [name]: null }) })).toMatchObject({ ok: false, code: "missing_signature_headers" });
  });

  it("does not mix header families", async () => {
    const v = VECTORS.svix!;
    const mixed = new Headers({ "svix-id": v.id, "svix-timestamp": String(v.timestamp), "webhook-signature": v.signature });
    expect(await verify(v, { headers: mixed })).toMatchObject({ ok: false, code: "missing_signature_headers" });
  });

  it.each(["abc", "1614265330.5", "-1614265330", "1e9"])("refuses the malformed timestamp %s", async (timestamp) => {
    const v = VECTORS.svix!;
    expect(await verify(v, { headers: headers(v, { "svix-timestamp": timestamp }) })).toMatchObject({ ok: false, code: "missing_signature_headers" });
  });

  describe("timestamp tolerance (±5 minutes, inclusive)", () => {
    const v = VECTORS.svix!;
    const signedAt = v.timestamp * 1000;
    it.each([
      ["exactly 5 min old", signedAt + 300_000, true],
      ["5 min 1 s old", signedAt + 301_000, false],
      ["exactly 5 min in the future", signedAt - 300_000, true],
      ["5 min 1 s in the future", signedAt - 301_000, false],
    ])("%s", async (_name, nowMs, ok) => {
      const result = await verify(v, { nowMs });
      expect(result.ok).toBe(ok);
      if (!ok) expect(result).toMatchObject({ code: "timestamp_out_of_tolerance" });
    });

    it("says which way the clock is off", async () => {
      expect(await verify(v, { nowMs: signedAt + 3_600_000 })).toMatchObject({ message: expect.stringContaining("too old") });
      expect(await verify(v, { nowMs: signedAt - 3_600_000 })).toMatchObject({ message: expect.stringContaining("too new") });
    });
  });

  it("rejects secrets that are not whsec_<base64>", async () => {
    await expect(importSigningSecret("not-a-secret")).rejects.toThrow(/AUTUMN_WEBHOOK_SECRET/);
    await expect(importSigningSecret("whsec_***")).rejects.toThrow(/AUTUMN_WEBHOOK_SECRET/);
  });
});

describe("signature cost: one HMAC per configured secret, however many entries", () => {
  /** Counts every HMAC over the body, whichever WebCrypto call computes it. */
  function countHmacs() {
    const sign = vi.spyOn(crypto.subtle, "sign");
    const verify = vi.spyOn(crypto.subtle, "verify");
    return () => sign.mock.calls.filter(([algorithm]) => hmacCall(algorithm)).length + verify.mock.calls.filter(([algorithm]) => hmacCall(algorithm)).length;
  }
  function hmacCall(algorithm: unknown): boolean {
    return (typeof algorithm === "string" ? algorithm : (algorithm as { name?: string }).name) === "HMAC";
  }
  afterEach(() => {
    vi.restoreAllMocks();
  });

  const v = VECTORS.quarterMebibyte!;
  const entries = (count: number) => Array.from({ length: count }, () => KNOWN_INVALID);

  it("refuses 1,000 v1 entries on a 256 KiB body with 401, before computing any HMAC", async () => {
    const keys = [await importSigningSecret(v.secret)];
    const hmacs = countHmacs();
    const result = await verifySignature({ keys, headers: headers(v, { "svix-signature": [...entries(999), v.signature].join(" ") }), body: encoder.encode(v.payload), nowMs: v.timestamp * 1000 });
    expect(result).toMatchObject({ ok: false, code: "too_many_signatures" });
    expect(hmacs()).toBe(0);
  });

  it(`accepts ${MAX_SIGNATURE_ENTRIES} entries (the last one valid) with one HMAC per secret`, async () => {
    const keys = await Promise.all([VECTORS.standard!.secret, v.secret].map((secret) => importSigningSecret(secret)));
    const hmacs = countHmacs();
    const signature = [...entries(MAX_SIGNATURE_ENTRIES - 1), v.signature].join(" ");
    expect((await verifySignature({ keys, headers: headers(v, { "svix-signature": signature }), body: encoder.encode(v.payload), nowMs: v.timestamp * 1000 })).ok).toBe(true);
    expect(hmacs()).toBe(2);
  });

  it(`refuses ${MAX_SIGNATURE_ENTRIES} invalid entries after exactly one HMAC per secret`, async () => {
    const keys = await Promise.all([VECTORS.standard!.secret, v.secret].map((secret) => importSigningSecret(secret)));
    const hmacs = countHmacs();
    const result = await verifySignature({ keys, headers: headers(v, { "svix-signature": entries(MAX_SIGNATURE_ENTRIES).join(" ") }), body: encoder.encode(v.payload), nowMs: v.timestamp * 1000 });
    expect(result).toMatchObject({ ok: false, code: "invalid_signature" });
    expect(hmacs()).toBe(2);
  });

  it(`counts every entry, not only v1 ones, toward the ${MAX_SIGNATURE_ENTRIES}-entry cap`, async () => {
    const mixed = [...Array.from({ length: MAX_SIGNATURE_ENTRIES }, () => "v1a,AAAA"), v.signature].join(" ");
    expect(await verify(v, { headers: headers(v, { "svix-signature": mixed }) })).toMatchObject({ ok: false, code: "too_many_signatures" });
  });

  it("computes no HMAC when no entry is a well-formed v1 signature", async () => {
    const keys = [await importSigningSecret(v.secret)];
    const hmacs = countHmacs();
    const result = await verifySignature({ keys, headers: headers(v, { "svix-signature": "v1, v1a,xyz v1,!!!" }), body: encoder.encode(v.payload), nowMs: v.timestamp * 1000 });
    expect(result).toMatchObject({ ok: false, code: "invalid_signature" });
    expect(hmacs()).toBe(0);
  });
});

describe("the signing secret's key", () => {
  it("is cached as the key, never as a promise another request would await: an isolate's first concurrent webhooks each import it", async () => {
    const imports = vi.spyOn(crypto.subtle, "importKey");
    try {
      const secret = `whsec_${btoa(crypto.randomUUID())}`;
      const [a, b] = await Promise.all([importSigningSecret(secret), importSigningSecret(secret)]);
      expect(a.algorithm).toEqual(b.algorithm);
      expect(imports).toHaveBeenCalledTimes(2);
      await importSigningSecret(secret);
      expect(imports).toHaveBeenCalledTimes(2);
    } finally {
      imports.mockRestore();
    }
  });
});
