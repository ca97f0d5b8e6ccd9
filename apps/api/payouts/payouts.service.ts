import { backgroundTaskQueue } from '../../../lib/config';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { z } from 'zod';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import type { DestinationVault } from '../../../lib/destination-vault';
import { cancelUpdate, maskDestination, PAYOUT_NOT_CANCELLABLE, payoutStatusQuery, type PayoutView, type ReviewPolicy } from '../../../contracts/payout';
import type { MoneyAmount } from '../../../contracts/common';
import { thresholdInMinorUnits } from '../../../lib/limits';
import { providerConnections, routeOf, type ProviderConnection } from '../../../lib/providers';
import type { Principal } from '../auth/auth';
import type { StoredAnswer } from '../sagas/idempotency';
import { ProblemError } from '../common/problem';
import { timelineFor } from '../common/timeline';
import { loadOperatorFieldsOf, saveOperatorFields, type OperatorFields } from '../common/operator-metadata';
import type { IdempotentStart } from '../sagas/idempotent-start';
import { failureType, type SagaCalls } from '../sagas/saga-calls';
import { PAYOUT_SAGA, payoutViewOfRow, type PayoutRow } from './payout-saga-kind';
import type { CreatePayoutRequest, payoutBody } from './payouts.schemas';

/** A payout as the API answers it: the saga's view and the operator's own fields (reference, metadata). */
export type PayoutWithFields = PayoutView & { operator?: OperatorFields };

/** Result of POST /v1/payouts: what to send, and whether it is a replay of an earlier answer. */
export interface PayoutAnswer {
  answer: StoredAnswer;
  replayed: boolean;
  payoutId: string;
}

/** Payout requests (one saga and one answer per key: IdempotentStart), status, and cancellation before submission. */
export class PayoutsService {
  private readonly providers: ProviderConnection[];

  constructor(
    private readonly config: Config,
    private readonly starts: IdempotentStart,
    private readonly sagas: SagaCalls,
    private readonly pool: Pool,
    private readonly destinations: DestinationVault,
  ) {
    this.providers = providerConnections(config);
  }

  async create(request: CreatePayoutRequest, key: string, requestId: string): Promise<PayoutAnswer> {
    const c = this.config;
    // The route (PAYOUT_ROUTES): where it goes, then its fallbacks. A new request no provider takes is refused
    // before anything is written; a replay of one already taken is answered as before, whatever the routes now.
    const route = routeOf(c.PAYOUT_ROUTES, this.providers, { method: request.destination.method, currency: request.amount.currency, amountMinor: request.amount.minor_units }, c.LIMIT_CURRENCY_RATES);
    const unroutable = route.length === 0 ? { code: 'DESTINATION_NOT_SUPPORTED' as const, detail: `No provider takes ${request.destination.method} payouts in ${request.amount.currency}` } : undefined;
    const { answer, replayed, resourceId } = await this.starts.start(PAYOUT_SAGA, {
      request,
      key,
      requestId,
      ...(unroutable ? { refusal: unroutable } : {}),
      input: {
        accountId: request.account_id,
        amount: request.amount,
        destination: maskDestination(request.destination),
        provider: route[0] ?? 'none',
        route,
        requestedAt: new Date().toISOString(),
        timings: {
          submitDelayMs: c.PAYOUT_SUBMIT_DELAY_MS,
          pollInitialMs: c.PROVIDER_POLL_INITIAL_MS,
          pollMaxMs: c.PROVIDER_POLL_MAX_MS,
          stuckAfterMs: c.PROVIDER_STUCK_AFTER_MS,
          returnWindowMs: c.PAYOUT_RETURN_WINDOW_MS,
          continueAsNewAfterEvents: c.SAGA_CONTINUE_AS_NEW_AFTER_EVENTS,
          failoverAfterMs: c.PROVIDER_FAILOVER_AFTER_MS,
        },
        pollTaskQueue: backgroundTaskQueue(c),
        ...reviewPolicy(c, request.amount),
      },
      // The full destination goes to PostgreSQL, encrypted, never into the workflow history (IBANs, card tokens);
      // so do the operator's reference and metadata (they may hold personal data).
      beforeStart: async (payoutId) => {
        const sealed = this.destinations.seal(payoutId, request.destination);
        await this.pool.query(
          'INSERT INTO payout_destinations (payout_id, method, key_id, wrapped_key, ciphertext) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payout_id) DO NOTHING',
          [payoutId, request.destination.method, sealed.key_id, sealed.wrapped_key, sealed.ciphertext],
        );
        await saveOperatorFields(this.pool, 'payout', payoutId, request.account_id, request);
      },
    });
    return { answer, replayed, payoutId: resourceId };
  }

  async get(payoutId: string, principal: Principal): Promise<PayoutWithFields> {
    const [live, stored, operator] = await Promise.all([
      this.sagas.query(payoutId, (handle) => handle.query(payoutStatusQuery)).catch((err: unknown) => err),
      this.readModel(payoutId),
      loadOperatorFieldsOf(this.pool, payoutId),
    ]);
    // A saga that cannot answer (its workflow task failing) is shown from the read model, when it has one.
    if (live instanceof Error && !(live instanceof ProblemError && live.code === 'SAGA_UNAVAILABLE' && stored)) throw live;
    const view = merge(live instanceof Error ? undefined : (live as PayoutView | undefined), stored);
    // Someone else's payout is reported as absent, not forbidden: payout ids reveal nothing.
    if (!view || (principal.role === 'player' && view.accountId !== principal.sub)) throw new ProblemError('PAYOUT_NOT_FOUND', `No payout ${payoutId}`);
    return { ...view, operator };
  }

  /** The payouts read model: outlives Temporal's retention, and records returns handled after the saga closed. */
  private async readModel(payoutId: string): Promise<PayoutRow | undefined> {
    const { rows } = await this.pool.query<PayoutRow>('SELECT * FROM payouts WHERE payout_id = $1', [payoutId]);
    return rows[0];
  }

  /**
   * Cancels before submission (the hold is voided). Where reverse withdrawals are forbidden only staff may
   * (through the audited ops route); a player's own request, or its backend's, is refused and the payout goes on.
   */
  async cancel(payoutId: string, principal: Principal, reason: string | undefined): Promise<PayoutWithFields> {
    const current = await this.get(payoutId, principal);
    if (principal.role !== 'staff' && this.config.REVERSE_WITHDRAWALS === 'forbidden') {
      throw new ProblemError('REVERSE_WITHDRAWAL_FORBIDDEN', 'A requested withdrawal cannot be cancelled by the player; contact support');
    }
    if (current.status === 'CANCELLED') return current; // a retried cancel
    if (!current.cancellable) throw new ProblemError('PAYOUT_NOT_CANCELLABLE', `Payout is ${current.status}; it can be cancelled only before submission to the provider`);
    try {
      const cancelled = await this.sagas.bounded(() => this.sagas.handle(payoutId).executeUpdate(cancelUpdate, {
        args: [{ requestedBy: `${principal.role}:${principal.sub}`, ...(reason ? { reason } : {}) }],
      }));
      return { ...cancelled, operator: current.operator };
    } catch (err) {
      if (failureType(err) === PAYOUT_NOT_CANCELLABLE || err instanceof WorkflowNotFoundError) {
        const now = await this.get(payoutId, principal);
        if (now.status === 'CANCELLED') return now;
        throw new ProblemError('PAYOUT_NOT_CANCELLABLE', `Payout is ${now.status}; it can be cancelled only before submission to the provider`);
      }
      throw err;
    }
  }
}

/** Whether and how this payout is reviewed by staff once held (the saga keeps the policy it started with). */
function reviewPolicy(c: Config, amount: MoneyAmount): { review?: ReviewPolicy } {
  const minor = (threshold: Config['PAYOUT_REVIEW_ABOVE']) => (threshold ? thresholdInMinorUnits(threshold, amount.currency, c.LIMIT_CURRENCY_RATES) : undefined);
  const above = minor(c.PAYOUT_REVIEW_ABOVE);
  if (above === undefined && c.PAYOUT_LIMIT_BREACH === 'decline') return {};
  const dualAbove = minor(c.PAYOUT_DUAL_APPROVAL_ABOVE);
  return {
    review: {
      aboveMinor: above ?? Number.MAX_SAFE_INTEGER,
      dualApproval: c.FOUR_EYES_ACTIONS.includes('payout_review') && dualAbove !== undefined && amount.minor_units > dualAbove,
      slaMs: c.PAYOUT_REVIEW_SLA_MS,
      onLimitBreach: c.PAYOUT_LIMIT_BREACH,
    },
  };
}

/**
 * The saga's live view, completed by the read model: a return refunded after the saga closed, or (past
 * Temporal's retention) the stored state alone, without the timeline detail.
 */
function merge(live: PayoutView | undefined, row: PayoutRow | undefined): PayoutView | undefined {
  if (live) {
    if (live.status === 'SETTLED' && row?.status === 'RETURNED') {
      return { ...live, status: 'RETURNED', timeline: [...live.timeline, { at: row.updated_at.toISOString(), status: 'RETURNED', note: 'returned_after_close', staffNote: 'returned after the saga closed; refunded by the return saga' }] };
    }
    return live;
  }
  return row ? payoutViewOfRow(row) : undefined;
}

/** The payout as `reader` may see it (staff notes for staff only), with the operator's own fields when it has them. */
export function toPayoutBody(view: PayoutWithFields, reader: Principal['role']): z.infer<typeof payoutBody> {
  return {
    payout_id: view.payoutId,
    account_id: view.accountId,
    amount: view.amount,
    destination: view.destination,
    provider: view.provider,
    status: view.status,
    cancellable: view.cancellable,
    stuck: view.stuck,
    ...(view.providerPayoutId ? { provider_payout_id: view.providerPayoutId } : {}),
    ...(view.failureCode ? { failure_code: view.failureCode } : {}),
    ...(view.returnReason ? { return_reason: view.returnReason } : {}),
    ...(view.declineCode ? { decline_code: view.declineCode } : {}),
    requested_at: view.requestedAt,
    timeline: timelineFor(view.timeline, reader),
    ...(view.review && reader === 'staff' ? { review: { reason: view.review.reason, dual_approval: view.review.dualApproval } } : {}),
    ...view.operator,
  };
}
