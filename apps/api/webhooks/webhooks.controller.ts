import { Controller, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { verifyWebhookSignature } from '../../../lib/webhook-signature';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import { providerEventSignal, type ProviderPayoutEvent } from '../../../workflows/payout/definitions';
import { depositEventSignal, type ProviderDepositEvent } from '../../../workflows/deposit/definitions';
import { Public } from '../auth/auth';
import { ProblemError } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import type { ApiMetrics } from '../metrics/metrics';
import { CONFIG, METRICS, PG_POOL, TEMPORAL_CLIENT, TRAFFIC } from '../tokens';
import type { TrafficControl } from '../traffic/traffic-control';
import { OpenWhenReadOnly } from '../traffic/traffic.guard';

const eventSchema = z.object({
  id: z.string().min(1).max(255),
  type: z.string().min(1).max(100),
  created_at: z.string(),
  data: z.object({
    object: z.looseObject({
      id: z.string(),
      reference: z.string().min(1).max(255),
      status: z.string(),
      failure_code: z.string().optional(),
      return_reason: z.string().optional(),
    }),
  }),
});
type ProviderEvent = z.infer<typeof eventSchema>;

const PAYOUT_EVENT_STATUS: Record<string, ProviderPayoutEvent['providerStatus']> = {
  'payout.settled': 'settled',
  'payout.failed': 'failed',
  'payout.returned': 'returned',
};

const DEPOSIT_EVENT_STATUS: Record<string, ProviderDepositEvent['providerStatus']> = {
  'deposit.succeeded': 'succeeded',
  'deposit.failed': 'failed',
};

/** Which saga an event type goes to: the signal to send, and the read model that knows its references. */
interface EventRoute {
  signal(handle: WorkflowHandle, event: ProviderEvent): Promise<void>;
  knownSql: string;
}

function routeFor(event: ProviderEvent): EventRoute | undefined {
  const payoutStatus = PAYOUT_EVENT_STATUS[event.type];
  if (payoutStatus) {
    return {
      signal: (handle, e) =>
        handle.signal(providerEventSignal, {
          eventId: e.id,
          source: 'webhook',
          providerStatus: payoutStatus,
          providerPayoutId: e.data.object.id,
          failureCode: e.data.object.failure_code,
          returnReason: e.data.object.return_reason,
          occurredAt: e.created_at,
        }),
      knownSql: 'SELECT 1 FROM payouts WHERE payout_id = $1',
    };
  }
  const depositStatus = DEPOSIT_EVENT_STATUS[event.type];
  if (depositStatus) {
    return {
      signal: (handle, e) =>
        handle.signal(depositEventSignal, {
          eventId: e.id,
          source: 'webhook',
          providerStatus: depositStatus,
          providerDepositId: e.data.object.id,
          failureCode: e.data.object.failure_code,
          occurredAt: e.created_at,
        }),
      knownSql: 'SELECT 1 FROM deposits WHERE deposit_id = $1',
    };
  }
  return undefined;
}

const SIGNAL_DEADLINE_MS = 5_000;

const ackBody = z.object({ received: z.literal(true), duplicate: z.boolean(), delivered: z.enum(['signalled', 'already_signalled', 'saga_closed', 'return_saga_started', 'unknown_reference', 'ignored_type']) });
type Ack = z.infer<typeof ackBody>;

/**
 * Provider callbacks: verified (HMAC over the raw body, timestamp tolerance), stored once per provider
 * event id before they are acknowledged, then delivered to the saga as a signal (payout.* to the payout
 * saga, deposit.* to the deposit saga; the reference is the workflow id). A delivery that cannot be
 * signalled answers 503 so the provider retries; a duplicate is acknowledged and not signalled again.
 */
@Controller('v1/webhooks')
export class WebhooksController {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
    @Inject(METRICS) private readonly metrics: ApiMetrics,
    @Inject(TRAFFIC) private readonly traffic: TrafficControl,
  ) {}

  @Public()
  @OpenWhenReadOnly()
  @Post(':provider')
  @HttpCode(200)
  async receive(@Param('provider') provider: string, @Req() request: FastifyRequest): Promise<Ack> {
    if (provider !== 'sandbox') throw new ProblemError('NOT_FOUND', `Unknown provider ${provider}`);
    const raw = request.rawBody ?? Buffer.alloc(0);
    const verdict = verifyWebhookSignature(this.config.SANDBOX_WEBHOOK_SECRET, request.headers['x-signature'], raw, { toleranceSeconds: this.config.WEBHOOK_TOLERANCE_SECONDS });
    if (!verdict.ok) {
      request.log.warn({ provider, reason: verdict.reason }, 'webhook signature refused');
      throw new ProblemError('WEBHOOK_SIGNATURE_INVALID', verdict.reason);
    }
    // Counted once signed: forged deliveries cannot spend the provider's allowance.
    await this.traffic.rateLimits.consume('webhook', provider);
    // Signed by the provider but not an event we understand: a 400 tells it so (a 5xx would be retried forever).
    const parsed = eventSchema.safeParse(safeJson(raw));
    if (!parsed.success) throw new ProblemError('VALIDATION_FAILED', `not a provider event: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const event: ProviderEvent = parsed.data;
    const reference = event.data.object.reference;
    const log = request.log.child({ provider, eventId: event.id, eventType: event.type, workflowId: reference });

    const inserted = await this.pool.query(
      `INSERT INTO webhook_events (provider, event_id, event_type, reference, payload) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (provider, event_id) DO NOTHING`,
      [provider, event.id, event.type, reference, JSON.stringify(event)],
    );
    const duplicate = inserted.rowCount === 0;
    // An event id is one event: handled once whatever its type, and never re-used for another body.
    const stored = await this.pool.query<{ signalled: boolean; same: boolean }>(
      'SELECT signalled_at IS NOT NULL AS signalled, payload = $3::jsonb AS same FROM webhook_events WHERE provider = $1 AND event_id = $2',
      [provider, event.id, JSON.stringify(event)],
    );
    if (duplicate && stored.rows[0]?.same === false) {
      await this.pool.query('UPDATE webhook_events SET conflicting_deliveries = conflicting_deliveries + 1 WHERE provider = $1 AND event_id = $2', [provider, event.id]);
      this.metrics.webhookEventConflicts.inc({ provider });
      log.error('webhook event id re-used with a different body: refused');
      throw new ProblemError('WEBHOOK_EVENT_CONFLICT', `Event ${event.id} was received before with a different body; it is not acted on`);
    }
    if (duplicate) this.metrics.webhookDuplicates.inc({ provider });
    const route = routeFor(event);
    if (!route) {
      await this.markSignalled(provider, event.id);
      return { received: true, duplicate, delivered: 'ignored_type' };
    }
    if (stored.rows[0]?.signalled) {
      log.info('duplicate webhook acknowledged');
      return { received: true, duplicate, delivered: 'already_signalled' };
    }
    try {
      // Bounded: a provider waiting on us should get its 503 (and retry) in seconds, not after gRPC retries.
      // Marked signalled only after the signal is sent: a crash in between means one more (harmless) signal,
      // never a lost one; concurrent deliveries may both signal, and the saga ignores what it already knows.
      await this.temporal.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () => route.signal(this.temporal.workflow.getHandle(reference), event));
      await this.markSignalled(provider, event.id);
      log.info('webhook signalled to saga');
      return { received: true, duplicate, delivered: 'signalled' };
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) {
        log.error({ err }, 'webhook stored but not signalled; provider will retry');
        throw new ProblemError('SERVICE_UNAVAILABLE', 'The event is stored but could not be delivered yet; retry');
      }
      // No running saga: it has closed, or never existed.
      const known = await this.pool.query(route.knownSql, [reference]);
      if (known.rowCount === 1 && event.type === 'payout.returned') {
        // Returned after the saga's return window: a return saga refunds the player (once, by ledger key).
        await this.temporal.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () =>
          this.temporal.workflow
            .start('payoutReturnWorkflow', {
              workflowId: `${reference}:return`,
              taskQueue: this.config.TEMPORAL_TASK_QUEUE,
              args: [{ payoutId: reference, returnReason: event.data.object.return_reason ?? 'returned', eventId: event.id }],
              workflowIdConflictPolicy: 'USE_EXISTING',
              workflowIdReusePolicy: 'REJECT_DUPLICATE',
            })
            .catch((startErr: unknown) => {
              if (!(startErr instanceof WorkflowExecutionAlreadyStartedError)) throw startErr;
            }),
        );
        await this.markSignalled(provider, event.id);
        log.warn('return after the payout saga closed: return saga started');
        return { received: true, duplicate, delivered: 'return_saga_started' };
      }
      await this.markSignalled(provider, event.id);
      log.warn({ known: known.rowCount === 1 }, 'webhook for a saga that is not running');
      return { received: true, duplicate, delivered: known.rowCount === 1 ? 'saga_closed' : 'unknown_reference' };
    }
  }

  private async markSignalled(provider: string, eventId: string): Promise<void> {
    await this.pool.query('UPDATE webhook_events SET signalled_at = now() WHERE provider = $1 AND event_id = $2 AND signalled_at IS NULL', [provider, eventId]);
  }
}

function safeJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
}

export const webhookRoutes: RouteDoc[] = [
  {
    method: 'post',
    path: '/v1/webhooks/:provider',
    summary: 'Signed provider callback (X-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + raw body)>)',
    tag: 'webhooks',
    auth: 'public',
    responses: {
      200: { description: "Verified and stored, and signalled to the saga once as a claim (the saga acts only on the provider's own record)", schema: ackBody },
      400: { description: 'Signed, but not a provider event (VALIDATION_FAILED): nothing stored' },
      401: { description: 'WEBHOOK_SIGNATURE_INVALID: nothing stored' },
      404: { description: 'Unknown provider' },
      409: { description: 'WEBHOOK_EVENT_CONFLICT: this event id was received before with a different body; not acted on' },
      503: { description: 'Stored but not yet delivered to the saga: retry' },
    },
  },
];
