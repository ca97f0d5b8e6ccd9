import { backgroundTaskQueue } from '../../../lib/config';
import type { z } from 'zod';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import { limitsOfAccount } from '../../../lib/account-limits';
import { depositAmountRefusal, moneyLimits } from '../../../lib/limits';
import { depositStatusQuery, type DepositView } from '../../../contracts/deposit';
import type { Principal } from '../auth/auth';
import type { StoredAnswer } from '../sagas/idempotency';
import { ProblemError } from '../common/problem';
import { timelineFor } from '../common/timeline';
import { loadOperatorFieldsOf, saveOperatorFields, type OperatorFields } from '../common/operator-metadata';
import type { IdempotentStart } from '../sagas/idempotent-start';
import type { SagaCalls } from '../sagas/saga-calls';
import { DEPOSIT_PROVIDER } from '../../../lib/providers';
import { DEPOSIT_SAGA, depositViewOfRow, type DepositRow } from './deposit-saga-kind';
import type { CreateDepositRequest, depositBody } from './deposits.schemas';

/** A deposit as the API answers it: the saga's view and the operator's own fields (reference, metadata). */
export type DepositWithFields = DepositView & { operator?: OperatorFields };

/** Result of POST /v1/deposits: what to send, and whether it is a replay of an earlier answer. */
export interface DepositAnswer {
  answer: StoredAnswer;
  replayed: boolean;
  depositId: string;
}

/** Deposit requests (one saga and one answer per key: IdempotentStart, answering with the provider's intent) and status. */
export class DepositsService {
  constructor(
    private readonly config: Config,
    private readonly starts: IdempotentStart,
    private readonly sagas: SagaCalls,
    private readonly pool: Pool,
  ) {}

  async create(request: CreateDepositRequest, key: string, requestId: string): Promise<DepositAnswer> {
    const c = this.config;
    const { answer, replayed, resourceId } = await this.starts.start(DEPOSIT_SAGA, {
      request,
      key,
      requestId,
      input: {
        accountId: request.account_id,
        amount: request.amount,
        provider: DEPOSIT_PROVIDER,
        requestedAt: new Date().toISOString(),
        // The payout's provider-wait settings apply to deposits too: one aggregator, one polling policy.
        timings: { pollInitialMs: c.PROVIDER_POLL_INITIAL_MS, pollMaxMs: c.PROVIDER_POLL_MAX_MS, stuckAfterMs: c.PROVIDER_STUCK_AFTER_MS, continueAsNewAfterEvents: c.SAGA_CONTINUE_AS_NEW_AFTER_EVENTS },
        pollTaskQueue: backgroundTaskQueue(c),
      },
      // The operator's reference and metadata go to PostgreSQL, never into the workflow history (they may hold personal data).
      beforeStart: (depositId) => saveOperatorFields(this.pool, 'deposit', depositId, request.account_id, request),
      refusal: depositAmountRefusal((await limitsOfAccount(this.pool, moneyLimits(c), request.account_id, request.amount.currency)).deposit_max, request.amount.minor_units, request.amount.currency),
    });
    return { answer, replayed, depositId: resourceId };
  }

  async get(depositId: string, principal: Principal): Promise<DepositWithFields> {
    const view = await this.view(depositId, principal);
    return { ...view, operator: await loadOperatorFieldsOf(this.pool, depositId) };
  }

  private async view(depositId: string, principal: Principal): Promise<DepositView> {
    let view: DepositView | undefined;
    try {
      view = await this.sagas.query(depositId, (handle) => handle.query(depositStatusQuery));
    } catch (err) {
      // A saga that cannot answer (its workflow task failing) is shown from the read model, when it has one.
      if (!(err instanceof ProblemError && err.code === 'SAGA_UNAVAILABLE')) throw err;
      const { rows } = await this.pool.query<DepositRow>('SELECT * FROM deposits WHERE deposit_id = $1', [depositId]);
      if (!rows[0]) throw err;
      view = depositViewOfRow(rows[0]);
    }
    // Someone else's deposit is reported as absent, not forbidden: deposit ids reveal nothing.
    if (!view || (principal.role === 'player' && view.accountId !== principal.sub)) throw new ProblemError('DEPOSIT_NOT_FOUND', `No deposit ${depositId}`);
    // Charged back after its saga closed: the reversal saga recorded it in the read model.
    if (view.status === 'CREDITED') {
      const { rows } = await this.pool.query<{ reversed_at: Date | null; reversal_reason: string | null }>('SELECT reversed_at, reversal_reason FROM deposits WHERE deposit_id = $1', [depositId]);
      const reversed = rows[0];
      if (reversed?.reversed_at) {
        return { ...view, status: 'REVERSED', timeline: [...view.timeline, { at: reversed.reversed_at.toISOString(), status: 'REVERSED', note: 'reversed', staffNote: `charged back: ${reversed.reversal_reason ?? 'chargeback'}` }] };
      }
    }
    return view;
  }
}

/** The deposit as `reader` may see it (staff notes for staff only). */
export function toDepositBody(view: DepositWithFields, reader: Principal['role']): z.infer<typeof depositBody> {
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
    ...view.operator,
  };
}
