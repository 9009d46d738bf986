/**
 * The keys of the object's synchronous key-value storage (`ctx.storage.kv`), beside its SQL tables
 * (store.ts). Apart from store.ts so docs/storage.md's test, which runs in Node, can read them.
 */

/** The org's parking progress (parking.ts). */
export const PARKING_KEY = "parking";

/** Every key, as docs/storage.md lists them (a test holds the doc to this list). */
export const OBJECT_KV_KEYS = [PARKING_KEY];
