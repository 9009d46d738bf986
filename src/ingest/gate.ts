/** Moved to src/ingest/request/gate.ts; kept until bench/ imports the new path. */
export * from "./request/gate.ts";
