import { encodeRpcStatus, GrpcCode } from "./rpc-status.ts";

/** OTLP error bodies follow the request's encoding; Logpush and unknown types get JSON. */
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
 * `{"error", "message", ...}` for JSON clients; a google.rpc.Status (same message, the
 * code as ErrorInfo.reason, the extra fields as its metadata) for protobuf clients.
 */
export function ingestError(
  format: BodyFormat,
  status: number,
  error: string,
  message: string,
  extra: Record<string, string> = {},
  headers: Record<string, string> = {},
): Response {
  if (format === "protobuf") {
    const body = encodeRpcStatus({ code: GRPC_FOR_STATUS[status] ?? GrpcCode.INVALID_ARGUMENT, message, reason: error, metadata: extra });
    return new Response(body, { status, headers: { ...headers, "content-type": "application/x-protobuf" } });
  }
  return Response.json({ error, message, ...extra }, { status, headers });
}
