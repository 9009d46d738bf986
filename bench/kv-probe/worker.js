// The KV probe's Worker (run.mjs): /seed writes key entries shaped like INGEST_KEYS entries, /get reads one as the gate does
// (type json, cacheTtl 30), /noop reads nothing.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/seed") {
      const n = Number(url.searchParams.get("n"));
      const from = Number(url.searchParams.get("from"));
      for (let i = from; i < from + n; i++) await env.KV.put(`key:${i}`, JSON.stringify({ org_id: `org_${i}`, key_id: `ik_${i}`, created_at: "2026-12-03T00:00:00.000Z", verdict: { state: "ok", since: 1, version: 1, suspend_at: null, suspended_at: null, pay_url: null, limits: [], enforcement: null } }));
      return new Response("ok");
    }
    if (url.pathname === "/get") {
      const v = await env.KV.get(`key:${url.searchParams.get("i")}`, { type: "json", cacheTtl: 30 });
      return new Response(v ? "1" : "0");
    }
    return new Response("noop");
  },
};
