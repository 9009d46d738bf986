/**
 * google.rpc.Status in protobuf, the error body OTLP asks for when the request was
 * protobuf. The machine-readable code travels in a google.rpc.ErrorInfo detail
 * (`reason`), the way Google APIs carry it. Hand-encoded: three small messages.
 */

/** gRPC status codes used in OTLP error bodies. */
export const GrpcCode = {
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
export const ERROR_DOMAIN = "tollgate";

const encoder = new TextEncoder();

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

function lengthDelimited(field: number, bytes: Uint8Array | number[]): number[] {
  return [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
}

function errorInfo(reason: string, metadata: Record<string, string>): number[] {
  const out = [...lengthDelimited(1, encoder.encode(reason)), ...lengthDelimited(2, encoder.encode(ERROR_DOMAIN))];
  for (const [key, value] of Object.entries(metadata)) {
    out.push(...lengthDelimited(3, [...lengthDelimited(1, encoder.encode(key)), ...lengthDelimited(2, encoder.encode(value))]));
  }
  return out;
}

export function encodeRpcStatus(status: { code: number; message: string; reason: string; metadata?: Record<string, string> }): Uint8Array {
  const any = [...lengthDelimited(1, encoder.encode(ERROR_INFO_TYPE_URL)), ...lengthDelimited(2, errorInfo(status.reason, status.metadata ?? {}))];
  return new Uint8Array([...varint((1 << 3) | 0), ...varint(status.code), ...lengthDelimited(2, encoder.encode(status.message)), ...lengthDelimited(3, any)]);
}
