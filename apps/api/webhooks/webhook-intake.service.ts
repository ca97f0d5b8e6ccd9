import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { FastifyBaseLogger } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../../lib/config';
import { verifyWebhookSignature } from '../../../lib/webhook-signature';
import { DEPOSIT_REVERSAL_TYPE, depositEventSignal, depositReversalWorkflowId, type DepositReversalInput, type ProviderDepositEvent } from '../../../contracts/deposit';
import { payoutIdOfReference, providerEventSignal, type ProviderPayoutEvent } from '../../../contracts/payout';
import { DEPOSIT_PROVIDER, providerConnections, type ProviderConnection } from '../../../lib/providers';
import { ProblemError } from '../common/problem';
import type { ApiMetrics } from '../metrics/metrics';
import type { TrafficControl } from '../traffic/traffic-control';
import type { WebhookEventStore } from './webhook-events.store';

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
      reversal_reason: z.string().max(200).optional(),
    }),
  }),
});
type ProviderEvent = z.infer<typeof eventSchema>;

export const ackBody = z.object({ received: z.literal(true), duplicate: z.boolean(), delivered: z.enum(['signalled', 'already_signalled', 'saga_closed', 'return_saga_started', 'reversal_saga_started', 'unknown_reference', 'ignored_type']) });
export type Ack = z.infer<typeof ackBody>;

const PAYOUT_EVENT_STATUS: Record<string, ProviderPayoutEvent['providerStatus']> = {
  'payout.settled': 'settled',
  'payout.failed': 'failed',
  'payout.returned': 'returned',
};

const DEPOSIT_EVENT_STATUS: Record<string, ProviderDepositEvent['providerStatus']> = {
  'deposit.succeeded': 'succeeded',
  'deposit.failed': 'failed',
};

/** Which saga an event type goes to, and the signal it sends there. */
interface EventRoute {
  kind: 'payout' | 'deposit';
  /** The saga's workflow id: the payout or deposit id the reference names. */
  sagaId: string;
  signal(handle: WorkflowHandle, event: ProviderEvent): Promise<void>;
}

function routeFor(event: ProviderEvent, provider: string): EventRoute | undefined {
  const payoutStatus = PAYOUT_EVENT_STATUS[event.type];
  if (payoutStatus) {
    return {
      kind: 'payout',
      // A later attempt's reference is `<payout id>:a<n>`: the saga is the payout's.
      sagaId: payoutIdOfReference(event.data.object.reference),
      signal: (handle, e) =>
        handle.signal(providerEventSignal, {
          eventId: e.id,
          source: 'webhook',
          providerStatus: payoutStatus,
          providerPayoutId: e.data.object.id,
          failureCode: e.data.object.failure_code,
          returnReason: e.data.object.return_reason,
          occurredAt: e.created_at,
          provider,
          reference: e.data.object.reference,
        }),
    };
  }
  const depositStatus = DEPOSIT_EVENT_STATUS[event.type];
  // Deposits are taken through one provider: another's deposit events name nothing of ours.
  if (depositStatus && provider === DEPOSIT_PROVIDER) {
    return {
      kind: 'deposit',
      sagaId: event.data.object.reference,
      signal: (handle, e) =>
        handle.signal(depositEventSignal, {
          eventId: e.id,
          source: 'webhook',
          providerStatus: depositStatus,
          providerDepositId: e.data.object.id,
          failureCode: e.data.object.failure_code,
          occurredAt: e.created_at,
        }),
    };
  }
  return undefined;
}

const SIGNAL_DEADLINE_MS = 5_000;

/**
 * Provider callbacks: verified (HMAC over the raw body, timestamp tolerance), stored once per provider
 * event id before they are acknowledged, then delivered to the saga as a signal (payout.* to the payout
 * saga, deposit.* to the deposit saga; the reference is the workflow id). A delivery that cannot be
 * signalled answers 503 so the provider retries; a duplicate is acknowledged and not signalled again.
 */
export class WebhookIntake {
  private readonly providers: Map<string, ProviderConnection>;

  constructor(
    private readonly config: Config,
    private readonly inbox: WebhookEventStore,
    private readonly temporal: Client,
    private readonly metrics: ApiMetrics,
    private readonly traffic: TrafficControl,
  ) {
    this.providers = new Map(providerConnections(config).map((c) => [c.name, c]));
  }

  async receive(provider: string, signature: string | string[] | undefined, raw: Buffer, requestLog: FastifyBaseLogger): Promise<Ack> {
    // Each provider signs with its own secret: one provider's webhook is refused on another's route.
    const connection = this.providers.get(provider);
    if (!connection) throw new ProblemError('NOT_FOUND', `Unknown provider ${provider}`);
    const verdict = verifyWebhookSignature(connection.webhookSecret, signature, raw, { toleranceSeconds: this.config.WEBHOOK_TOLERANCE_SECONDS });
    if (!verdict.ok) {
      requestLog.warn({ provider, reason: verdict.reason }, 'webhook signature refused');
      throw new ProblemError('WEBHOOK_SIGNATURE_INVALID', verdict.reason);
    }
    // Counted once signed: forged deliveries cannot spend the provider's allowance.
    await this.traffic.rateLimits.consume('webhook', provider);
    // Signed by the provider but not an event we understand: a 400 tells it so (a 5xx would be retried forever).
    const parsed = eventSchema.safeParse(safeJson(raw));
    if (!parsed.success) throw new ProblemError('VALIDATION_FAILED', `not a provider event: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const event: ProviderEvent = parsed.data;
    const route = routeFor(event, provider);
    const reference = route?.sagaId ?? event.data.object.reference;
    const log = requestLog.child({ provider, eventId: event.id, eventType: event.type, workflowId: reference });

    // An event id is one event: handled once whatever its type, and never re-used for another body.
    const stored = await this.inbox.store(provider, { id: event.id, type: event.type, reference }, JSON.stringify(event));
    if (stored.duplicate && !stored.sameBody) {
      await this.inbox.countConflictingDelivery(provider, event.id);
      this.metrics.webhookEventConflicts.inc({ provider });
      log.error('webhook event id re-used with a different body: refused');
      throw new ProblemError('WEBHOOK_EVENT_CONFLICT', `Event ${event.id} was received before with a different body; it is not acted on`);
    }
    const { duplicate } = stored;
    if (duplicate) this.metrics.webhookDuplicates.inc({ provider });
    if (event.type === 'deposit.reversed' && provider === DEPOSIT_PROVIDER) return this.reversal(provider, event, stored, log);
    if (!route) {
      await this.inbox.markSignalled(provider, event.id);
      return { received: true, duplicate, delivered: 'ignored_type' };
    }
    if (stored.signalled) {
      log.info('duplicate webhook acknowledged');
      return { received: true, duplicate, delivered: 'already_signalled' };
    }
    try {
      // Bounded: a provider waiting on us should get its 503 (and retry) in seconds, not after gRPC retries.
      // Marked signalled only after the signal is sent: a crash in between means one more (harmless) signal,
      // never a lost one; concurrent deliveries may both signal, and the saga ignores what it already knows.
      await this.temporal.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () => route.signal(this.temporal.workflow.getHandle(reference), event));
      await this.inbox.markSignalled(provider, event.id);
      log.info('webhook signalled to saga');
      return { received: true, duplicate, delivered: 'signalled' };
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) {
        log.error({ err }, 'webhook stored but not signalled; provider will retry');
        throw new ProblemError('SERVICE_UNAVAILABLE', 'The event is stored but could not be delivered yet; retry');
      }
    }
    // No running saga: it has closed, or never existed.
    const known = await this.inbox.knows(route.kind, reference);
    if (known && event.type === 'payout.returned') {
      await this.startReturnSaga(reference, event);
      await this.inbox.markSignalled(provider, event.id);
      log.warn('return after the payout saga closed: return saga started');
      return { received: true, duplicate, delivered: 'return_saga_started' };
    }
    await this.inbox.markSignalled(provider, event.id);
    log.warn({ known }, 'webhook for a saga that is not running');
    return { received: true, duplicate, delivered: known ? 'saga_closed' : 'unknown_reference' };
  }

  /**
   * A chargeback of a deposit, after its saga closed: a reversal saga (one running per deposit, whatever the
   * number of deliveries) checks it with the provider and takes the money back once (by ledger key). A later
   * delivery may start a new run after an earlier one found nothing to do: the keys keep it to once.
   */
  private async reversal(provider: string, event: ProviderEvent, stored: { duplicate: boolean; signalled: boolean }, log: FastifyBaseLogger): Promise<Ack> {
    const { duplicate } = stored;
    if (stored.signalled) return { received: true, duplicate, delivered: 'already_signalled' };
    const depositId = event.data.object.reference;
    if (!(await this.inbox.knows('deposit', depositId))) {
      await this.inbox.markSignalled(provider, event.id);
      log.warn('reversal of a deposit the platform does not know');
      return { received: true, duplicate, delivered: 'unknown_reference' };
    }
    const input: DepositReversalInput = { depositId, reason: event.data.object.reversal_reason ?? 'chargeback', source: 'provider', eventId: event.id };
    try {
      await this.temporal.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () =>
        this.temporal.workflow
          .start(DEPOSIT_REVERSAL_TYPE, { workflowId: depositReversalWorkflowId(depositId), taskQueue: this.config.TEMPORAL_TASK_QUEUE, args: [input], workflowIdConflictPolicy: 'USE_EXISTING', workflowIdReusePolicy: 'ALLOW_DUPLICATE' })
          .catch((startErr: unknown) => {
            if (!(startErr instanceof WorkflowExecutionAlreadyStartedError)) throw startErr;
          }),
      );
    } catch (err) {
      log.error({ err }, 'reversal stored but its saga not started; provider will retry');
      throw new ProblemError('SERVICE_UNAVAILABLE', 'The event is stored but could not be delivered yet; retry');
    }
    await this.inbox.markSignalled(provider, event.id);
    log.warn('deposit reversed by the provider: reversal saga started');
    return { received: true, duplicate, delivered: 'reversal_saga_started' };
  }

  /** Returned after the saga's return window: a return saga refunds the player (once, by ledger key). */
  private async startReturnSaga(payoutId: string, event: ProviderEvent): Promise<void> {
    await this.temporal.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () =>
      this.temporal.workflow
        .start('payoutReturnWorkflow', {
          workflowId: `${payoutId}:return`,
          taskQueue: this.config.TEMPORAL_TASK_QUEUE,
          args: [{ payoutId, returnReason: event.data.object.return_reason ?? 'returned', eventId: event.id }],
          workflowIdConflictPolicy: 'USE_EXISTING',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
        })
        .catch((startErr: unknown) => {
          if (!(startErr instanceof WorkflowExecutionAlreadyStartedError)) throw startErr;
        }),
    );
  }
}

function safeJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
}
