import { backgroundTaskQueue } from '../../../lib/config';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { z } from 'zod';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import type { DestinationVault } from '../../../lib/destination-vault';
import {
  PAYOUT_SAGA_TYPE,
  authorizationUpdate,
  cancelUpdate,
  maskDestination,
  PAYOUT_NOT_CANCELLABLE,
  payoutStatusQuery,
  type AuthorizationDecision,
  type PayoutInput,
  type PayoutView,
} from '../../../contracts/payout';
import { startSearchAttributes } from '../../../contracts/search-attributes';
import type { Principal } from '../auth/auth';
import type { StoredAnswer } from '../common/idempotency';
import { problemBody, ProblemError, type ProblemCode } from '../common/problem';
import { failureType, SagaRequests, type SagaRequestKind } from '../common/saga-requests';
import { timelineFor } from '../common/timeline';
import type { CreatePayoutRequest, payoutAcceptedBody, payoutBody } from './payouts.schemas';

export const PROVIDER = 'sandbox';

/** Result of POST /v1/payouts: what to send, and whether it is a replay of an earlier answer. */
export interface PayoutAnswer {
  answer: StoredAnswer;
  replayed: boolean;
  payoutId: string;
}

const DECLINE_PROBLEMS: Record<string, ProblemCode> = {
  INSUFFICIENT_FUNDS: 'INSUFFICIENT_FUNDS',
  ACCOUNT_NOT_FOUND: 'ACCOUNT_NOT_FOUND',
  ACCOUNT_NOT_ACTIVE: 'ACCOUNT_NOT_ACTIVE',
  CURRENCY_MISMATCH: 'CURRENCY_MISMATCH',
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  VELOCITY_LIMIT_EXCEEDED: 'VELOCITY_LIMIT_EXCEEDED',
};

/** Payout requests (idempotency by SagaRequests), status, and cancellation before submission. */
export class PayoutsService {
  constructor(
    private readonly config: Config,
    private readonly temporal: Client,
    private readonly sagas: SagaRequests,
    private readonly pool: Pool,
    private readonly destinations: DestinationVault,
  ) {}

  async create(request: CreatePayoutRequest, key: string, requestId: string): Promise<PayoutAnswer> {
    const { answer, replayed, resourceId } = await this.sagas.submit(this.kind(request, requestId), request, key, requestId);
    return { answer, replayed, payoutId: resourceId };
  }

  async get(payoutId: string, principal: Principal): Promise<PayoutView> {
    const [live, stored] = await Promise.all([this.sagas.query(payoutId, (handle) => handle.query(payoutStatusQuery)).catch((err: unknown) => err), this.readModel(payoutId)]);
    // A saga that cannot answer (its workflow task failing) is shown from the read model, when it has one.
    if (live instanceof Error && !(live instanceof ProblemError && live.code === 'SAGA_UNAVAILABLE' && stored)) throw live;
    const view = merge(live instanceof Error ? undefined : (live as PayoutView | undefined), stored);
    // Someone else's payout is reported as absent, not forbidden: payout ids reveal nothing.
    if (!view || (principal.role === 'player' && view.accountId !== principal.sub)) throw new ProblemError('PAYOUT_NOT_FOUND', `No payout ${payoutId}`);
    return view;
  }

  /** The payouts read model: outlives Temporal's retention, and records returns handled after the saga closed. */
  private async readModel(payoutId: string): Promise<PayoutRow | undefined> {
    const { rows } = await this.pool.query<PayoutRow>('SELECT * FROM payouts WHERE payout_id = $1', [payoutId]);
    return rows[0];
  }

  async cancel(payoutId: string, principal: Principal, reason: string | undefined): Promise<PayoutView> {
    const current = await this.get(payoutId, principal);
    if (current.status === 'CANCELLED') return current; // a retried cancel
    if (!current.cancellable) throw new ProblemError('PAYOUT_NOT_CANCELLABLE', `Payout is ${current.status}; it can be cancelled only before submission to the provider`);
    try {
      return await this.sagas.bounded(() => this.temporal.workflow.getHandle(payoutId).executeUpdate(cancelUpdate, {
        args: [{ requestedBy: `${principal.role}:${principal.sub}`, ...(reason ? { reason } : {}) }],
      }));
    } catch (err) {
      if (failureType(err) === PAYOUT_NOT_CANCELLABLE || err instanceof WorkflowNotFoundError) {
        const now = await this.get(payoutId, principal);
        if (now.status === 'CANCELLED') return now;
        throw new ProblemError('PAYOUT_NOT_CANCELLABLE', `Payout is ${now.status}; it can be cancelled only before submission to the provider`);
      }
      throw err;
    }
  }

  private kind(request: CreatePayoutRequest, requestId: string): SagaRequestKind<AuthorizationDecision, PayoutInput> {
    const c = this.config;
    return {
      operation: 'payout',
      idPrefix: 'po',
      workflowType: PAYOUT_SAGA_TYPE,
      decisionUpdate: authorizationUpdate,
      // The full destination goes to PostgreSQL, encrypted, never into the workflow history (IBANs, card tokens).
      beforeStart: async (payoutId) => {
        const sealed = this.destinations.seal(payoutId, request.destination);
        await this.pool.query(
          'INSERT INTO payout_destinations (payout_id, method, key_id, wrapped_key, ciphertext) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payout_id) DO NOTHING',
          [payoutId, request.destination.method, sealed.key_id, sealed.wrapped_key, sealed.ciphertext],
        );
      },
      workflowInput: (payoutId, fingerprint) => ({
        payoutId,
        accountId: request.account_id,
        amount: request.amount,
        destination: maskDestination(request.destination),
        provider: PROVIDER,
        fingerprint,
        requestedAt: new Date().toISOString(),
        timings: {
          submitDelayMs: c.PAYOUT_SUBMIT_DELAY_MS,
          pollInitialMs: c.PAYOUT_POLL_INITIAL_MS,
          pollMaxMs: c.PAYOUT_POLL_MAX_MS,
          stuckAfterMs: c.PAYOUT_STUCK_AFTER_MS,
          returnWindowMs: c.PAYOUT_RETURN_WINDOW_MS,
          continueAsNewAfterEvents: c.PAYOUT_CONTINUE_AS_NEW_AFTER_EVENTS,
        },
        pollTaskQueue: backgroundTaskQueue(c),
      }),
      searchAttributes: startSearchAttributes,
      decisionOfClosedSaga: async (payoutId) => decisionFromView(await this.temporal.workflow.getHandle(payoutId).query(payoutStatusQuery)),
      answerFor: (decision, payoutId) => answerFor(decision, request, payoutId, requestId),
      accepted: (payoutId) => ({ status: 202, body: JSON.stringify(summary(request, payoutId, 'REQUESTED')) }),
      answerFromReadModel: async (payoutId) => {
        const row = await this.readModel(payoutId);
        if (!row) return undefined;
        if (row.status === 'DECLINED') return answerFor({ outcome: 'declined', status: 'DECLINED', code: row.decline_code ?? 'DECLINED', detail: 'declined at authorization' }, request, payoutId, requestId);
        if (row.status === 'AUTHORIZED') return { status: 202, body: JSON.stringify(summary(request, payoutId, 'REQUESTED')) };
        return { status: 201, body: JSON.stringify(summary(request, payoutId, 'HELD')) };
      },
    };
  }
}

interface PayoutRow {
  payout_id: string;
  account_id: string;
  amount_minor: number;
  currency: string;
  destination_method: PayoutView['destination']['method'];
  destination_last4: string;
  provider: string;
  status: PayoutView['status'];
  provider_payout_id: string | null;
  decline_code: string | null;
  failure_code: string | null;
  stuck: boolean;
  requested_at: Date;
  updated_at: Date;
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
  if (!row) return undefined;
  return {
    payoutId: row.payout_id,
    accountId: row.account_id,
    amount: { minor_units: row.amount_minor, currency: row.currency },
    destination: { method: row.destination_method, last4: row.destination_last4 },
    provider: row.provider,
    status: row.status,
    ...(row.provider_payout_id ? { providerPayoutId: row.provider_payout_id } : {}),
    ...(row.failure_code ? { failureCode: row.failure_code } : {}),
    ...(row.decline_code ? { declineCode: row.decline_code } : {}),
    cancellable: false,
    stuck: row.stuck,
    requestedAt: row.requested_at.toISOString(),
    timeline: [{ at: row.updated_at.toISOString(), status: row.status, note: 'read_model', staffNote: 'from the read model (the saga itself could not be read, or its history is no longer retained)' }],
  };
}

function decisionFromView(view: PayoutView): AuthorizationDecision | undefined {
  if (view.status === 'DECLINED') return { outcome: 'declined', status: 'DECLINED', code: view.declineCode ?? 'DECLINED', detail: 'declined at authorization' };
  if (view.status === 'REQUESTED' || view.status === 'AUTHORIZED') return undefined;
  return { outcome: 'held', status: 'HELD', holdTransferId: 0 };
}

function summary(request: CreatePayoutRequest, payoutId: string, status: z.infer<typeof payoutAcceptedBody>['status']): z.infer<typeof payoutAcceptedBody> {
  return { payout_id: payoutId, account_id: request.account_id, amount: request.amount, destination: maskDestination(request.destination), status };
}

function answerFor(decision: AuthorizationDecision, request: CreatePayoutRequest, payoutId: string, requestId: string): StoredAnswer {
  if (decision.outcome === 'held') return { status: 201, body: JSON.stringify(summary(request, payoutId, 'HELD')) };
  const code = DECLINE_PROBLEMS[decision.code] ?? 'PAYOUT_DECLINED';
  const problem = { ...problemBody(code, decision.detail, { payout_id: payoutId, payout_status: 'DECLINED' }), instance: '/v1/payouts', request_id: requestId };
  return { status: problem.status, body: JSON.stringify(problem) };
}

/** The payout as `reader` may see it (staff notes for staff only). */
export function toPayoutBody(view: PayoutView, reader: Principal['role']): z.infer<typeof payoutBody> {
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
  };
}
