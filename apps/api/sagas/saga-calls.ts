import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client, type WorkflowClient } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from '../../../lib/logger';
import { grpcStatusOf } from '../../../lib/temporal-client';
import { ProblemError } from '../common/problem';

type SagaHandle = ReturnType<Client['workflow']['getHandle']>;

/**
 * The API's calls into running sagas: each bounded by a deadline (then 503, not a long client retry), a
 * saga whose workflow task is failing reported as SAGA_UNAVAILABLE (a defect, counted and logged), and
 * every call still running awaited before the connection closes.
 */
export class SagaCalls {
  /** Temporal calls in progress, including those whose caller stopped waiting (see settle). */
  private readonly outstanding = new Set<Promise<unknown>>();

  constructor(
    private readonly temporal: Client,
    private readonly logger: Logger,
    /** Counts reads and actions refused because a saga's workflow task is failing (saga_unavailable_total). */
    private readonly countUnavailable: (operation: string) => void = () => undefined,
  ) {}

  /** The workflow client, for starts (calls made through it are bounded by the caller). */
  get workflows(): WorkflowClient {
    return this.temporal.workflow;
  }

  handle(workflowId: string): SagaHandle {
    return this.temporal.workflow.getHandle(workflowId);
  }

  /** True when Temporal has the workflow (running or closed, within retention). */
  async exists(workflowId: string): Promise<boolean> {
    try {
      await this.bounded(() => this.handle(workflowId).describe(), 2_000);
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
  async query<T>(workflowId: string, read: (handle: SagaHandle) => Promise<T>): Promise<T | undefined> {
    const answer = this.bounded(() => read(this.handle(workflowId))).then(
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
      const description = await this.bounded(() => this.handle(workflowId).describe(), 2_000);
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

/** The ApplicationFailure an update's validator or handler refused with. */
export function failureOf(err: unknown): ApplicationFailure | undefined {
  const cause = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
  return cause instanceof ApplicationFailure ? cause : undefined;
}

/** The ApplicationFailure type an update's validator or handler refused with. */
export function failureType(err: unknown): string | undefined {
  return failureOf(err)?.type ?? undefined;
}
