import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../../lib/logger';
import type { WebhookEvent } from './objects';
import type { Scheduler } from './scheduler';
import { signWebhook } from '../../lib/webhook-signature';

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

export type DeliveryState = 'scheduled' | 'in_flight' | 'retrying' | 'delivered' | 'exhausted' | 'cancelled';

/** One delivery of one event. A duplicate callback is a second delivery of the same event (same event id). */
export interface Delivery {
  deliveryId: number;
  event: WebhookEvent;
  rawBody: string;
  reference: string;
  state: DeliveryState;
  attempts: DeliveryAttempt[];
  firstAttemptDone: Promise<void>;
  markFirstAttemptDone: () => void;
}

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
  url: string;
  secret: string;
  retry: Required<WebhookRetryPolicy>;
  logger: Logger;
  scheduler: Scheduler;
  now: () => Date;
}

export class WebhookDispatcher {
  private readonly deliveries: Delivery[] = [];
  private readonly inFlight = new Set<AbortController>();
  private readonly url: URL;

  constructor(private readonly opts: DispatcherOptions) {
    this.url = new URL(opts.url);
  }

  /**
   * Queues a delivery. With `after`, the first attempt waits until that delivery's first attempt has
   * finished, which is how a scenario makes events arrive in a chosen (possibly wrong) order.
   */
  send(event: WebhookEvent, reference: string, options: { after?: Delivery } = {}): Delivery {
    let markFirstAttemptDone!: () => void;
    const firstAttemptDone = new Promise<void>((resolve) => (markFirstAttemptDone = resolve));
    const delivery: Delivery = {
      deliveryId: this.deliveries.length + 1,
      event,
      // Serialised once: every attempt and every duplicate carries the very same bytes.
      rawBody: JSON.stringify(event),
      reference,
      state: 'scheduled',
      attempts: [],
      firstAttemptDone,
      markFirstAttemptDone,
    };
    this.deliveries.push(delivery);
    const start = () => this.opts.scheduler.after(0, () => this.attempt(delivery), this.owner(delivery));
    if (options.after) void options.after.firstAttemptDone.then(start);
    else start();
    return delivery;
  }

  list(reference?: string): DeliveryView[] {
    return this.deliveries
      .filter((d) => reference === undefined || d.reference === reference)
      .map((d) => ({
        delivery_id: d.deliveryId,
        event_id: d.event.id,
        type: d.event.type,
        reference: d.reference,
        object_id: d.event.data.object.id,
        created_at: d.event.created_at,
        state: d.state,
        attempts: d.attempts.map((a) => ({ ...a })),
        event: d.event,
      }));
  }

  close(): void {
    for (const controller of this.inFlight) controller.abort();
    for (const d of this.deliveries) {
      if (d.state === 'scheduled' || d.state === 'retrying' || d.state === 'in_flight') d.state = 'cancelled';
      d.markFirstAttemptDone();
    }
  }

  private owner(delivery: Delivery): string {
    return `delivery:${delivery.deliveryId}`;
  }

  private async attempt(delivery: Delivery): Promise<void> {
    if (this.opts.scheduler.isClosed) return;
    const { retry, logger } = this.opts;
    const attempt = delivery.attempts.length + 1;
    const startedAt = this.opts.now();
    const started = performance.now();
    delivery.state = 'in_flight';
    // Signed per attempt, like real aggregators: a late retry still passes the receiver's tolerance check.
    const signature = signWebhook(this.opts.secret, delivery.rawBody, Math.floor(startedAt.getTime() / 1000));
    const controller = new AbortController();
    this.inFlight.add(controller);
    let statusCode: number | undefined;
    let error: string | undefined;
    try {
      statusCode = await postJson(this.url, delivery.rawBody, signature, retry.timeoutMs, controller.signal);
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      this.inFlight.delete(controller);
    }
    if (this.opts.scheduler.isClosed) return;

    delivery.attempts.push({
      attempt,
      at: startedAt.toISOString(),
      ...(statusCode !== undefined ? { status_code: statusCode } : {}),
      ...(error !== undefined ? { error } : {}),
      duration_ms: Math.round(performance.now() - started),
    });
    const context = { event_id: delivery.event.id, type: delivery.event.type, reference: delivery.reference, attempt, status_code: statusCode, error };
    if (statusCode !== undefined && statusCode >= 200 && statusCode < 300) {
      delivery.state = 'delivered';
      logger.info(context, 'sandbox webhook delivered');
    } else if (attempt >= retry.attempts) {
      delivery.state = 'exhausted';
      logger.error(context, 'sandbox webhook gave up after the last attempt');
    } else {
      delivery.state = 'retrying';
      const delayMs = Math.min(retry.baseDelayMs * 2 ** (attempt - 1), retry.maxDelayMs);
      logger.warn({ ...context, retry_in_ms: delayMs }, 'sandbox webhook attempt failed, will retry');
      this.opts.scheduler.after(delayMs, () => this.attempt(delivery), this.owner(delivery));
    }
    if (attempt === 1) delivery.markFirstAttemptDone();
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
