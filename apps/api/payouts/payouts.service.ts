import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { z } from 'zod';
import type { Ledger } from '../../../activities/ledger';
import type { Config } from '../../../lib/config';
import type { Logger } from '../../../lib/logger';
import {
  authorizationUpdate,
  cancelUpdate,
  IDEMPOTENCY_MISMATCH,
  PAYOUT_NOT_CANCELLABLE,
  payoutStatusQuery,
  type AuthorizationDecision,
  type PayoutInput,
  type PayoutView,
} from '../../../workflows/payout/definitions';
import type { payoutWorkflow } from '../../../workflows/payout/payout.workflow';
import type { Principal } from '../auth/auth';
import { IdempotencyStore, requestFingerprint, resourceIdFor, type StoredAnswer } from '../common/idempotency';
import { problemBody, ProblemError, type ProblemCode } from '../common/problem';
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
  CURRENCY_MISMATCH: 'CURRENCY_MISMATCH',
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  VELOCITY_LIMIT_EXCEEDED: 'VELOCITY_LIMIT_EXCEEDED',
};

/**
 * Payout requests: one saga per account-scoped Idempotency-Key. The workflow id is derived from the
 * scoped key (Temporal refuses a second workflow with that id), the request fingerprint travels in the
 * authorization update's id (a different request with the same key is refused by the update's validator),
 * and the first HTTP answer is kept in PostgreSQL so every repeat gets exactly that answer.
 */
export class PayoutsService {
  private readonly idempotency: IdempotencyStore;
  /** Concurrent duplicates in this process share one update call (Temporal caps in-flight updates per workflow). */
  private readonly inFlight = new Map<string, Promise<AuthorizationDecision | undefined>>();

  constructor(
    private readonly config: Config,
    private readonly temporal: Client,
    private readonly ledger: Ledger,
    pool: ConstructorParameters<typeof IdempotencyStore>[0],
    private readonly logger: Logger,
  ) {
    this.idempotency = new IdempotencyStore(pool);
  }

  async create(request: CreatePayoutRequest, key: string, requestId: string): Promise<PayoutAnswer> {
    const accountId = request.account_id;
    const payoutId = resourceIdFor('po', accountId, key);
    const fingerprint = requestFingerprint('payout', request);
    const log = this.logger.child({ idempotencyKey: key, payoutId, workflowId: payoutId, requestId });

    const earlier = await this.idempotency.lookup(accountId, key, 'payout', fingerprint);
    if (earlier.state === 'mismatch') throw new ProblemError('IDEMPOTENCY_MISMATCH', 'This Idempotency-Key was first used with a different request; nothing was changed');
    if (earlier.state === 'completed') return { answer: earlier.answer, replayed: true, payoutId };

    // Refusals that need no saga: nothing is written for them (no key claimed, no workflow).
    if (earlier.state === 'absent') {
      const account = await this.ledger.getAccount(accountId);
      if (!account || account.kind !== 'player') throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${accountId}`);
      if (account.currency !== request.amount.currency) throw new ProblemError('CURRENCY_MISMATCH', `Account ${accountId} holds ${account.currency}`);
      const claim = await this.idempotency.claim(accountId, key, 'payout', fingerprint, payoutId);
      if (claim.state === 'mismatch') throw new ProblemError('IDEMPOTENCY_MISMATCH', 'This Idempotency-Key was first used with a different request; nothing was changed');
      if (claim.state === 'completed') return { answer: claim.answer, replayed: true, payoutId };
    }

    const flightKey = `${payoutId}:${fingerprint}`;
    let flight = this.inFlight.get(flightKey);
    if (!flight) {
      flight = this.authorizationDecision(payoutId, this.workflowInput(request, payoutId, fingerprint), fingerprint).finally(() => this.inFlight.delete(flightKey));
      this.inFlight.set(flightKey, flight);
    }
    const decision = await flight;
    const answer = decision ? answerFor(decision, request, payoutId, requestId) : accepted(request, payoutId);
    const stored = await this.idempotency.complete(accountId, key, answer);
    log.info({ status: stored.answer.status, decision: decision?.outcome ?? 'pending', replayed: !stored.first }, 'payout requested');
    return { answer: stored.answer, replayed: !stored.first, payoutId };
  }

  async get(payoutId: string, principal: Principal): Promise<PayoutView> {
    const view = await this.view(payoutId);
    // Someone else's payout is reported as absent, not forbidden: payout ids reveal nothing.
    if (!view || (principal.role === 'player' && view.accountId !== principal.sub)) throw new ProblemError('PAYOUT_NOT_FOUND', `No payout ${payoutId}`);
    return view;
  }

  async cancel(payoutId: string, principal: Principal, reason: string | undefined): Promise<PayoutView> {
    const current = await this.get(payoutId, principal);
    if (current.status === 'CANCELLED') return current; // a retried cancel
    try {
      return await this.temporal.workflow.getHandle(payoutId).executeUpdate(cancelUpdate, {
        args: [{ requestedBy: `${principal.role}:${principal.sub}`, ...(reason ? { reason } : {}) }],
      });
    } catch (err) {
      if (failureType(err) === PAYOUT_NOT_CANCELLABLE) {
        const now = await this.get(payoutId, principal);
        if (now.status === 'CANCELLED') return now;
        throw new ProblemError('PAYOUT_NOT_CANCELLABLE', `Payout is ${now.status}; it can be cancelled only before submission to the provider`);
      }
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('PAYOUT_NOT_CANCELLABLE', 'The payout saga has ended');
      throw err;
    }
  }

  private workflowInput(request: CreatePayoutRequest, payoutId: string, fingerprint: string): PayoutInput {
    const c = this.config;
    return {
      payoutId,
      accountId: request.account_id,
      amount: request.amount,
      destination: request.destination,
      provider: PROVIDER,
      fingerprint,
      requestedAt: new Date().toISOString(),
      timings: {
        submitDelayMs: c.PAYOUT_SUBMIT_DELAY_MS,
        pollInitialMs: c.PAYOUT_POLL_INITIAL_MS,
        pollMaxMs: c.PAYOUT_POLL_MAX_MS,
        stuckAfterMs: c.PAYOUT_STUCK_AFTER_MS,
        returnWindowMs: c.PAYOUT_RETURN_WINDOW_MS,
      },
    };
  }

  /**
   * Starts the saga (or joins the running one) and waits up to the sync deadline for its authorization
   * decision with update-with-start. Undefined: not decided in time (the saga goes on; the answer is 202).
   */
  private async authorizationDecision(payoutId: string, input: PayoutInput, fingerprint: string): Promise<AuthorizationDecision | undefined> {
    // By type name: the API never loads workflow code.
    const start = new WithStartWorkflowOperation<typeof payoutWorkflow>('payoutWorkflow', {
      workflowId: payoutId,
      taskQueue: this.config.TEMPORAL_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      memo: { accountId: input.accountId },
    });
    const deadlineAt = Date.now() + this.config.PAYOUT_SYNC_DEADLINE_MS;
    const update = (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          // A fresh start operation per attempt: each one can be used once.
          const operation = attempt === 1 ? start : new WithStartWorkflowOperation<typeof payoutWorkflow>('payoutWorkflow', start.options);
          return await this.temporal.workflow.executeUpdateWithStart(authorizationUpdate, { updateId: `authorization:${fingerprint}`, args: [fingerprint], startWorkflowOperation: operation });
        } catch (err) {
          // Too many updates in flight on this workflow (other API instances' duplicates): back off and rejoin.
          if (!isResourceExhausted(err) || Date.now() + 100 * attempt > deadlineAt) throw err;
          await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
        }
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), Math.max(0, deadlineAt - Date.now()));
    });
    update.catch(() => undefined); // settled later if the deadline wins
    try {
      const outcome = await Promise.race([update, deadline]);
      if (outcome !== 'deadline') return outcome;
      // Not decided in time. The saga must exist before we promise a 202 (the start rides on the same RPC
      // as the update, so it is usually there already; give it a few seconds more).
      for (let waited = 0; waited < 5_000; waited += 100) {
        try {
          await this.temporal.workflow.getHandle(payoutId).describe();
          return undefined;
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      throw new ProblemError('SERVICE_UNAVAILABLE', 'The payout saga could not be started in time; retry with the same Idempotency-Key');
    } catch (err) {
      if (failureType(err) === IDEMPOTENCY_MISMATCH) throw new ProblemError('IDEMPOTENCY_MISMATCH', 'This Idempotency-Key was first used with a different request; nothing was changed');
      // The saga has already ended (and its update history with it): its final state answers.
      if (err instanceof WorkflowExecutionAlreadyStartedError) return decisionFromView(await this.temporal.workflow.getHandle(payoutId).query(payoutStatusQuery));
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The saga's live state, from its status query. */
  private async view(payoutId: string): Promise<PayoutView | undefined> {
    try {
      return await this.temporal.workflow.getHandle(payoutId).query(payoutStatusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return undefined;
      throw err;
    }
  }
}

function isResourceExhausted(err: unknown): boolean {
  const code = (err as { code?: number; cause?: { code?: number } })?.cause?.code ?? (err as { code?: number })?.code;
  return code === 8 || /RESOURCE_EXHAUSTED|in-flight update/i.test(String((err as Error)?.message ?? err));
}

function failureType(err: unknown): string | undefined {
  const cause = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}

function decisionFromView(view: PayoutView): AuthorizationDecision | undefined {
  if (view.status === 'DECLINED') return { outcome: 'declined', status: 'DECLINED', code: view.declineCode ?? 'DECLINED', detail: 'declined at authorization' };
  if (view.status === 'REQUESTED' || view.status === 'AUTHORIZED') return undefined;
  return { outcome: 'held', status: 'HELD', holdTransferId: 0 };
}

function summary(request: CreatePayoutRequest, payoutId: string, status: z.infer<typeof payoutAcceptedBody>['status']): z.infer<typeof payoutAcceptedBody> {
  const value = request.destination.method === 'bank_transfer' ? request.destination.iban : request.destination.method === 'card' ? request.destination.token : request.destination.wallet_id;
  return { payout_id: payoutId, account_id: request.account_id, amount: request.amount, destination: { method: request.destination.method, last4: value.slice(-4) }, status };
}

function answerFor(decision: AuthorizationDecision, request: CreatePayoutRequest, payoutId: string, requestId: string): StoredAnswer {
  if (decision.outcome === 'held') return { status: 201, body: JSON.stringify(summary(request, payoutId, 'HELD')) };
  const code = DECLINE_PROBLEMS[decision.code] ?? 'PAYOUT_DECLINED';
  const problem = { ...problemBody(code, decision.detail, { payout_id: payoutId, payout_status: 'DECLINED' }), instance: '/v1/payouts', request_id: requestId };
  return { status: problem.status, body: JSON.stringify(problem) };
}

function accepted(request: CreatePayoutRequest, payoutId: string): StoredAnswer {
  return { status: 202, body: JSON.stringify(summary(request, payoutId, 'REQUESTED')) };
}

export function toPayoutBody(view: PayoutView): z.infer<typeof payoutBody> {
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
    timeline: view.timeline,
  };
}
