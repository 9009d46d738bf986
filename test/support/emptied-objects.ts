/**
 * The Durable Objects the file's storage reset emptied (test/support/fresh-storage.ts), by id string.
 * `listDurableObjectIds` still lists them afterwards (a reset empties an object's storage, it does not
 * remove it), but its ids carry no name: an object reached through one while it is not running starts
 * with no name, and workerd keeps that nameless start for the object's later callers, `getByName`
 * included, until the next reset. So code that walks the listed ids skips these: they hold nothing,
 * and an earlier file's leftover report (a parked report held back up to 10 s, src/ingest/parking/after-park.ts)
 * reaching one by name must find it named, not throw "OrgBilling has no org id" (issue 22).
 */
export const emptiedByReset = new Set<string>();
