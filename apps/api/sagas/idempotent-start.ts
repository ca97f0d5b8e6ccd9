import { WithStartWorkflowOperation, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import type { QueryDefinition, SearchAttributePair, UpdateDefinition } from '@temporalio/common';
import type { Ledger } from '../../../ledger';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import type { Logger } from '../../../lib/logger';
import { grpcStatusOf } from '../../../lib/temporal-client';
import { IDEMPOTENCY_MISMATCH } from '../../../contracts/common';
import { IdempotencyStore, requestFingerprint, resourceIdFor, type StoredAnswer } from '../sagas/idempotency';
import { ProblemError, type ProblemCode } from '../common/problem';
import type { AdmissionTicket } from '../traffic/admission-gate';
import { failureType, type SagaCalls } from './saga-calls';

/** What every money-moving request carries. */
export interface MoneyRequest {
  account_id: string;
  amount: { minor_units: number; currency: string };
}

/**
 * What one kind of money-moving saga (payout, deposit) is, as the idempotent start needs it: names,
 * its first-decision update, where its state can be read, and how a decision is answered. Static data
 * (one constant per kind) with pure mappings; nothing in it does I/O.
 */
export interface SagaKind<Request extends MoneyRequest, Decision, View, Input, IdField extends keyof Input & string> {
  operation: 'payout' | 'deposit';
  idPrefix: 'po' | 'dp';
  workflowType: string;
  /** The workflow input's field holding the resource id; the id and the fingerprint are filled in here. */
  idField: IdField;
  /** The update that waits for the saga's first decision; its id carries the request fingerprint. */
  decisionUpdate: UpdateDefinition<Decision, [string]>;
  /** Search attributes the saga starts with (staff filter on them from the first moment, at no extra history event). */
  searchAttributes(input: Input): SearchAttributePair[];
  /** The saga's view, which still answers once it has ended (when its update history is gone with it). */
  statusQuery: QueryDefinition<View>;
  /** The read model, which outlives Temporal's retention: its table, id column and row as a view. */
  readModel: { table: 'payouts' | 'deposits'; idColumn: 'payout_id' | 'deposit_id'; toView(row: Record<string, unknown>): View };
  /** The first decision as a view shows it; undefined while the saga has not decided. */
  decisionOf(view: View): Decision | undefined;
  /** The HTTP answer to a decision; `undefined`: not decided within the sync deadline (202). */
  answer(decision: Decision | undefined, request: Request, resourceId: string, requestId: string): StoredAnswer;
}

/** One request to start a saga of some kind: the request itself, and what the saga starts with. */
export interface SagaStartRequest<Request extends MoneyRequest, Input, IdField extends keyof Input & string> {
  request: Request;
  key: string;
  requestId: string;
  /** The workflow input, less its id and the request fingerprint. */
  input: Omit<Input, IdField | 'fingerprint'>;
  /** A refusal known from the request alone (e.g. over the per-deposit cap): answered before the key is claimed, writing nothing. */
  refusal?: { code: ProblemCode; detail: string };
  /**
   * Data the saga reads from PostgreSQL rather than its input (a payout's encrypted destination): written
   * once the key is claimed, before the start, idempotently (it runs for every attempt).
   */
  beforeStart?(resourceId: string): Promise<void>;
}

/** Whether a new saga may start now (degradation mode, admission gate), and what its decision took. */
export interface SagaAdmission {
  /** Spends one of the account's money-moving requests per minute, or throws RATE_LIMITED. */
  limitAccount(accountId: string): Promise<void>;
  /** A ticket held until the first decision, or a ProblemError (PAYOUTS_PAUSED, READ_ONLY, OVERLOADED) that wrote nothing. */
  admitSaga(operation: 'payout' | 'deposit', newKey: boolean): AdmissionTicket;
  /** Seconds from admission to the decision (`decided` false: the sync deadline passed first). */
  observeDecision(operation: 'payout' | 'deposit', seconds: number, decided: boolean): void;
}

export interface SagaAnswer {
  answer: StoredAnswer;
  replayed: boolean;
  resourceId: string;
}

/** A claim this old whose saga Temporal no longer has was dropped by retention (days); younger ones are still starting. */
const RETENTION_SUSPECT_AFTER_MS = 60 * 60_000;

const MISMATCH_DETAIL = 'This Idempotency-Key was first used with a different request; nothing was changed';

/**
 * One saga per account-scoped Idempotency-Key, and one answer per key, for every money-moving POST:
 * - the workflow id is derived from the scoped key, with ID policies that never let a second saga start;
 * - the request fingerprint rides in the decision update's id and is checked by its validator, so a
 *   different request with the same key is refused (IDEMPOTENCY_MISMATCH) and changes nothing;
 * - update-with-start answers with the saga's first decision when it comes within the sync deadline
 *   (otherwise 202), and the first answer is kept in PostgreSQL: every repeat, sequential or
 *   concurrent, gets exactly those bytes.
 */
export class IdempotentStart {
  private readonly idempotency: IdempotencyStore;
  /** Concurrent duplicates in this process share one update call (Temporal caps in-flight updates per workflow). */
  private readonly inFlight = new Map<string, Promise<unknown>>();
  /** ...and one admission slot: the gate counts sagas being decided, not the requests waiting on them. */
  private readonly admitted = new Map<string, { ticket: AdmissionTicket; holders: number }>();

  constructor(
    private readonly config: Config,
    private readonly calls: SagaCalls,
    private readonly ledger: Ledger,
    private readonly pool: Pool,
    private readonly logger: Logger,
    private readonly admission?: SagaAdmission,
  ) {
    this.idempotency = new IdempotencyStore(pool);
  }

  async start<Request extends MoneyRequest, Decision, View, Input, IdField extends keyof Input & string>(
    kind: SagaKind<Request, Decision, View, Input, IdField>,
    { request, key, requestId, input, refusal, beforeStart }: SagaStartRequest<Request, Input, IdField>,
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
        if (refusal) throw new ProblemError(refusal.code, refusal.detail);
        const claim = await this.idempotency.claim(accountId, key, kind.operation, fingerprint, resourceId);
        if (claim.state === 'mismatch') throw new ProblemError('IDEMPOTENCY_MISMATCH', MISMATCH_DETAIL);
        if (claim.state === 'completed') return { answer: claim.answer, replayed: true, resourceId };
      }

      // A claimed key whose first request never stored its answer: if its saga ran and Temporal has since
      // dropped it (retention), starting again would submit again. The read model answers instead. Only for a
      // claim older than any start could take: a young saga Temporal does not show yet is joined, not replaced.
      if (earlier.state === 'in_progress' && Date.now() - earlier.claimedAt.getTime() > RETENTION_SUSPECT_AFTER_MS && !(await this.calls.exists(resourceId))) {
        const recorded = await this.readModelView(kind, resourceId);
        if (recorded) {
          const stored = await this.idempotency.complete(accountId, key, kind.answer(kind.decisionOf(recorded), request, resourceId, requestId));
          return { answer: stored.answer, replayed: true, resourceId };
        }
      }

      await beforeStart?.(resourceId);
      let flight = this.inFlight.get(flightKey) as Promise<Decision | undefined> | undefined;
      if (!flight) {
        const startInput = { ...input, [kind.idField]: resourceId, fingerprint } as Input;
        flight = this.firstDecision(kind, startInput, resourceId, fingerprint).finally(() => this.inFlight.delete(flightKey));
        this.inFlight.set(flightKey, flight);
      }
      decision = await flight;
      this.admission?.observeDecision(kind.operation, (performance.now() - admittedAt) / 1000, decision !== undefined);
    } finally {
      ticket?.leave();
    }
    const stored = await this.idempotency.complete(accountId, key, kind.answer(decision, request, resourceId, requestId));
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
  private async firstDecision<Decision, View, Input>(
    kind: Pick<SagaKind<never, Decision, View, Input, never>, 'workflowType' | 'decisionUpdate' | 'searchAttributes' | 'statusQuery' | 'decisionOf'>,
    input: Input,
    resourceId: string,
    fingerprint: string,
  ): Promise<Decision | undefined> {
    const deadlineAt = Date.now() + this.config.SAGA_SYNC_DEADLINE_MS;
    const startOptions = {
      workflowId: resourceId,
      taskQueue: this.config.TEMPORAL_TASK_QUEUE,
      args: [input],
      typedSearchAttributes: kind.searchAttributes(input),
      workflowIdConflictPolicy: 'USE_EXISTING' as const,
      workflowIdReusePolicy: 'REJECT_DUPLICATE' as const,
    };
    const decision = (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          // By type name: the API never loads workflow code. A start operation can be used once.
          const start = new WithStartWorkflowOperation<() => Promise<unknown>>(kind.workflowType, startOptions as never);
          // ACCEPTED first, then the result: with waitForStage COMPLETED the RPC itself would hold a 202 back.
          const handle = await this.calls.workflows.startUpdateWithStart(kind.decisionUpdate, { updateId: `${kind.decisionUpdate.name}:${fingerprint}`, args: [fingerprint], startWorkflowOperation: start, waitForStage: 'ACCEPTED' });
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
      // The saga has ended: its view still says what it first decided.
      if (err instanceof WorkflowExecutionAlreadyStartedError) return kind.decisionOf(await this.calls.bounded(() => this.calls.handle(resourceId).query(kind.statusQuery)));
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A 202 promises a saga: the start rides on the update's RPC, so it is usually there; give it a few seconds. */
  private async ensureSagaExists(resourceId: string): Promise<void> {
    for (const giveUpAt = Date.now() + 5_000; Date.now() < giveUpAt; ) {
      try {
        await this.calls.bounded(() => this.calls.handle(resourceId).describe(), 2_000);
        return;
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new ProblemError('SERVICE_UNAVAILABLE', 'The saga could not be started in time; retry with the same Idempotency-Key');
  }

  /** The saga as its read model recorded it; undefined when the read model has never seen it (it never started). */
  private async readModelView<View>(kind: { readModel: SagaKind<never, unknown, View, unknown, never>['readModel'] }, resourceId: string): Promise<View | undefined> {
    const { table, idColumn, toView } = kind.readModel; // names from the kind's constant, never from a request
    const { rows } = await this.pool.query<Record<string, unknown>>(`SELECT * FROM ${table} WHERE ${idColumn} = $1`, [resourceId]);
    return rows[0] ? toView(rows[0]) : undefined;
  }
}

function isResourceExhausted(err: unknown): boolean {
  return grpcStatusOf(err) === 8 || /RESOURCE_EXHAUSTED|in-flight update/i.test(String((err as Error)?.message ?? err));
}
