/**
 * An independent, minimal protobuf reader for google.rpc.Status with ErrorInfo details,
 * so tests check the wire bytes rather than the encoder's own view of them.
 */
import { fieldsOf as readFields } from "./customer-decode.ts";

const text = (value: number | Uint8Array) => new TextDecoder().decode(value as Uint8Array);

export type DecodedStatus = { code: number; message: string; details: { typeUrl: string; reason: string; domain: string; metadata: Record<string, string> }[] };

export function decodeRpcStatus(bytes: Uint8Array): DecodedStatus {
  const status: DecodedStatus = { code: 0, message: "", details: [] };
  for (const field of readFields(bytes)) {
    if (field.number === 1) status.code = field.value as number;
    if (field.number === 2) status.message = text(field.value);
    if (field.number === 3) {
      const detail = { typeUrl: "", reason: "", domain: "", metadata: {} as Record<string, string> };
      for (const any of readFields(field.value as Uint8Array)) {
        if (any.number === 1) detail.typeUrl = text(any.value);
        if (any.number !== 2) continue;
        for (const info of readFields(any.value as Uint8Array)) {
          if (info.number === 1) detail.reason = text(info.value);
          if (info.number === 2) detail.domain = text(info.value);
          if (info.number === 3) {
            const [key, value] = readFields(info.value as Uint8Array);
            detail.metadata[text(key!.value)] = text(value!.value);
          }
        }
      }
      status.details.push(detail);
    }
  }
  return status;
}
