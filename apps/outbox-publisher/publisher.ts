import { randomInt } from 'node:crypto';
import type { Pool, PoolClient } from '../../lib/db';
import type { Logger } from '../../lib/logger';
import { signWebhook } from '../../lib/webhook-signature';
import { claimDeliveries, fanOut, markDelivered, markFailed, OWNER_LOCK_NAMESPACE, registerEndpoint, type ClaimedDelivery } from './store';

export { outboxLag, registerEndpoint, replayDeadLetters, type OutboxLag, type ReplayedDeadLetter } from './store';

/** Cap of the retry delay (OUTBOX_BACKOFF_BASE_MS doubles per failed attempt up to this). */
export const MAX_BACKOFF_MS = 5 * 60_000;
export const REQUEST_TIMEOUT_MS = 10_000;
/** Deliveries of one batch in flight at once (each to a different account). */
const DEFAULT_CONCURRENCY = 16;

export interface OutboxPublisherOptions {
  pool: Pool;
  endpoints: readonly string[];
  secret: string;
  batchSize: number;
  pollIntervalMs: number;
  maxAttempts: number;
  backoffBaseMs: number;
  logger: Logger;
  fetch?: typeof fetch;
  /** Test-only scope: fan out only these accounts' events. Production leaves it unset (every event). */
  accountIds?: readonly string[];
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

/** Delay before the next attempt after `attempts` failed ones (1, 2, ...): base · 2^(attempts−1), capped. */
export function backoffMs(baseMs: number, attempts: number): number {
  return Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, attempts - 1));
}

/**
 * Delivers outbox events to operator endpoints as signed webhooks (POST, body = the stored payload bytes,
 * X-Signature / X-Event-Id / X-Event-Type). Each round, per endpoint: fan out new events into delivery
 * rows, claim the due head of each account (short transactions, FOR UPDATE SKIP LOCKED, so several
 * publishers can run), deliver those concurrently, record each outcome. 2xx is delivered; anything else,
 * a network error or a timeout is retried with exponential backoff, then dead-lettered after maxAttempts,
 * which releases the account's later events.
 *
 * Delivery is at least once: a crash after the endpoint answered 2xx but before the outcome is recorded
 * sends the same event again (same bytes, same X-Event-Id). Consumers dedupe by event id.
 *
 * Liveness of a claim: each publisher holds a session advisory lock (OWNER_LOCK_NAMESPACE, owner id) on a
 * dedicated connection while it runs; when the process dies, PostgreSQL drops the lock with the
 * connection and other publishers (or the restarted one) take its claims over at once.
 */
export function createOutboxPublisher(options: OutboxPublisherOptions) {
  const { pool, secret, batchSize, pollIntervalMs, maxAttempts, backoffBaseMs, logger, accountIds } = options;
  const endpoints = [...new Set(options.endpoints)];
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const concurrency = Math.max(1, Math.min(options.concurrency ?? DEFAULT_CONCURRENCY, batchSize));
  const claimLeaseMs = options.claimLeaseMs ?? timeoutMs * Math.ceil(batchSize / concurrency) + 30_000;

  let owner: { client: PoolClient; id: number; lost: boolean } | undefined;
  const registered = new Set<string>();
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

  async function deliver(d: ClaimedDelivery): Promise<{ ok: true } | { ok: false; error: string }> {
    try {
      const response = await doFetch(d.endpoint, {
        method: 'POST',
        body: d.body,
        headers: {
          'Content-Type': 'application/json',
          'X-Signature': signWebhook(secret, d.body, Date.now() / 1000),
          'X-Event-Id': d.eventId,
          'X-Event-Type': d.eventType,
        },
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

  async function settle(d: ClaimedDelivery, ownerId: number, result: RoundResult): Promise<void> {
    const outcome = await deliver(d);
    if (outcome.ok) {
      await markDelivered(pool, d);
      result.delivered++;
      return;
    }
    const attempts = d.attempts + 1;
    const failed = await markFailed(pool, d, ownerId, outcome.error, backoffMs(backoffBaseMs, attempts), maxAttempts);
    result.failed++;
    if (failed?.dead) {
      result.deadLettered++;
      logger.warn({ eventId: d.eventId, eventType: d.eventType, endpoint: redact(d.endpoint), attempts, error: outcome.error }, 'outbox event dead-lettered');
    } else {
      logger.debug({ eventId: d.eventId, endpoint: redact(d.endpoint), attempts, error: outcome.error }, 'outbox delivery failed; will retry');
    }
  }

  async function runRound(): Promise<RoundResult> {
    const result: RoundResult = { claimed: 0, delivered: 0, failed: 0, deadLettered: 0 };
    if (endpoints.length === 0) return result;
    const ownerId = await ensureOwner();
    for (const endpoint of endpoints) {
      if (!registered.has(endpoint)) {
        await registerEndpoint(pool, endpoint);
        registered.add(endpoint);
      }
      await fanOut(pool, endpoint, accountIds);
      const claimed = await claimDeliveries(pool, endpoint, ownerId, batchSize, claimLeaseMs);
      result.claimed += claimed.length;
      // Claimed deliveries are heads of distinct accounts: independent of each other.
      let next = 0;
      const workers = Array.from({ length: Math.min(concurrency, claimed.length) }, async () => {
        while (next < claimed.length) await settle(claimed[next++]!, ownerId, result);
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

/** Endpoint URLs may carry credentials or tokens: logs get the origin only. */
function redact(endpoint: string): string {
  try {
    return new URL(endpoint).origin;
  } catch {
    return '[invalid url]';
  }
}
