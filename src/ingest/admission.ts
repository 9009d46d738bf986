/** Split into src/ingest/request/*; kept until bench/ imports the new paths. */
export { gateSources, KV_CACHE_TTL_SECONDS } from "./request/sources.ts";
