/**
 * What every item counter is (count-items.ts picks one by format; count-protobuf.ts and
 * count-json.ts implement it). Apart from count-items.ts so the counters need not import the
 * module that imports them.
 */
export type ItemSignal = "traces" | "logs" | "metrics";
export type ItemCounter = { push(chunk: Uint8Array): void; finish(): number | null };
