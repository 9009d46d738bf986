import { gunzipSync } from "node:zlib";

/**
 * The items in an OTLP export request as the sink received it, counted by whole-body decoding
 * (JSON.parse, or a recursive protobuf reader): independent of the ingest Worker's streaming
 * counters, so the soak compares Autumn's totals with a second opinion.
 */
export function otlpItems(path: string, contentType: string | null, encoding: string | null, body: Buffer): number {
  const bytes = encoding === "gzip" ? gunzipSync(body) : body;
  if ((contentType ?? "").includes("json")) {
    const request = JSON.parse(bytes.toString("utf8"));
    if (path === "/v1/traces") return sum(request.resourceSpans, (r: any) => sum(r.scopeSpans, (s: any) => s.spans?.length ?? 0));
    if (path === "/v1/logs") return sum(request.resourceLogs, (r: any) => sum(r.scopeLogs, (s: any) => s.logRecords?.length ?? 0));
    return sum(request.resourceMetrics, (r: any) => sum(r.scopeMetrics, (s: any) => sum(s.metrics, (m: any) => {
      const data = m.gauge ?? m.sum ?? m.histogram ?? m.exponentialHistogram ?? m.summary;
      return data?.dataPoints?.length ?? 0;
    })));
  }
  const top = fields(bytes).filter((f) => f.number === 1);
  const inner = (message: Buffer, n: number) => fields(message).filter((f) => f.number === n && f.wire === 2).map((f) => f.value as Buffer);
  if (path === "/v1/traces" || path === "/v1/logs") return sum(top, (r) => sum(inner(r.value as Buffer, 2), (scope) => inner(scope, 2).length));
  // ResourceMetrics.scope_metrics(2) → ScopeMetrics.metrics(2) → Metric.{gauge 5, sum 7, histogram 9, exponential_histogram 10, summary 11}.data_points(1)
  return sum(top, (r) => sum(inner(r.value as Buffer, 2), (scope) => sum(inner(scope, 2), (metric) => sum([5, 7, 9, 10, 11], (n) => sum(inner(metric, n), (data) => inner(data, 1).length)))));
}

function sum<T>(items: T[] | undefined, count: (item: T) => number): number {
  return (items ?? []).reduce((total, item) => total + count(item), 0);
}

type Field = { number: number; wire: number; value: Buffer | bigint };

function fields(buffer: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = buffer[i++];
      if (byte === undefined) throw new Error("truncated varint");
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
    }
  };
  while (i < buffer.length) {
    const key = Number(varint());
    const wire = key & 7;
    const number = key >>> 3;
    if (wire === 0) out.push({ number, wire, value: varint() });
    else if (wire === 2) {
      const length = Number(varint());
      out.push({ number, wire, value: buffer.subarray(i, i + length) });
      i += length;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`wire type ${wire}`);
  }
  return out;
}
