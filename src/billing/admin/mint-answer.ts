/**
 * What `POST /admin/ingest-keys:batch` answers (docs/admin-api.md), apart from the minting so the CLI,
 * which runs in Node, can read the shapes without the Workers' types.
 */
export type MintedKey = { org_id: string; key_id: string; key: string; created_at: string };
/**
 * `too_many_keys`: final until a key of the org is revoked. `unavailable`: the org's object could not be
 * reached or failed; retryable (send those orgs again: the others already have their new key).
 */
export type MintFailure = { org_id: string; error: "too_many_keys" | "unavailable"; message: string };
export type MintBatchResult = { keys: MintedKey[]; failed: MintFailure[] };
