import { encodeRpcStatus, GrpcCode } from "./rpc-status.ts";

/** The encoding of an error body: JSON everywhere, except for OTLP clients that sent protobuf. */
export type BodyFormat = "json" | "protobuf";

const GRPC_FOR_STATUS: Record<number, number> = {
  400: GrpcCode.INVALID_ARGUMENT,
  401: GrpcCode.UNAUTHENTICATED,
  402: GrpcCode.PERMISSION_DENIED,
  413: GrpcCode.INVALID_ARGUMENT,
  415: GrpcCode.INVALID_ARGUMENT,
  429: GrpcCode.RESOURCE_EXHAUSTED,
  503: GrpcCode.UNAVAILABLE,
};

/**
 * The one way both Workers refuse: `{"error": <stable code>, "message": <what to do>, ...extra}`.
 * For a protobuf OTLP client (`format: "protobuf"`) the same refusal as a google.rpc.Status
 * (the message, the code as ErrorInfo.reason, the extra fields as its metadata), as OTLP asks.
 */
export function errorResponse(
  status: number,
  error: string,
  message: string,
  extra: Record<string, unknown> = {},
  headers: HeadersInit = {},
  format: BodyFormat = "json",
): Response {
  if (format === "protobuf") {
    const metadata = Object.fromEntries(Object.entries(extra).map(([key, value]) => [key, String(value)]));
    const body = encodeRpcStatus({ code: GRPC_FOR_STATUS[status] ?? GrpcCode.INVALID_ARGUMENT, message, reason: error, metadata });
    const withType = new Headers(headers);
    withType.set("content-type", "application/x-protobuf");
    return new Response(body, { status, headers: withType });
  }
  return Response.json({ error, message, ...extra }, { status, headers });
}

export function jsonResponse(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}
