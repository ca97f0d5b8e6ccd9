import { backgroundTaskQueue } from '../../../lib/config';
import type { Client } from '@temporalio/client';
import type { z } from 'zod';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import { depositAmountRefusal, moneyLimits } from '../../../lib/limits';
import { DEPOSIT_SAGA_TYPE, depositStatusQuery, intentUpdate, type DepositInput, type DepositView, type IntentDecision } from '../../../contracts/deposit';
import { startSearchAttributes } from '../../../contracts/search-attributes';
import type { Principal } from '../auth/auth';
import type { StoredAnswer } from '../common/idempotency';
import { problemBody, ProblemError } from '../common/problem';
import { timelineFor } from '../common/timeline';
import { SagaRequests, type SagaRequestKind } from '../common/saga-requests';
import { PROVIDER } from '../payouts/payouts.service';
import type { CreateDepositRequest, depositAcceptedBody, depositBody } from './deposits.schemas';

/** Result of POST /v1/deposits: what to send, and whether it is a replay of an earlier answer. */
export interface DepositAnswer {
  answer: StoredAnswer;
  replayed: boolean;
  depositId: string;
}

/** Deposit requests (idempotency by SagaRequests, answering with the provider's intent) and status. */
export class DepositsService {
  constructor(
    private readonly config: Config,
    private readonly temporal: Client,
    private readonly sagas: SagaRequests,
    private readonly pool: Pool,
  ) {}

  async create(request: CreateDepositRequest, key: string, requestId: string): Promise<DepositAnswer> {
    const { answer, replayed, resourceId } = await this.sagas.submit(this.kind(request, requestId), request, key, requestId);
    return { answer, replayed, depositId: resourceId };
  }

  async get(depositId: string, principal: Principal): Promise<DepositView> {
    let view: DepositView | undefined;
    try {
      view = await this.sagas.query(depositId, (handle) => handle.query(depositStatusQuery));
    } catch (err) {
      // A saga that cannot answer (its workflow task failing) is shown from the read model, when it has one.
      if (!(err instanceof ProblemError && err.code === 'SAGA_UNAVAILABLE')) throw err;
      view = await this.fromReadModel(depositId);
      if (!view) throw err;
    }
    // Someone else's deposit is reported as absent, not forbidden: deposit ids reveal nothing.
    if (!view || (principal.role === 'player' && view.accountId !== principal.sub)) throw new ProblemError('DEPOSIT_NOT_FOUND', `No deposit ${depositId}`);
    return view;
  }

  private async fromReadModel(depositId: string): Promise<DepositView | undefined> {
    const { rows } = await this.pool.query<DepositRow>('SELECT * FROM deposits WHERE deposit_id = $1', [depositId]);
    const row = rows[0];
    if (!row) return undefined;
    return {
      depositId: row.deposit_id,
      accountId: row.account_id,
      amount: { minor_units: Number(row.amount_minor), currency: row.currency },
      provider: row.provider,
      status: row.status,
      ...(row.checkout_url ? { checkoutUrl: row.checkout_url } : {}),
      ...(row.provider_deposit_id ? { providerDepositId: row.provider_deposit_id } : {}),
      ...(row.failure_code ? { failureCode: row.failure_code } : {}),
      stuck: row.stuck,
      requestedAt: row.requested_at.toISOString(),
      timeline: [{ at: row.updated_at.toISOString(), status: row.status, note: 'read_model', staffNote: 'from the read model (the saga itself could not be read)' }],
    };
  }

  private kind(request: CreateDepositRequest, requestId: string): SagaRequestKind<IntentDecision, DepositInput> {
    const c = this.config;
    return {
      operation: 'deposit',
      idPrefix: 'dp',
      workflowType: DEPOSIT_SAGA_TYPE,
      decisionUpdate: intentUpdate,
      workflowInput: (depositId, fingerprint) => ({
        depositId,
        accountId: request.account_id,
        amount: request.amount,
        provider: PROVIDER,
        fingerprint,
        requestedAt: new Date().toISOString(),
        // The payout's provider-wait settings apply to deposits too: one aggregator, one polling policy.
        timings: { pollInitialMs: c.PAYOUT_POLL_INITIAL_MS, pollMaxMs: c.PAYOUT_POLL_MAX_MS, stuckAfterMs: c.PAYOUT_STUCK_AFTER_MS, continueAsNewAfterEvents: c.PAYOUT_CONTINUE_AS_NEW_AFTER_EVENTS },
        pollTaskQueue: backgroundTaskQueue(c),
      }),
      refusal: () => depositAmountRefusal(moneyLimits(c), request.amount.minor_units, request.amount.currency),
      searchAttributes: startSearchAttributes,
      decisionOfClosedSaga: async (depositId) => decisionFromView(await this.temporal.workflow.getHandle(depositId).query(depositStatusQuery)),
      answerFor: (decision, depositId) => answerFor(decision, request, depositId, requestId),
      accepted: (depositId) => ({ status: 202, body: JSON.stringify(summary(request, depositId, 'REQUESTED')) }),
      answerFromReadModel: async (depositId) => {
        const { rows } = await this.pool.query<{ status: DepositView['status']; checkout_url: string | null; provider_deposit_id: string | null; failure_code: string | null }>(
          'SELECT status, checkout_url, provider_deposit_id, failure_code FROM deposits WHERE deposit_id = $1',
          [depositId],
        );
        const row = rows[0];
        if (!row) return undefined;
        if (row.checkout_url && row.provider_deposit_id) return answerFor({ outcome: 'created', status: 'PENDING', checkoutUrl: row.checkout_url, providerDepositId: row.provider_deposit_id }, request, depositId, requestId);
        if (row.status === 'FAILED') return answerFor({ outcome: 'refused', status: 'FAILED', ...refusalOf(row.failure_code) }, request, depositId, requestId);
        return { status: 202, body: JSON.stringify(summary(request, depositId, 'REQUESTED')) };
      },
    };
  }
}

interface DepositRow {
  deposit_id: string;
  account_id: string;
  amount_minor: string | number;
  currency: string;
  provider: string;
  status: DepositView['status'];
  checkout_url: string | null;
  provider_deposit_id: string | null;
  failure_code: string | null;
  stuck: boolean;
  requested_at: Date;
  updated_at: Date;
}

function decisionFromView(view: DepositView): IntentDecision | undefined {
  if (view.checkoutUrl && view.providerDepositId) return { outcome: 'created', status: view.status, checkoutUrl: view.checkoutUrl, providerDepositId: view.providerDepositId };
  if (view.status === 'FAILED') return { outcome: 'refused', status: 'FAILED', ...refusalOf(view.failureCode) };
  return undefined;
}

function summary(request: CreateDepositRequest, depositId: string, status: z.infer<typeof depositAcceptedBody>['status']): z.infer<typeof depositAcceptedBody> {
  return { deposit_id: depositId, account_id: request.account_id, amount: request.amount, status };
}

/** A refusal rebuilt from a recorded failure code: the platform's limit, or the provider's refusal. */
function refusalOf(code: string | null | undefined): { code: string; detail: string } {
  return code === 'LIMIT_EXCEEDED' ? { code, detail: 'The deposit exceeds a limit' } : { code: code ?? 'provider_rejected', detail: 'refused by the provider' };
}

function answerFor(decision: IntentDecision, request: CreateDepositRequest, depositId: string, requestId: string): StoredAnswer {
  if (decision.outcome === 'created') return { status: 201, body: JSON.stringify({ ...summary(request, depositId, decision.status), checkout_url: decision.checkoutUrl }) };
  // The platform's own limits are named as such; anything else was the provider's refusal.
  const code = decision.code === 'LIMIT_EXCEEDED' ? 'LIMIT_EXCEEDED' : 'DEPOSIT_REFUSED';
  const problem = {
    ...problemBody(code, decision.detail, { deposit_id: depositId, deposit_status: 'FAILED', failure_code: decision.code }),
    instance: '/v1/deposits',
    request_id: requestId,
  };
  return { status: problem.status, body: JSON.stringify(problem) };
}

/** The deposit as `reader` may see it (staff notes for staff only). */
export function toDepositBody(view: DepositView, reader: Principal['role']): z.infer<typeof depositBody> {
  return {
    deposit_id: view.depositId,
    account_id: view.accountId,
    amount: view.amount,
    provider: view.provider,
    status: view.status,
    stuck: view.stuck,
    ...(view.checkoutUrl ? { checkout_url: view.checkoutUrl } : {}),
    ...(view.providerDepositId ? { provider_deposit_id: view.providerDepositId } : {}),
    ...(view.failureCode ? { failure_code: view.failureCode } : {}),
    requested_at: view.requestedAt,
    timeline: timelineFor(view.timeline, reader),
  };
}
