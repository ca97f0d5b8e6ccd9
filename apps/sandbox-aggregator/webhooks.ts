import http from 'node:http';
import https from 'node:https';
import type pg from 'pg';
import type { Logger } from '../../lib/logger';
import { signWebhook } from '../../lib/webhook-signature';
import type { WebhookEvent } from './objects';
import type { Scheduler } from './scheduler';
import { inUnit, type Unit } from './store';

export interface WebhookRetryPolicy {
  /** Total delivery attempts per event, the first included. */
  attempts: number;
  /** Delay before the 2nd attempt; doubles for each later one. */
  baseDelayMs: number;
  maxDelayMs?: number;
  /** Per-attempt limit; a receiver slower than this counts as a failed attempt. */
  timeoutMs?: number;
}

export const DEFAULT_WEBHOOK_RETRY = { attempts: 8, baseDelayMs: 500, maxDelayMs: 30_000, timeoutMs: 10_000 } satisfies Required<WebhookRetryPolicy>;

export interface DeliveryAttempt {
  attempt: number;
  at: string;
  status_code?: number;
  error?: string;
  duration_ms: number;
}

/**
 * held: an event kept back to follow a later one (out_of_order); waiting: its first attempt waits for
 * another delivery's first attempt; then scheduled, retrying, and delivered or exhausted.
 */
export type DeliveryState = 'held' | 'waiting' | 'scheduled' | 'in_flight' | 'retrying' | 'delivered' | 'exhausted';

export interface DeliveryView {
  delivery_id: number;
  event_id: string;
  type: WebhookEvent['type'];
  reference: string;
  object_id: string;
  created_at: string;
  state: DeliveryState;
  attempts: DeliveryAttempt[];
  event: WebhookEvent;
}

export interface DispatcherOptions {
  pool: pg.Pool;
  url: string;
  secret: string;
  retry: Required<WebhookRetryPolicy>;
  logger: Logger;
  scheduler: Scheduler;
  now: () => Date;
  /** While true (a simulated outage), no attempt is made: each due one waits for resumePaused(). */
  paused?: () => boolean;
}

/** If the sandbox's own database cannot record an attempt, the attempt is made again this much later. */
const STORE_UNAVAILABLE_RETRY_MS = 1_000;

/**
 * Webhook deliveries, kept in the sandbox's database: each is written in the transaction that made its event,
 * and every attempt is recorded, so a restarted sandbox sends what was still due (at least once, as real
 * aggregators do: an attempt cut short by the restart is made again).
 */
export class WebhookDispatcher {
  private readonly inFlight = new Map<number, AbortController>();
  /** Deliveries whose attempt came due while paused; made when resumePaused() is called. */
  private readonly deferred = new Set<number>();
  private readonly url: URL;

  constructor(private readonly opts: DispatcherOptions) {
    this.url = new URL(opts.url);
  }

  /**
   * Queues a delivery of `event`, sent once the unit commits. With `after`, its first attempt waits until that
   * delivery's first attempt has finished (how a scenario makes events arrive in a chosen, possibly wrong,
   * order); `held` keeps it back until release().
   */
  async send(unit: Unit, event: WebhookEvent, reference: string, options: { after?: number; held?: boolean } = {}): Promise<number> {
    const state: DeliveryState = options.held ? 'held' : options.after !== undefined ? 'waiting' : 'scheduled';
    const { rows } = await unit.tx.query<{ delivery_id: string }>(
      `INSERT INTO deliveries (event_id, type, reference, object_id, event_created_at, raw_body, state, after_delivery_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING delivery_id`,
      // Serialised once: every attempt and every duplicate carries the very same bytes.
      [event.id, event.type, reference, event.data.object.id, event.created_at, JSON.stringify(event), state, options.after ?? null],
    );
    const deliveryId = Number(rows[0]!.delivery_id);
    if (state === 'scheduled') unit.afterCommit(() => this.start(deliveryId, 0));
    return deliveryId;
  }

  /** The held delivery of this object, now to follow `after`'s first attempt. */
  async release(unit: Unit, objectId: string, after: number): Promise<void> {
    await unit.tx.query("UPDATE deliveries SET state = 'waiting', after_delivery_id = $2 WHERE object_id = $1 AND state = 'held'", [objectId, after]);
  }

  /** After a restart: everything still due is scheduled again. */
  async resume(): Promise<number> {
    const { rows } = await this.opts.pool.query<{ delivery_id: string; next_attempt_at: Date | null }>(
      `SELECT d.delivery_id, d.next_attempt_at FROM deliveries d
       WHERE d.state IN ('scheduled', 'retrying')
          OR (d.state = 'waiting' AND EXISTS (SELECT 1 FROM deliveries p WHERE p.delivery_id = d.after_delivery_id AND (jsonb_array_length(p.attempts) > 0 OR p.state IN ('delivered', 'exhausted'))))
       ORDER BY d.delivery_id`,
    );
    const now = this.opts.now().getTime();
    for (const row of rows) this.start(Number(row.delivery_id), row.next_attempt_at ? Math.max(0, row.next_attempt_at.getTime() - now) : 0);
    return rows.length;
  }

  async list(reference?: string): Promise<DeliveryView[]> {
    const { rows } = await this.opts.pool.query(
      `SELECT delivery_id, event_id, type, reference, object_id, event_created_at, raw_body, state, attempts FROM deliveries
       WHERE $1::text IS NULL OR reference = $1 ORDER BY delivery_id`,
      [reference ?? null],
    );
    return rows.map((row) => ({
      delivery_id: Number(row.delivery_id),
      event_id: row.event_id,
      type: row.type,
      reference: row.reference,
      object_id: row.object_id,
      created_at: row.event_created_at,
      state: this.inFlight.has(Number(row.delivery_id)) ? 'in_flight' : row.state,
      attempts: row.attempts,
      event: JSON.parse(row.raw_body) as WebhookEvent,
    }));
  }

  /**
   * The outage is over: every attempt held back is made now (its retry budget untouched, since nothing was
   * sent). Attempts in flight when it began finish as they would.
   */
  resumePaused(): void {
    const due = [...this.deferred];
    this.deferred.clear();
    for (const deliveryId of due) this.start(deliveryId, 0);
  }

  /** Stops sending; what was still due stays due in the database for the next start. */
  close(): void {
    for (const controller of this.inFlight.values()) controller.abort();
  }

  private start(deliveryId: number, delayMs: number): void {
    this.opts.scheduler.after(delayMs, () => this.attempt(deliveryId), `delivery:${deliveryId}`);
  }

  private async attempt(deliveryId: number): Promise<void> {
    const { retry, logger, pool, scheduler } = this.opts;
    if (scheduler.isClosed || this.inFlight.has(deliveryId)) return;
    let delivery: { raw_body: string; event_id: string; type: string; reference: string; state: DeliveryState; attempts: DeliveryAttempt[] } | undefined;
    try {
      delivery = (await pool.query('SELECT raw_body, event_id, type, reference, state, attempts FROM deliveries WHERE delivery_id = $1', [deliveryId])).rows[0];
    } catch (err) {
      logger.warn({ err, delivery_id: deliveryId }, 'sandbox store unavailable; webhook attempt postponed');
      this.start(deliveryId, STORE_UNAVAILABLE_RETRY_MS);
      return;
    }
    if (!delivery || (delivery.state !== 'scheduled' && delivery.state !== 'retrying')) return;
    // Checked after the read, right before sending: an outage that began meanwhile holds this attempt too.
    if (this.opts.paused?.()) {
      this.deferred.add(deliveryId);
      return;
    }
    const attempt = delivery.attempts.length + 1;
    const startedAt = this.opts.now();
    const started = performance.now();
    // Signed per attempt, like real aggregators: a late retry still passes the receiver's tolerance check.
    const signature = signWebhook(this.opts.secret, delivery.raw_body, Math.floor(startedAt.getTime() / 1000));
    const controller = new AbortController();
    this.inFlight.set(deliveryId, controller);
    let statusCode: number | undefined;
    let error: string | undefined;
    try {
      statusCode = await postJson(this.url, delivery.raw_body, signature, retry.timeoutMs, controller.signal);
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      this.inFlight.delete(deliveryId);
    }
    if (scheduler.isClosed) return;

    const record: DeliveryAttempt = {
      attempt,
      at: startedAt.toISOString(),
      ...(statusCode !== undefined ? { status_code: statusCode } : {}),
      ...(error !== undefined ? { error } : {}),
      duration_ms: Math.round(performance.now() - started),
    };
    const context = { event_id: delivery.event_id, type: delivery.type, reference: delivery.reference, attempt, status_code: statusCode, error };
    const delivered = statusCode !== undefined && statusCode >= 200 && statusCode < 300;
    const state: DeliveryState = delivered ? 'delivered' : attempt >= retry.attempts ? 'exhausted' : 'retrying';
    const delayMs = Math.min(retry.baseDelayMs * 2 ** (attempt - 1), retry.maxDelayMs);
    let released: number[];
    try {
      released = await inUnit(pool, async (unit) => {
        await unit.tx.query('UPDATE deliveries SET attempts = attempts || $2::jsonb, state = $3, next_attempt_at = $4 WHERE delivery_id = $1', [
          deliveryId,
          JSON.stringify([record]),
          state,
          state === 'retrying' ? new Date(startedAt.getTime() + delayMs) : null,
        ]);
        if (attempt > 1) return [];
        const waiting = await unit.tx.query<{ delivery_id: string }>("UPDATE deliveries SET state = 'scheduled' WHERE after_delivery_id = $1 AND state = 'waiting' RETURNING delivery_id", [deliveryId]);
        return waiting.rows.map((row) => Number(row.delivery_id));
      });
    } catch (err) {
      // The attempt happened but is not on record: it is made again (the receiver dedupes by event id).
      logger.warn({ ...context, err }, 'sandbox store unavailable; webhook attempt not recorded, will be made again');
      this.start(deliveryId, STORE_UNAVAILABLE_RETRY_MS);
      return;
    }
    if (state === 'delivered') logger.info(context, 'sandbox webhook delivered');
    else if (state === 'exhausted') logger.error(context, 'sandbox webhook gave up after the last attempt');
    else {
      logger.warn({ ...context, retry_in_ms: delayMs }, 'sandbox webhook attempt failed, will retry');
      this.start(deliveryId, delayMs);
    }
    for (const next of released) this.start(next, 0);
  }
}

/** One POST; resolves with the status code (any), rejects on network error, timeout or abort. */
function postJson(url: URL, body: string, signature: string, timeoutMs: number, signal: AbortSignal): Promise<number> {
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const request = transport.request(
      url,
      {
        method: 'POST',
        // No keep-alive pool: nothing lingers after close, and each attempt is a fresh connection as from a real sender.
        agent: false,
        signal,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-signature': signature,
          'user-agent': 'sandbox-aggregator-webhooks/1',
        },
      },
      (response) => {
        response.resume();
        response.once('end', () => resolve(response.statusCode ?? 0));
        response.once('error', reject);
      },
    );
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.once('error', reject);
    request.end(body);
  });
}
