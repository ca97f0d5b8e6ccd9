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
import { depositStatusQuery, intentUpdate, type DepositInput, type DepositView, type IntentDecision } from '../../../workflows/deposit/definitions';
import type { depositWorkflow } from '../../../workflows/deposit/deposit.workflow';
import { IDEMPOTENCY_MISMATCH } from '../../../workflows/payout/definitions';
import type { Principal } from '../auth/auth';
import { IdempotencyStore, requestFingerprint, resourceIdFor, type StoredAnswer } from '../common/idempotency';
import { problemBody, ProblemError } from '../common/problem';
import { PROVIDER } from '../payouts/payouts.service';
import type { CreateDepositRequest, depositAcceptedBody, depositBody } from './deposits.schemas';

/** Result of POST /v1/deposits: what to send, and whether it is a replay of an earlier answer. */
export interface DepositAnswer {
  answer: StoredAnswer;
  replayed: boolean;
  depositId: string;
}

const MISMATCH_DETAIL = 'This Idempotency-Key was first used with a different request; nothing was changed';

/**
 * Deposit requests, with the payouts' idempotency rules: one saga per account-scoped Idempotency-Key
 * (the workflow id is derived from it), the request fingerprint in the intent update's id and validator,
 * and the first HTTP answer kept in PostgreSQL so every repeat gets exactly that answer.
 */
export class DepositsService {
  private readonly idempotency: IdempotencyStore;

  constructor(
    private readonly config: Config,
    private readonly temporal: Client,
    private readonly ledger: Ledger,
    pool: ConstructorParameters<typeof IdempotencyStore>[0],
    private readonly logger: Logger,
  ) {
    this.idempotency = new IdempotencyStore(pool);
  }

  async create(request: CreateDepositRequest, key: string, requestId: string): Promise<DepositAnswer> {
    const accountId = request.account_id;
    const depositId = resourceIdFor('dp', accountId, key);
    const fingerprint = requestFingerprint('deposit', request);
    const log = this.logger.child({ idempotencyKey: key, depositId, workflowId: depositId, requestId });

    const earlier = await this.idempotency.lookup(accountId, key, 'deposit', fingerprint);
    if (earlier.state === 'mismatch') throw new ProblemError('IDEMPOTENCY_MISMATCH', MISMATCH_DETAIL);
    if (earlier.state === 'completed') return { answer: earlier.answer, replayed: true, depositId };

    // Refusals that need no saga: nothing is written for them (no key claimed, no workflow).
    if (earlier.state === 'absent') {
      const account = await this.ledger.getAccount(accountId);
      if (!account || account.kind !== 'player') throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${accountId}`);
      if (account.currency !== request.amount.currency) throw new ProblemError('CURRENCY_MISMATCH', `Account ${accountId} holds ${account.currency}`);
      const claim = await this.idempotency.claim(accountId, key, 'deposit', fingerprint, depositId);
      if (claim.state === 'mismatch') throw new ProblemError('IDEMPOTENCY_MISMATCH', MISMATCH_DETAIL);
      if (claim.state === 'completed') return { answer: claim.answer, replayed: true, depositId };
    }

    const decision = await this.intentDecision(depositId, this.workflowInput(request, depositId, fingerprint), fingerprint);
    const answer = decision ? answerFor(decision, request, depositId, requestId) : accepted(request, depositId);
    const stored = await this.idempotency.complete(accountId, key, answer);
    log.info({ status: stored.answer.status, intent: decision?.outcome ?? 'pending', replayed: !stored.first }, 'deposit requested');
    return { answer: stored.answer, replayed: !stored.first, depositId };
  }

  async get(depositId: string, principal: Principal): Promise<DepositView> {
    const view = await this.view(depositId);
    // Someone else's deposit is reported as absent, not forbidden: deposit ids reveal nothing.
    if (!view || (principal.role === 'player' && view.accountId !== principal.sub)) throw new ProblemError('DEPOSIT_NOT_FOUND', `No deposit ${depositId}`);
    return view;
  }

  private workflowInput(request: CreateDepositRequest, depositId: string, fingerprint: string): DepositInput {
    const c = this.config;
    return {
      depositId,
      accountId: request.account_id,
      amount: request.amount,
      provider: PROVIDER,
      fingerprint,
      requestedAt: new Date().toISOString(),
      // The payout's provider-wait settings apply to deposits too: one aggregator, one polling policy.
      timings: { pollInitialMs: c.PAYOUT_POLL_INITIAL_MS, pollMaxMs: c.PAYOUT_POLL_MAX_MS, stuckAfterMs: c.PAYOUT_STUCK_AFTER_MS },
    };
  }

  /**
   * Starts the saga (or joins the running one) and waits up to the sync deadline for the provider's intent
   * with update-with-start. Undefined: not created in time (the saga goes on; the answer is 202).
   */
  private async intentDecision(depositId: string, input: DepositInput, fingerprint: string): Promise<IntentDecision | undefined> {
    // By type name: the API never loads workflow code.
    const start = new WithStartWorkflowOperation<typeof depositWorkflow>('depositWorkflow', {
      workflowId: depositId,
      taskQueue: this.config.TEMPORAL_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      memo: { accountId: input.accountId },
    });
    // Wait for ACCEPTED, then for the result: with executeUpdateWithStart (COMPLETED) the start RPC itself only
    // returns once the update completes, so the workflow handle awaited below would hold a 202 back as long.
    const update = this.temporal.workflow
      .startUpdateWithStart(intentUpdate, { updateId: `intent:${fingerprint}`, args: [fingerprint], startWorkflowOperation: start, waitForStage: 'ACCEPTED' })
      .then((handle) => handle.result());
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), this.config.PAYOUT_SYNC_DEADLINE_MS);
    });
    update.catch(() => undefined); // settled later if the deadline wins
    try {
      const outcome = await Promise.race([update, deadline]);
      if (outcome !== 'deadline') return outcome;
      // Not created in time. The saga must exist before we promise a 202.
      await Promise.race([start.workflowHandle(), new Promise((_, reject) => setTimeout(() => reject(new ProblemError('SERVICE_UNAVAILABLE', 'Temporal did not start the deposit saga in time; retry with the same Idempotency-Key')), 10_000))]);
      return undefined;
    } catch (err) {
      if (failureType(err) === IDEMPOTENCY_MISMATCH) throw new ProblemError('IDEMPOTENCY_MISMATCH', MISMATCH_DETAIL);
      // The saga has already ended (and its update history with it): its final state answers.
      if (err instanceof WorkflowExecutionAlreadyStartedError) return decisionFromView(await this.temporal.workflow.getHandle(depositId).query(depositStatusQuery));
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The saga's live state, from its status query. */
  private async view(depositId: string): Promise<DepositView | undefined> {
    try {
      return await this.temporal.workflow.getHandle(depositId).query(depositStatusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return undefined;
      throw err;
    }
  }
}

function failureType(err: unknown): string | undefined {
  const cause = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}

function decisionFromView(view: DepositView): IntentDecision | undefined {
  if (view.checkoutUrl && view.providerDepositId) return { outcome: 'created', status: view.status, checkoutUrl: view.checkoutUrl, providerDepositId: view.providerDepositId };
  if (view.status === 'FAILED') return { outcome: 'refused', status: 'FAILED', code: view.failureCode ?? 'provider_rejected', detail: 'refused by the provider' };
  return undefined;
}

function summary(request: CreateDepositRequest, depositId: string, status: z.infer<typeof depositAcceptedBody>['status']): z.infer<typeof depositAcceptedBody> {
  return { deposit_id: depositId, account_id: request.account_id, amount: request.amount, status };
}

function answerFor(decision: IntentDecision, request: CreateDepositRequest, depositId: string, requestId: string): StoredAnswer {
  if (decision.outcome === 'created') return { status: 201, body: JSON.stringify({ ...summary(request, depositId, decision.status), checkout_url: decision.checkoutUrl }) };
  const problem = {
    ...problemBody('DEPOSIT_REFUSED', decision.detail, { deposit_id: depositId, deposit_status: 'FAILED', failure_code: decision.code }),
    instance: '/v1/deposits',
    request_id: requestId,
  };
  return { status: problem.status, body: JSON.stringify(problem) };
}

function accepted(request: CreateDepositRequest, depositId: string): StoredAnswer {
  return { status: 202, body: JSON.stringify(summary(request, depositId, 'REQUESTED')) };
}

export function toDepositBody(view: DepositView): z.infer<typeof depositBody> {
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
    timeline: view.timeline,
  };
}
