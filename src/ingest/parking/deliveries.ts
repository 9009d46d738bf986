import { orgBillingRpc, type ParkingDelta } from "../../shared/contract.ts";
import { logError, log, logWarn } from "../../shared/log.ts";
import { OrgId } from "../../shared/storage-keys.ts";
import type { UsageCounts } from "../../shared/usage.ts";
import { ingestSettings, type IngestSettings } from "../config.ts";
import { gunzipBounded } from "../gzip.ts";
import { countItems } from "../usage/count-items.ts";
import { addCounts, sendUsageNow, usageCounts } from "../usage/meter.ts";
import { signalOfRoute } from "../usage/route-signal.ts";
import { countedOf, DeliveryMessage, DIGEST_PREFIX, orgOfKey, orgPrefix, ParkedMetadata, parkingSettings, PARKED_PREFIX, PARKED_TOTAL_KEY, receivedAtOfKey, type ParkingEnv, type ParkingSettings } from "./store.ts";

/**
 * Delivery of parked batches, driven by the `tollgate-deliveries` queue (this Worker is its
 * consumer, with max_concurrency 1, so one org's batches are never delivered by two runs at
 * once). A message is `{org_id}`: the billing Worker's OrgBilling sends it when the org leaves
 * suspended; this Worker sends it after parking during an upstream outage; the cleanup sends it
 * for every org that still has batches waiting. Each run delivers the org's batches oldest first,
 * byte for byte with the tenant header, deleting each after a 2xx. What was accepted (an outage
 * park, answered 2xx) goes whatever the org's state is now; only batches parked because the org
 * was suspended wait while it still is and is enforced (not observed), and those that came with a key revoked since are
 * discarded (docs/customers.md, "Parking"). A
 * failure stops the run and the message is retried with backoff (`msg.retry`), so later batches
 * never overtake an earlier one. Delivery is at least once: a batch whose delete failed after
 * its 2xx is sent again.
 */

export type DeliveryEnv = IngestEnv & ParkingEnv;


/** Batches per run before the message hands over to a fresh one (a run must end well within the consumer's limits). */
export const BATCHES_PER_RUN = 100;
/** Backoff between attempts of a failing delivery: 5 s doubling, at most 10 minutes. */
export function deliveryBackoffSeconds(attempts: number): number {
  return Math.min(600, 5 * 2 ** Math.max(0, attempts - 1));
}

export type RunResult = {
  orgId: string;
  outcome: "done" | "more" | "failed" | "suspended" | "off";
  delivered: number;
  deliveredBytes: number;
  expired: number;
  expiredBytes: number;
  refused: number;
  refusedBytes: number;
  /** Batches parked while suspended with a key revoked since: discarded, never delivered (counted in `refused` too). */
  revoked: number;
  /** Batches parked because the org was suspended, left waiting because it still is. */
  held: number;
  /** The bytes left parked, when the run listed the org's whole prefix. */
  remainingBytes?: number;
  failure?: string;
  /**
   * Usage metering: what this run delivered of batches parked while the org was suspended (refused
   * then, so not metered at acceptance), counted once each batch is delivered and deleted.
   */
  usage?: UsageCounts;
};

/** The queue handler: one run per distinct org in the batch (runs for different orgs go in parallel). */
export async function handleDeliveries(batch: MessageBatch<unknown>, env: DeliveryEnv, now: () => number = Date.now): Promise<RunResult[]> {
  const parking = parkingSettings(env);
  const byOrg = new Map<string, Message<unknown>[]>();
  for (const message of batch.messages) {
    const parsed = DeliveryMessage.safeParse(message.body);
    if (!parsed.success || !OrgId.safeParse(parsed.data.org_id).success) {
      logWarn({ event: "delivery_invalid_message", message_id: message.id });
      message.ack();
      continue;
    }
    byOrg.set(parsed.data.org_id, [...(byOrg.get(parsed.data.org_id) ?? []), message]);
  }
  return Promise.all(
    [...byOrg].map(async ([orgId, messages]) => {
      // Before the run's first listing: what it lists as remaining includes every batch parked before this.
      const listedAt = now();
      const result = parking ? await deliverOrg(env, parking, orgId, now) : ({ ...emptyRun(orgId), outcome: "off" } as RunResult);
      const attempts = Math.max(...messages.map((m) => m.attempts));
      // What was delivered (a failed run included) goes on the usage queue before the message is
      // acked or retried (a failed send is retried, then logged usage_lost), in a send of this run's own.
      if (result.usage) await sendUsageNow(env, orgId, result.usage, now());
      if (result.outcome === "failed") {
        const delaySeconds = deliveryBackoffSeconds(attempts);
        // One message carries the retry; the others are the same work.
        messages[0]!.retry({ delaySeconds });
        for (const extra of messages.slice(1)) extra.ack();
        logWarn({ event: "delivery_failed", org_id: orgId, attempts, retry_in_s: delaySeconds, delivered: result.delivered, reason: result.failure });
      } else {
        if (result.outcome === "more") await parking?.queue?.send({ org_id: orgId });
        for (const message of messages) message.ack();
        if (result.outcome !== "off") log({ event: "delivery_run", org_id: orgId, outcome: result.outcome, delivered: result.delivered, delivered_bytes: result.deliveredBytes, expired: result.expired, refused: result.refused, revoked: result.revoked, held: result.held });
      }
      await report(env, orgId, {
        delivered_batches: result.delivered,
        delivered_bytes: result.deliveredBytes,
        expired_batches: result.expired,
        expired_bytes: result.expiredBytes,
        refused_batches: result.refused,
        refused_bytes: result.refusedBytes,
        ...(result.remainingBytes !== undefined ? { listed_bytes: result.remainingBytes, listed_at: listedAt } : {}),
      });
      return result;
    }),
  );
}

const emptyRun = (orgId: string): RunResult => ({ orgId, outcome: "done", delivered: 0, deliveredBytes: 0, expired: 0, expiredBytes: 0, refused: 0, refusedBytes: 0, revoked: 0, held: 0 });

/**
 * One run for one org: oldest first until done, a failure, or the per-run budget. While the org is
 * suspended and enforced, the batches parked because of it are held (they wait for its payment, whose
 * transition sends a message of its own); every other batch was accepted and goes now (issue 18, 3).
 * An org observed (its own override, else ENFORCEMENT; issue 21) is no longer refused, so what was
 * kept while it was enforced goes too: the data the operator chose not to refuse is not held back.
 */
export async function deliverOrg(env: DeliveryEnv, parking: ParkingSettings, orgId: string, now: () => number = Date.now): Promise<RunResult> {
  const result = emptyRun(orgId);
  const object = orgBillingRpc(env.ORG_BILLING, orgId);
  const settings = ingestSettings(env);
  let suspended: boolean;
  try {
    const verdict = await object.verdict();
    suspended = verdict.state === "suspended" && (verdict.enforcement ?? settings.enforcement) === "enforce";
  } catch (error) {
    return { ...result, outcome: "failed", failure: `the org's billing object is unreachable: ${text(error)}` };
  }
  // The org's active keys, asked once a run and only if a refused batch is about to go.
  let active: Promise<Set<string>> | null = null;
  const keyActive = async (keyId: string) => (await (active ??= object.listIngestKeys().then((keys) => new Set(keys.map((k) => k.key_id))))).has(keyId);
  try {
    const done = await deliverParked(parking, settings, orgId, now, result, suspended, keyActive);
    return done.outcome === "done" && suspended ? { ...done, outcome: "suspended" } : done;
  } catch (error) {
    // R2 (or the org's object) failed mid-run: what was delivered stays counted, and the message is retried.
    return { ...result, outcome: "failed", failure: `the parking store failed: ${text(error)}` };
  }
}

/** The delivery loop; `result` is updated as it goes, so a throw leaves it counting what was done. */
async function deliverParked(
  parking: ParkingSettings,
  settings: ReturnType<typeof ingestSettings>,
  orgId: string,
  now: () => number,
  result: RunResult,
  suspended: boolean,
  keyActive: (keyId: string) => Promise<boolean>,
): Promise<RunResult> {
  let handled = 0;
  let remainingBytes = 0;
  let cursor: string | undefined;
  do {
    const page = await parking.bucket.list({ prefix: orgPrefix(orgId), cursor, limit: 100, include: ["customMetadata"] });
    for (const listed of page.objects) {
      const receivedAt = receivedAtOfKey(listed.key);
      if (receivedAt === null || now() - receivedAt >= parking.retentionMs) {
        if (handled >= BATCHES_PER_RUN) return { ...result, outcome: "more" };
        handled++;
        await parking.bucket.delete(listed.key);
        result.expired++;
        result.expiredBytes += listed.size;
        continue;
      }
      // Held without a read: the listing carries the metadata.
      if (suspended && listed.customMetadata?.why === "suspended") {
        result.held++;
        remainingBytes += listed.size;
        continue;
      }
      if (handled >= BATCHES_PER_RUN) return { ...result, outcome: "more" };
      handled++;
      const object = await parking.bucket.get(listed.key);
      if (object === null) continue; // delivered or expired meanwhile
      const metadata = ParkedMetadata.safeParse(object.customMetadata ?? {});
      if (!metadata.success) {
        logError({ event: "delivery_unreadable_batch", org_id: orgId, key: listed.key });
        await object.body.cancel();
        await parking.bucket.delete(listed.key);
        result.refused++;
        result.refusedBytes += listed.size;
        continue;
      }
      if (metadata.data.why === "suspended" && suspended) {
        // Parked because of a suspension and not in the listing's metadata: still held.
        await object.body.cancel();
        result.held++;
        remainingBytes += listed.size;
        continue;
      }
      if (metadata.data.why === "suspended" && metadata.data.key_id !== undefined && !(await keyActive(metadata.data.key_id))) {
        // Refused (402) when it came, with a key revoked since: never promised, and possibly not the org's data (docs/customers.md, "Parking").
        logWarn({ event: "delivery_revoked_key_batch", org_id: orgId, key_id: metadata.data.key_id, bytes: listed.size, received_at: receivedAt });
        await object.body.cancel();
        await parking.bucket.delete(listed.key);
        result.revoked++;
        result.refused++;
        result.refusedBytes += listed.size;
        continue;
      }
      const body = new Uint8Array(await object.arrayBuffer());
      const headers: Record<string, string> = { "content-type": metadata.data.content_type, [settings.tenantHeader]: orgId };
      if (metadata.data.content_encoding !== "") headers["content-encoding"] = metadata.data.content_encoding;
      let status: number;
      try {
        const response = await fetch(`${settings.upstreamUrl}${metadata.data.route}`, { method: "POST", headers, body, redirect: "manual", signal: AbortSignal.timeout(settings.upstreamTimeoutMs) });
        status = response.status;
        await response.body?.cancel();
      } catch (error) {
        return { ...result, outcome: "failed", failure: `upstream unreachable: ${text(error)}` };
      }
      if (status >= 200 && status < 300) {
        await parking.bucket.delete(listed.key);
        result.delivered++;
        result.deliveredBytes += body.byteLength;
        // After the delete: a batch sent again because its delete failed is metered once.
        const counted = countedOf(metadata.data);
        if (settings.metering && counted !== "all") {
          const counts = await deliveredUsage(settings, orgId, metadata.data, body, counted === "bytes", now());
          if (counts) addCounts((result.usage ??= {}), counts);
        }
      } else if (status === 400 || status === 413) {
        // The backend refuses this batch itself: it never will take it, and it must not hold back the rest.
        logError({ event: "delivery_refused_batch", org_id: orgId, upstream_status: status, bytes: body.byteLength, received_at: receivedAt });
        await parking.bucket.delete(listed.key);
        result.refused++;
        result.refusedBytes += body.byteLength;
      } else {
        return { ...result, outcome: "failed", failure: `upstream answered ${status}` };
      }
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined);
  // The whole prefix was listed: what is left is exactly what was held.
  return { ...result, remainingBytes };
}

/**
 * What a delivered batch adds to usage (its `counted` says what acceptance counted): a Logpush
 * piece's records and bytes as received (kept in its metadata); an OTLP batch's items, counted from
 * its decompressed body, and its bytes as received unless `itemsOnly` (they were counted at acceptance).
 */
async function deliveredUsage(settings: IngestSettings, orgId: string, metadata: ParkedMetadata, body: Uint8Array, itemsOnly: boolean, now: number): Promise<UsageCounts | null> {
  if (metadata.usage_signal === "logpush") {
    return usageCounts(settings, orgId, "logpush", { items: Number(metadata.usage_items ?? 0), bytes: Number(metadata.usage_bytes ?? 0) }, now);
  }
  const signal = signalOfRoute(metadata.route) as "traces" | "logs" | "metrics";
  let items: number | null = null;
  if (settings.usageFeatures[signal] !== undefined) {
    try {
      const plain = metadata.content_encoding === "gzip" ? await gunzipBounded(body, settings.maxDecompressedBytes, true) : body;
      items = countItems(signal, metadata.content_type.includes("json") ? "json" : "protobuf", plain);
    } catch {
      items = null;
    }
  }
  return usageCounts(settings, orgId, signal, { items, bytes: itemsOnly ? 0 : body.byteLength }, now);
}

export type CleanupResult = { expired: number; expiredBytes: number; waitingOrgs: string[] };

/**
 * On the reconciliation sweep's schedule: deletes expired batches (an R2 lifecycle rule does the
 * same as a backstop) and expired digest markers, tells every org's object what it has parked now
 * (expired counts, and the bytes listed, which keeps the per-org cap's figure in step with R2), and
 * sends a delivery for every org that still has batches waiting, so a delivery whose message was
 * dropped after its last retry is picked up again (the consumer holds a suspended org's refused batches).
 */
export async function cleanupParked(env: DeliveryEnv, now: number): Promise<CleanupResult | null> {
  const parking = parkingSettings(env);
  if (!parking) return null;
  const byOrg = new Map<string, { batches: number; bytes: number; kept: number; keptBatches: number }>();
  const waiting = new Set<string>();
  let expired = 0;
  let expiredBytes = 0;
  let keptBytes = 0;
  let cursor: string | undefined;
  do {
    const page = await parking.bucket.list({ prefix: PARKED_PREFIX, cursor, limit: 1000 });
    const doomed: string[] = [];
    for (const object of page.objects) {
      const orgId = orgOfKey(object.key);
      const receivedAt = receivedAtOfKey(object.key);
      const count = orgId === null ? null : (byOrg.get(orgId) ?? { batches: 0, bytes: 0, kept: 0, keptBatches: 0 });
      if (orgId !== null && count !== null) byOrg.set(orgId, count);
      if (orgId === null || receivedAt === null || now - receivedAt >= parking.retentionMs) {
        doomed.push(object.key);
        expired++;
        expiredBytes += object.size;
        if (count) {
          count.batches++;
          count.bytes += object.size;
        }
      } else {
        waiting.add(orgId);
        keptBytes += object.size;
        count!.kept += object.size;
        count!.keptBatches++;
      }
    }
    if (doomed.length > 0) await parking.bucket.delete(doomed);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined);
  await deleteExpiredDigests(parking, now);
  // The global cap's figure, read by every isolate once a minute (store.ts, ParkedTotal).
  await parking.bucket.put(PARKED_TOTAL_KEY, JSON.stringify({ bytes: keptBytes, at: now }));
  await Promise.all([...byOrg].map(([orgId, count]) => report(env, orgId, { expired_batches: count.batches, expired_bytes: count.bytes, listed_bytes: count.kept, listed_batches: count.keptBatches, listed_at: now })));
  const orgs = [...waiting];
  if (parking.queue) {
    for (let i = 0; i < orgs.length; i += 100) await parking.queue.sendBatch(orgs.slice(i, i + 100).map((org_id) => ({ body: { org_id } })));
  }
  log({ event: "parking_cleanup", expired, expired_bytes: expiredBytes, parked_bytes: keptBytes, waiting_orgs: orgs.length });
  return { expired, expiredBytes, waitingOrgs: orgs };
}

/** Digest markers (keys.ts, DIGEST_PREFIX) older than the retention: a resend after that is a new batch. */
async function deleteExpiredDigests(parking: ParkingSettings, now: number): Promise<void> {
  let cursor: string | undefined;
  do {
    const page = await parking.bucket.list({ prefix: DIGEST_PREFIX, cursor, limit: 1000, include: ["customMetadata"] });
    const doomed = page.objects.filter((o) => now - Number(o.customMetadata?.received_at ?? o.uploaded.getTime()) >= parking.retentionMs).map((o) => o.key);
    if (doomed.length > 0) await parking.bucket.delete(doomed);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined);
}

/**
 * Progress goes to the org's object; a failed report is logged and lost (progress is informative,
 * the data is not). Resolves to the bytes the object now counts as parked for the org (the per-org
 * cap's figure), or null. An empty delta is sent only when `ask`ing for that figure.
 */
export async function report(env: DeliveryEnv, orgId: string, delta: ParkingDelta, ask = false): Promise<number | null> {
  if (!ask && !Object.values(delta).some((value) => (value ?? 0) > 0) && delta.listed_bytes === undefined) return null;
  try {
    const answer = await orgBillingRpc(env.ORG_BILLING, orgId).recordParking(delta);
    return answer.ok ? answer.waiting_bytes : null;
  } catch (error) {
    logWarn({ event: "parking_report_failed", org_id: orgId, error: text(error) });
    return null;
  }
}

const text = (error: unknown) => (error instanceof Error ? error.message : String(error));
