type Env = { UPSTREAM_OTLP_URL: string };

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/health") return Response.json({ status: "ok" });
    const body = await request.arrayBuffer();
    const headers: Record<string, string> = { "content-type": request.headers.get("content-type") ?? "application/x-protobuf", "x-scope-orgid": "passthrough" };
    const encoding = request.headers.get("content-encoding");
    if (encoding) headers["content-encoding"] = encoding;
    const upstream = await fetch(`${env.UPSTREAM_OTLP_URL}${url.pathname}`, { method: "POST", headers, body });
    return new Response(upstream.body, { status: upstream.status, headers: { "content-type": upstream.headers.get("content-type") ?? "application/x-protobuf" } });
  },
};
