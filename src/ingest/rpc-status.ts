/** Moved to src/shared/rpc-status.ts (both Workers' error helper uses it); kept for tools/upstream-sink's import. */
export * from "../shared/rpc-status.ts";
