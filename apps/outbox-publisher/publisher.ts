import { randomInt } from 'node:crypto';
import type { Pool, PoolClient } from '../../lib/db';
import type { DestinationKeyRing } from '../../lib/destination-vault';
import type { Logger } from '../../lib/logger';
import { signOutboxWebhook, urlOrigin, type ConfiguredEndpoint } from '../../lib/outbox-webhooks';
import { applyConfiguredEndpoints, resealSecrets, servedEndpoints, type ServedEndpoint } from './endpoints';
import { claimDeliveries, fanOut, markDelivered, markFailed, OWNER_LOCK_NAMESPACE, type ClaimedDelivery } from './store';

export { outboxLag, replayDeadLetters, skipDeadLetter, listDeadLetters, type OutboxLag, type DeadLetter } from './store';

export const REQUEST_TIMEOUT_MS = 10_000;
/** Deliveries of one batch in flight at once (each to a different account). */
const DEFAULT_CONCURRENCY = 16;

export interface OutboxPublisherOptions {
  pool: Pool;
  /** OUTBOX_ENDPOINTS: applied when the publisher starts (endpoints.ts applyConfiguredEndpoints). */
  endpoints: readonly ConfiguredEndpoint[];
  /** OUTBOX_WEBHOOK_SECRET (whsec_ form): the secret of a configured endpoint that names none. */
  defaultSecret: string;
  /** DESTINATION_KEYS: seals and opens the endpoints' secrets in the database. */
  keyRing: DestinationKeyRing;
  batchSize: number;
  pollIntervalMs: number;
  /** How long a failing event is retried, from its first failure, before it is dead-lettered. */
  retryWindowMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  logger: Logger;
  fetch?: typeof fetch;
  /** Test-only scope: fan out only these accounts' events. Production leaves it unset (every event). */
  accountIds?: readonly string[];
  /** Test-only scope: serve only these endpoint ids. Production leaves it unset (every enabled endpoint). */
  endpointIds?: readonly string[];
  requestTimeoutMs?: number;
  concurrency?: number;
  /** A claim older than this is taken over even if its publisher still looks alive. Default: longest possible batch + 30 s. */
  claimLeaseMs?: number;
}

export interface RoundResult {
  claimed: number;
  delivered: number;
  failed: number;
  deadLettered: number;
}

/** Delay before the next attempt after `attempts` failed ones (1, 2, ...): base · 2^(attempts−1), capped at maxMs. */
export function backoffMs(baseMs: number, attempts: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, attempts - 1), 40));
}

/**
 * Delivers outbox events to operator endpoints as Standard Webhooks (POST, body = the stored payload bytes,
 * headers webhook-id = the event id, webhook-timestamp, webhook-signature signed with the endpoint's
 * secrets: lib/outbox-webhooks.ts). At start it applies OUTBOX_ENDPOINTS; then it serves every enabled
 * endpoint in the database (staff add and change them through the API; each round reads them again). Each
 * round, per endpoint: fan out new events its filter takes into delivery rows, claim the due head of each
 * account (short transactions, FOR UPDATE SKIP LOCKED, so several publishers can run), deliver those
 * concurrently, record each outcome. 2xx is delivered; anything else, a network error or a timeout is
 * retried with exponential backoff (capped) for the retry window from its first failure, then
 * dead-lettered: the account's later events for that endpoint wait behind it until staff replay or skip it.
 *
 * Delivery is at least once: a crash after the endpoint answered 2xx but before the outcome is recorded
 * sends the same event again (same bytes, same webhook-id). Consumers dedupe by webhook-id.
 *
 * Liveness of a claim: each publisher holds a session advisory lock (OWNER_LOCK_NAMESPACE, owner id) on a
 * dedicated connection while it runs; when the process dies, PostgreSQL drops the lock with the
 * connection and other publishers (or the restarted one) take its claims over at once.
 */
export function createOutboxPublisher(options: OutboxPublisherOptions) {
  const { pool, batchSize, pollIntervalMs, retryWindowMs, backoffBaseMs, backoffMaxMs, logger, accountIds, keyRing } = options;
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const concurrency = Math.max(1, Math.min(options.concurrency ?? DEFAULT_CONCURRENCY, batchSize));
  const claimLeaseMs = options.claimLeaseMs ?? timeoutMs * Math.ceil(batchSize / concurrency) + 30_000;

  let owner: { client: PoolClient; id: number; lost: boolean } | undefined;
  let configured = false;
  /** Endpoints whose secret cannot be opened, reported once each (until it can be again). */
  const unreadableReported = new Set<string>();
  let loop: Promise<void> | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;
  let round: Promise<RoundResult> | undefined;

  async function ensureOwner(): Promise<number> {
    if (owner && !owner.lost) return owner.id;
    if (owner) owner.client.release(true);
    owner = undefined;
    const client = await pool.connect();
    const state = { client, id: 0, lost: false };
    const lose = () => {
      state.lost = true;
    };
    client.on('error', lose);
    client.on('end', lose);
    try {
      for (;;) {
        const id = randomInt(1, 2 ** 31 - 1);
        const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [OWNER_LOCK_NAMESPACE, id]);
        if (rows[0]?.locked) {
          state.id = id;
          break;
        }
      }
    } catch (err) {
      client.release(true);
      throw err;
    }
    owner = state;
    return state.id;
  }

  function releaseOwner(): void {
    // Destroying the connection drops the session lock (returning it to the pool would keep it).
    owner?.client.release(true);
    owner = undefined;
  }

  /** Once per process: OUTBOX_ENDPOINTS into the database, and secrets under an older DESTINATION_KEYS key re-sealed. */
  async function configure(): Promise<void> {
    if (configured) return;
    const applied = await applyConfiguredEndpoints(pool, keyRing, options.endpoints, options.defaultSecret);
    const changed = applied.filter((a) => a.outcome !== 'unchanged');
    if (changed.length > 0) logger.info({ endpoints: changed }, 'OUTBOX_ENDPOINTS applied');
    const resealed = await resealSecrets(pool, keyRing);
    if (resealed.resealed > 0) logger.info({ resealed: resealed.resealed }, 'outbox endpoint secrets re-sealed under the current DESTINATION_KEYS key');
    configured = true;
  }

  async function deliver(endpoint: ServedEndpoint, d: ClaimedDelivery): Promise<{ ok: true } | { ok: false; error: string }> {
    try {
      const response = await doFetch(endpoint.url, {
        method: 'POST',
        body: d.body,
        headers: { 'Content-Type': 'application/json', ...signOutboxWebhook(endpoint.secrets, d.eventId, d.body) },
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (response.status >= 200 && response.status < 300) {
        await response.body?.cancel().catch(() => undefined);
        return { ok: true };
      }
      const text = await response.text().catch(() => '');
      return { ok: false, error: `HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}` };
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      return { ok: false, error: err instanceof Error ? `${err.name}: ${err.message}${cause ? ` (${cause})` : ''}` : String(err) };
    }
  }

  async function settle(endpoint: ServedEndpoint, d: ClaimedDelivery, ownerId: number, result: RoundResult): Promise<void> {
    const outcome = await deliver(endpoint, d);
    if (outcome.ok) {
      await markDelivered(pool, d);
      result.delivered++;
      return;
    }
    const attempts = d.attempts + 1;
    const failed = await markFailed(pool, d, ownerId, outcome.error, backoffMs(backoffBaseMs, attempts, backoffMaxMs), retryWindowMs);
    result.failed++;
    const fields = { eventId: d.eventId, eventType: d.eventType, accountId: d.accountId, endpoint: endpoint.id, origin: urlOrigin(endpoint.url), attempts, error: outcome.error };
    if (failed?.dead) {
      result.deadLettered++;
      logger.warn(fields, "outbox event dead-lettered: the account's later events for this endpoint wait until staff replay or skip it");
    } else {
      logger.debug(fields, 'outbox delivery failed; will retry');
    }
  }

  async function runRound(): Promise<RoundResult> {
    const result: RoundResult = { claimed: 0, delivered: 0, failed: 0, deadLettered: 0 };
    await configure();
    const { served, unreadable } = await servedEndpoints(pool, keyRing, options.endpointIds);
    for (const u of unreadable) {
      if (!unreadableReported.has(u.id)) logger.error({ endpoint: u.id, reason: u.reason }, 'outbox endpoint not served: its secret cannot be opened');
    }
    unreadableReported.clear();
    for (const u of unreadable) unreadableReported.add(u.id);
    if (served.length === 0) return result;
    const ownerId = await ensureOwner();
    for (const endpoint of served) {
      await fanOut(pool, endpoint.key, accountIds);
      const claimed = await claimDeliveries(pool, endpoint.key, ownerId, batchSize, claimLeaseMs);
      result.claimed += claimed.length;
      // Claimed deliveries are heads of distinct accounts: independent of each other.
      let next = 0;
      const workers = Array.from({ length: Math.min(concurrency, claimed.length) }, async () => {
        while (next < claimed.length) await settle(endpoint, claimed[next++]!, ownerId, result);
      });
      const settled = await Promise.allSettled(workers);
      const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failure) throw failure.reason;
    }
    return result;
  }

  /** One round over every endpoint. Rounds never overlap: a call while one runs waits for it and runs the next. */
  async function runOnce(): Promise<RoundResult> {
    while (round) await round.catch(() => undefined);
    round = runRound();
    try {
      return await round;
    } finally {
      round = undefined;
    }
  }

  async function run(): Promise<void> {
    let failures = 0;
    while (!stopping) {
      let busy = false;
      try {
        busy = (await runOnce()).claimed > 0;
        failures = 0;
      } catch (err) {
        failures++;
        logger.error({ err, failures }, 'outbox publisher round failed');
        if (owner?.lost) releaseOwner();
      }
      // Work found: go again at once (the account's next event may be due now); else wait for the poll.
      if (!busy && !stopping) await idle(failures > 0 ? Math.min(pollIntervalMs * 2 ** failures, 30_000) : pollIntervalMs);
    }
  }

  function idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  return {
    start(): void {
      if (loop) return;
      stopping = false;
      loop = run();
    },
    /** Finishes the round in flight (its deliveries are recorded), then releases the publisher's lock. */
    async stop(): Promise<void> {
      stopping = true;
      wake?.();
      await loop;
      loop = undefined;
      while (round) await round.catch(() => undefined);
      releaseOwner();
    },
    runOnce,
  };
}

export type OutboxPublisher = ReturnType<typeof createOutboxPublisher>;
