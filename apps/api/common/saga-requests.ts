import type { SearchAttributePair } from '@temporalio/common';
import { WithStartWorkflowOperation, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure, type UpdateDefinition } from '@temporalio/common';
import type { Ledger } from '../../../ledger';
import type { Config } from '../../../lib/config';
import type { Logger } from '../../../lib/logger';
import { grpcStatusOf } from '../../../lib/temporal-client';
import { IDEMPOTENCY_MISMATCH } from '../../../contracts/common';
import { IdempotencyStore, requestFingerprint, resourceIdFor, type StoredAnswer } from './idempotency';
import { ProblemError, type ProblemCode } from './problem';
import type { AdmissionTicket } from '../traffic/admission-gate';

/** Whether a new saga may start now (degradation mode, admission gate), and what its decision took. */
export interface SagaAdmission {
  /** Spends one of the account's money-moving requests per minute, or throws RATE_LIMITED. */
  limitAccount(accountId: string): Promise<void>;
  /** A ticket held until the first decision, or a ProblemError (PAYOUTS_PAUSED, READ_ONLY, OVERLOADED) that wrote nothing. */
  admitSaga(operation: 'payout' | 'deposit', newKey: boolean): AdmissionTicket;
  /** Seconds from admission to the decision (`decided` false: the sync deadline passed first). */
  observeDecision(operation: 'payout' | 'deposit', seconds: number, decided: boolean): void;
}

const MISMATCH_DETAIL = 'This Idempotency-Key was first used with a different request; nothing was changed';

/** What differs between money-moving requests (payouts, deposits); the idempotency rules do not. */
export interface SagaRequestKind<Decision, Input> {
  operation: 'payout' | 'deposit';
  idPrefix: 'po' | 'dp';
  workflowType: string;
  /** The update that waits for the saga's first decision; its id carries the request fingerprint. */
  decisionUpdate: UpdateDefinition<Decision, [string]>;
  workflowInput(resourceId: string, fingerprint: string): Input;
  /** Search attributes the saga starts with (staff filter on them from the first moment, at no extra history event). */
  searchAttributes?(input: Input): SearchAttributePair[];
  /** A refusal known from the request alone (e.g. over the per-deposit cap): answered before the key is claimed, writing nothing. */
  refusal?(): { code: ProblemCode; detail: string } | undefined;
  /** Data the saga reads from PostgreSQL rather than its input (idempotent: runs for every attempt). */
  beforeStart?(resourceId: string): Promise<void>;
  /** The decision of a saga that has already ended (its update history is gone with it). */
  decisionOfClosedSaga(resourceId: string): Promise<Decision | undefined>;
  answerFor(decision: Decision, resourceId: string): StoredAnswer;
  /** The 202 sent when no decision is known within the sync deadline. */
  accepted(resourceId: string): StoredAnswer;
  /**
   * The answer rebuilt from the read model, for a saga that ran but whose history Temporal no longer keeps;
   * undefined when the read model has never seen it (the saga never started).
   */
  answerFromReadModel(resourceId: string): Promise<StoredAnswer | undefined>;
}

export interface SagaAnswer {
  answer: StoredAnswer;
  replayed: boolean;
  resourceId: string;
}

/**
 * One saga per account-scoped Idempotency-Key, and one answer per key, for every money-moving POST:
 * - the workflow id is derived from the scoped key, with ID policies that never let a second saga start;
 * - the request fingerprint rides in the decision update's id and is checked by its validator, so a
 *   different request with the same key is refused (IDEMPOTENCY_MISMATCH) and changes nothing;
 * - update-with-start answers with the saga's first decision when it comes within the sync deadline
 *   (otherwise 202), and the first answer is kept in PostgreSQL: every repeat, sequential or
 *   concurrent, gets exactly those bytes.
 */
export class SagaRequests {
  private readonly idempotency: IdempotencyStore;
  /** Concurrent duplicates in this process share one update call (Temporal caps in-flight updates per workflow). */
  private readonly inFlight = new Map<string, Promise<unknown>>();
  /** ...and one admission slot: the gate counts sagas being decided, not the requests waiting on them. */
  private readonly admitted = new Map<string, { ticket: AdmissionTicket; holders: number }>();
  /** Temporal calls in progress, including those whose caller stopped waiting (see settle). */
  private readonly outstanding = new Set<Promise<unknown>>();

  constructor(
    private readonly config: Config,
    private readonly temporal: Client,
    private readonly ledger: Ledger,
    pool: ConstructorParameters<typeof IdempotencyStore>[0],
    private readonly logger: Logger,
    /** Counts reads and actions refused because a saga's workflow task is failing (saga_unavailable_total). */
    private readonly countUnavailable: (operation: string) => void = () => undefined,
    private readonly admission?: SagaAdmission,
  ) {
    this.idempotency = new IdempotencyStore(pool);
  }

  async submit<Decision, Input>(
    kind: SagaRequestKind<Decision, Input>,
    request: { account_id: string; amount: { currency: string } },
    key: string,
    requestId: string,
  ): Promise<SagaAnswer> {
    const accountId = request.account_id;
    const resourceId = resourceIdFor(kind.idPrefix, accountId, key);
    const fingerprint = requestFingerprint(kind.operation, request);

    await this.admission?.limitAccount(accountId);
    const earlier = await this.idempotency.lookup(accountId, key, kind.operation, fingerprint);
    if (earlier.state === 'mismatch') throw new ProblemError('IDEMPOTENCY_MISMATCH', MISMATCH_DETAIL);
    if (earlier.state === 'completed') return { answer: earlier.answer, replayed: true, resourceId };

    // From here a saga may start: only if the mode allows it and this instance can decide it in time
    // (otherwise 503/429 at once; nothing is written, the key stays free for the retry).
    const flightKey = `${resourceId}:${fingerprint}`;
    const ticket = this.admit(kind.operation, flightKey, earlier.state === 'absent');
    const admittedAt = performance.now();
    let decision: Decision | undefined;
    try {
      // Refusals that need no saga: nothing is written for them (no key claimed, no workflow).
      if (earlier.state === 'absent') {
        const account = await this.ledger.getAccount(accountId);
        if (!account || account.kind !== 'player') throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${accountId}`);
        if (account.currency !== request.amount.currency) throw new ProblemError('CURRENCY_MISMATCH', `Account ${accountId} holds ${account.currency}`);
        const refusal = kind.refusal?.();
        if (refusal) throw new ProblemError(refusal.code, refusal.detail);
        const claim = await this.idempotency.claim(accountId, key, kind.operation, fingerprint, resourceId);
        if (claim.state === 'mismatch') throw new ProblemError('IDEMPOTENCY_MISMATCH', MISMATCH_DETAIL);
        if (claim.state === 'completed') return { answer: claim.answer, replayed: true, resourceId };
      }

      // A claimed key whose first request never stored its answer: if its saga ran and Temporal has since
      // dropped it (retention), starting again would submit again. The read model answers instead.
      if (earlier.state === 'in_progress' && !(await this.sagaExists(resourceId))) {
        const recorded = await kind.answerFromReadModel(resourceId);
        if (recorded) {
          const stored = await this.idempotency.complete(accountId, key, recorded);
          return { answer: stored.answer, replayed: true, resourceId };
        }
      }

      await kind.beforeStart?.(resourceId);
      let flight = this.inFlight.get(flightKey) as Promise<Decision | undefined> | undefined;
      if (!flight) {
        flight = this.firstDecision(kind, resourceId, fingerprint).finally(() => this.inFlight.delete(flightKey));
        this.inFlight.set(flightKey, flight);
      }
      decision = await flight;
      this.admission?.observeDecision(kind.operation, (performance.now() - admittedAt) / 1000, decision !== undefined);
    } finally {
      ticket?.leave();
    }
    const stored = await this.idempotency.complete(accountId, key, decision === undefined ? kind.accepted(resourceId) : kind.answerFor(decision, resourceId));
    this.logger.info(
      { idempotencyKey: key, workflowId: resourceId, requestId, operation: kind.operation, status: stored.answer.status, decided: decision !== undefined, replayed: !stored.first },
      `${kind.operation} requested`,
    );
    return { answer: stored.answer, replayed: !stored.first, resourceId };
  }

  /** An admission slot for this request's saga, shared with concurrent duplicates; undefined without a gate. */
  private admit(operation: 'payout' | 'deposit', flightKey: string, newKey: boolean): AdmissionTicket | undefined {
    if (!this.admission) return undefined;
    const shared = this.admitted.get(flightKey);
    if (shared) {
      shared.holders += 1;
    } else {
      this.admitted.set(flightKey, { ticket: this.admission.admitSaga(operation, newKey), holders: 1 });
    }
    return {
      leave: () => {
        const entry = this.admitted.get(flightKey);
        if (!entry || --entry.holders > 0) return;
        this.admitted.delete(flightKey);
        entry.ticket.leave();
      },
    };
  }

  /**
   * Starts the saga (or joins the running one) and waits up to the sync deadline for its first decision.
   * Undefined: not decided in time; the saga goes on and the answer is 202.
   */
  private async firstDecision<Decision, Input>(kind: SagaRequestKind<Decision, Input>, resourceId: string, fingerprint: string): Promise<Decision | undefined> {
    const deadlineAt = Date.now() + this.config.PAYOUT_SYNC_DEADLINE_MS;
    const input = kind.workflowInput(resourceId, fingerprint);
    const startOptions = {
      workflowId: resourceId,
      taskQueue: this.config.TEMPORAL_TASK_QUEUE,
      args: [input],
      ...(kind.searchAttributes ? { typedSearchAttributes: kind.searchAttributes(input) } : {}),
      workflowIdConflictPolicy: 'USE_EXISTING' as const,
      workflowIdReusePolicy: 'REJECT_DUPLICATE' as const,
    };
    const decision = (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          // By type name: the API never loads workflow code. A start operation can be used once.
          const start = new WithStartWorkflowOperation<() => Promise<unknown>>(kind.workflowType, startOptions as never);
          // ACCEPTED first, then the result: with waitForStage COMPLETED the RPC itself would hold a 202 back.
          const handle = await this.temporal.workflow.startUpdateWithStart(kind.decisionUpdate, { updateId: `${kind.decisionUpdate.name}:${fingerprint}`, args: [fingerprint], startWorkflowOperation: start, waitForStage: 'ACCEPTED' });
          return await handle.result();
        } catch (err) {
          // Too many updates in flight on this workflow (other API instances' duplicates): back off and rejoin.
          if (!isResourceExhausted(err) || Date.now() + 100 * attempt > deadlineAt) throw err;
          await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
        }
      }
    })();
    decision.catch(() => undefined); // settled later if the deadline wins
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), Math.max(0, deadlineAt - Date.now()));
    });
    try {
      const outcome = await Promise.race([decision, deadline]);
      if (outcome !== 'deadline') return outcome;
      await this.ensureSagaExists(resourceId);
      return undefined;
    } catch (err) {
      if (failureType(err) === IDEMPOTENCY_MISMATCH) throw new ProblemError('IDEMPOTENCY_MISMATCH', MISMATCH_DETAIL);
      if (err instanceof WorkflowExecutionAlreadyStartedError) return kind.decisionOfClosedSaga(resourceId);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A 202 promises a saga: the start rides on the update's RPC, so it is usually there; give it a few seconds. */
  private async ensureSagaExists(resourceId: string): Promise<void> {
    for (const giveUpAt = Date.now() + 5_000; Date.now() < giveUpAt; ) {
      try {
        await this.bounded(() => this.temporal.workflow.getHandle(resourceId).describe(), 2_000);
        return;
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new ProblemError('SERVICE_UNAVAILABLE', 'The saga could not be started in time; retry with the same Idempotency-Key');
  }

  private async sagaExists(workflowId: string): Promise<boolean> {
    try {
      await this.bounded(() => this.temporal.workflow.getHandle(workflowId).describe(), 2_000);
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  /**
   * A saga's live state from its query; undefined when there is no such workflow. A saga whose workflow
   * task is failing cannot answer (its query hangs, or Temporal refuses it): SAGA_UNAVAILABLE (503),
   * logged and counted as the defect it is, so the caller can fall back to the read model.
   */
  async query<T>(workflowId: string, read: (handle: ReturnType<Client['workflow']['getHandle']>) => Promise<T>): Promise<T | undefined> {
    const answer = this.bounded(() => read(this.temporal.workflow.getHandle(workflowId))).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<'slow'>((resolve) => {
      timer = setTimeout(() => resolve('slow'), SLOW_QUERY_MS);
    });
    const first = await Promise.race([answer, slow]).finally(() => clearTimeout(timer));
    // Slow: a healthy saga answers in milliseconds; one whose task keeps failing never does. Ask Temporal.
    if (first === 'slow' && (await this.taskIsFailing(workflowId))) throw this.unavailable(workflowId, 'query', 'workflow task failing');
    const outcome = first === 'slow' ? await answer : first;
    if ('value' in outcome) return outcome.value;
    if (outcome.error instanceof WorkflowNotFoundError) return undefined;
    throw this.unavailableIfTaskFailing(outcome.error, workflowId, 'query');
  }

  /** True when the saga's current workflow task has failed and is being retried (a code defect, not load). */
  async taskIsFailing(workflowId: string): Promise<boolean> {
    try {
      const description = await this.bounded(() => this.temporal.workflow.getHandle(workflowId).describe(), 2_000);
      return Number(description.raw.pendingWorkflowTask?.attempt ?? 0) > 1;
    } catch {
      return false; // cannot tell: the caller's own error handling applies
    }
  }

  /** FAILED_PRECONDITION from Temporal (the workflow task is failing) as SAGA_UNAVAILABLE; anything else as it is. */
  unavailableIfTaskFailing(err: unknown, workflowId: string, operation: string): unknown {
    if (grpcStatusOf(err) !== GRPC_FAILED_PRECONDITION && grpcStatusOf((err as { cause?: unknown })?.cause) !== GRPC_FAILED_PRECONDITION) return err;
    return this.unavailable(workflowId, operation, String((err as Error)?.message ?? err));
  }

  /** SAGA_UNAVAILABLE for `operation`, logged as an error and counted (saga_unavailable_total) for alerting. */
  unavailable(workflowId: string, operation: string, why: string): ProblemError {
    this.countUnavailable(operation);
    this.logger.error({ workflowId, operation, why }, 'saga cannot answer: its workflow task is failing (a defect: see the worker log and the Temporal UI)');
    return new ProblemError('SAGA_UNAVAILABLE', 'This saga cannot answer right now; staff have been alerted. Retry later.');
  }

  /** A Temporal call that gives up in seconds (then 503 through the problem filter) instead of retrying for long. */
  bounded<T>(fn: () => Promise<T>, ms = TEMPORAL_CALL_DEADLINE_MS): Promise<T> {
    const call = this.temporal.connection.withDeadline(Date.now() + ms, fn);
    this.outstanding.add(call);
    const forget = () => this.outstanding.delete(call);
    call.then(forget, forget);
    return call;
  }

  /**
   * Waits for every Temporal call still running, answered or not (a query a failing saga never answers is
   * left behind at its deadline): closing the connection under one makes the client's retry throw.
   */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.outstanding]);
  }
}

const TEMPORAL_CALL_DEADLINE_MS = 10_000;
const GRPC_FAILED_PRECONDITION = 9;
/** Past this a query is suspected of hanging on a failing workflow task, and Temporal is asked. */
const SLOW_QUERY_MS = 1_000;

/** The ApplicationFailure type an update's validator or handler refused with. */
export function failureType(err: unknown): string | undefined {
  return failureOf(err)?.type ?? undefined;
}

/** The ApplicationFailure an update's validator or handler refused with. */
export function failureOf(err: unknown): ApplicationFailure | undefined {
  const cause = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
  return cause instanceof ApplicationFailure ? cause : undefined;
}

function isResourceExhausted(err: unknown): boolean {
  return grpcStatusOf(err) === 8 || /RESOURCE_EXHAUSTED|in-flight update/i.test(String((err as Error)?.message ?? err));
}
