/**
 * The few protobuf wire operations the customer-facing bodies need: writing length-delimited
 * fields (google.rpc.Status details, OTLP partial_success) and reading an upstream's OTLP
 * export response field by field, so unknown fields pass through untouched.
 */

const encoder = new TextEncoder();

export function varint(value: number | bigint): number[] {
  const out: number[] = [];
  let v = BigInt(value);
  if (v < 0n) v = BigInt.asUintN(64, v);
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

export function tag(field: number, wire: 0 | 2): number[] {
  return varint((field << 3) | wire);
}

export function bytesField(field: number, bytes: Uint8Array | number[]): number[] {
  return [...tag(field, 2), ...varint(bytes.length), ...bytes];
}

export function stringField(field: number, text: string): number[] {
  return bytesField(field, encoder.encode(text));
}

export function varintField(field: number, value: number | bigint): number[] {
  return [...tag(field, 0), ...varint(value)];
}

/** One field as it sits on the wire: its number, wire type, decoded value and its exact bytes. */
export type WireField = { number: number; wire: number; value: bigint | Uint8Array; raw: Uint8Array };

/** Splits a message into its fields; null when the bytes are not a well-formed message. */
export function readFields(bytes: Uint8Array): WireField[] | null {
  const fields: WireField[] = [];
  let i = 0;
  const readVarint = (): bigint | null => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= bytes.length) return null;
      const byte = bytes[i++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
    }
    return null;
  };
  while (i < bytes.length) {
    const start = i;
    const key = readVarint();
    if (key === null) return null;
    const wire = Number(key & 7n);
    const number = Number(key >> 3n);
    if (number === 0) return null;
    let value: bigint | Uint8Array;
    if (wire === 0) {
      const v = readVarint();
      if (v === null) return null;
      value = v;
    } else if (wire === 2) {
      const length = readVarint();
      if (length === null || i + Number(length) > bytes.length) return null;
      value = bytes.subarray(i, i + Number(length));
      i += Number(length);
    } else if (wire === 1 || wire === 5) {
      const size = wire === 1 ? 8 : 4;
      if (i + size > bytes.length) return null;
      value = bytes.subarray(i, i + size);
      i += size;
    } else return null;
    fields.push({ number, wire, value, raw: bytes.subarray(start, i) });
  }
  return fields;
}

export function concat(parts: (Uint8Array | number[])[]): Uint8Array {
  const size = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
