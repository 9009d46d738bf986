/**
 * Independent protobuf readers for what the customer sees: a google.rpc.Status with its
 * ErrorInfo and Help details, and an OTLP export response's partial_success. Written apart
 * from the encoders so tests check the wire bytes, not the encoder's own view of them.
 */
type Field = { number: number; wire: number; value: number | Uint8Array };

export function fieldsOf(bytes: Uint8Array): Field[] {
  const fields: Field[] = [];
  let i = 0;
  const varint = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[i++]!;
      result += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return result;
      shift += 7;
    }
  };
  while (i < bytes.length) {
    const tag = varint();
    const wire = tag & 7;
    const number = tag >>> 3;
    if (wire === 0) fields.push({ number, wire, value: varint() });
    else if (wire === 2) {
      const length = varint();
      fields.push({ number, wire, value: bytes.slice(i, i + length) });
      i += length;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return fields;
}

const text = (value: number | Uint8Array) => new TextDecoder().decode(value as Uint8Array);

export type StatusWithHelp = {
  code: number;
  message: string;
  typeUrls: string[];
  reason: string;
  metadata: Record<string, string>;
  links: { description: string; url: string }[];
};

export function decodeStatusWithHelp(bytes: Uint8Array): StatusWithHelp {
  const out: StatusWithHelp = { code: 0, message: "", typeUrls: [], reason: "", metadata: {}, links: [] };
  for (const field of fieldsOf(bytes)) {
    if (field.number === 1) out.code = field.value as number;
    if (field.number === 2) out.message = text(field.value);
    if (field.number !== 3) continue;
    const any = fieldsOf(field.value as Uint8Array);
    const typeUrl = text(any.find((f) => f.number === 1)!.value);
    const value = any.find((f) => f.number === 2)?.value as Uint8Array | undefined;
    out.typeUrls.push(typeUrl);
    if (!value) continue;
    if (typeUrl.endsWith("google.rpc.ErrorInfo")) {
      for (const info of fieldsOf(value)) {
        if (info.number === 1) out.reason = text(info.value);
        if (info.number === 3) {
          const [key, val] = fieldsOf(info.value as Uint8Array);
          out.metadata[text(key!.value)] = text(val!.value);
        }
      }
    }
    if (typeUrl.endsWith("google.rpc.Help")) {
      for (const link of fieldsOf(value)) {
        const parts = fieldsOf(link.value as Uint8Array);
        out.links.push({ description: text(parts.find((p) => p.number === 1)!.value), url: text(parts.find((p) => p.number === 2)!.value) });
      }
    }
  }
  return out;
}

/** ExportTrace/Metrics/LogsServiceResponse: field 1 partial_success {1: rejected, 2: error_message}; other fields listed by number. */
export function decodeExportResponse(bytes: Uint8Array): { rejected: number; errorMessage: string; partialSuccessCount: number; otherFields: number[] } {
  const out = { rejected: 0, errorMessage: "", partialSuccessCount: 0, otherFields: [] as number[] };
  for (const field of fieldsOf(bytes)) {
    if (field.number !== 1) {
      out.otherFields.push(field.number);
      continue;
    }
    out.partialSuccessCount++;
    for (const inner of fieldsOf(field.value as Uint8Array)) {
      if (inner.number === 1) out.rejected = inner.value as number;
      if (inner.number === 2) out.errorMessage = text(inner.value);
    }
  }
  return out;
}
