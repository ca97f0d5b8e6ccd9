import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from './logger';
import { onWorkflowTaskFailed, type WorkflowTaskFailure } from './temporal-runtime';
import { WorkflowTaskFailureStore } from './workflow-task-failures';

export interface WorkflowTaskFailureMarkingOptions {
  client: Client;
  store: WorkflowTaskFailureStore;
  logger: Logger;
  /** How often marked sagas are checked against Temporal, and how old a failure must be to be checked. */
  recheckEveryMs: number;
}

export interface WorkflowTaskFailureMarking {
  /** Checks every mark that is due now (also run every recheckEveryMs). */
  checkNow(): Promise<void>;
  /** Marks being written for failures already reported (for tests and shutdown). */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

const RUN_ID = /^[0-9a-f-]{36}$/i;
/** Visibility may lag the workflow's start by a moment (Elasticsearch: about a second). */
const LOOKUP_ATTEMPTS = 6;
const LOOKUP_FIRST_DELAY_MS = 200;

/**
 * Marks for staff the sagas whose workflow task fails (table workflow_task_failures), and removes the mark
 * once the saga's task is healthy again.
 *
 * Why this way: a failing saga cannot record anything (its own code is what fails), so the mark is written
 * from outside it, by the worker that saw the failure — from Temporal core's own report of the failed task
 * (lib/temporal-runtime.ts), which arrives on the task's first failed attempt, whatever the cause
 * (nondeterminism, an exception in workflow code). Core names only the run, so the workflow is found by its
 * run id in Temporal visibility; the mark is plain SQL through the worker's pool. A periodic sweep of every
 * running saga (describe each, looking for a retried task) would also find them, but costs one call per open
 * saga (hundreds of thousands in their return window), and Temporal's own `TemporalReportedProblems` search
 * attribute needs server 1.30+ with dynamic config on self-hosted clusters. Checking the few marked sagas
 * is cheap, so clearing is periodic: a mark goes when Temporal shows the saga closed, gone, or with no
 * retried task (any progress, from a fixed deployment or a reset, ends the retries).
 * Limit: core reports a task's failure once (its retries fail unreported), so a saga that was already failing
 * before this worker started is not marked; temporal_workflow_task_execution_failed and the alert still count it.
 */
export function startWorkflowTaskFailureMarking(opts: WorkflowTaskFailureMarkingOptions): WorkflowTaskFailureMarking {
  const { client, store, logger, recheckEveryMs } = opts;
  const inFlight = new Set<Promise<void>>();
  let stopped = false;

  const unsubscribe = onWorkflowTaskFailed((failure) => {
    const marking = mark(failure).finally(() => inFlight.delete(marking));
    inFlight.add(marking);
  });

  async function mark(failure: WorkflowTaskFailure): Promise<void> {
    try {
      const execution = await findRun(failure.runId);
      if (!execution) {
        logger.error({ runId: failure.runId }, 'workflow task failed, but its workflow was not found by run id: not marked for staff');
        return;
      }
      await withRetries(() =>
        store.mark({ ...execution, runId: failure.runId, kind: failure.nondeterminism ? 'nondeterminism' : 'workflow_error', failure: describeCoreFailure(failure.failure) }),
      );
      logger.warn({ ...execution, runId: failure.runId, alert: 'workflow_task_failed' }, 'saga marked for staff: its workflow task is failing');
    } catch (err) {
      logger.error({ err, runId: failure.runId }, 'could not mark a saga whose workflow task failed');
    }
  }

  async function findRun(runId: string): Promise<{ workflowId: string; workflowType: string } | undefined> {
    if (!RUN_ID.test(runId)) return undefined;
    for (let attempt = 0; attempt < LOOKUP_ATTEMPTS && !stopped; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, LOOKUP_FIRST_DELAY_MS * 2 ** (attempt - 1)));
      try {
        for await (const execution of client.workflow.list({ query: `RunId = '${runId}'` })) return { workflowId: execution.workflowId, workflowType: execution.type };
      } catch (err) {
        if (attempt === LOOKUP_ATTEMPTS - 1) throw err;
      }
    }
    return undefined;
  }

  async function checkNow(): Promise<void> {
    for (const mark of await store.dueForCheck(recheckEveryMs)) {
      if (stopped) return;
      try {
        let attempt = 0;
        let running = true;
        try {
          const description = await client.workflow.getHandle(mark.workflowId).describe();
          running = description.status.name === 'RUNNING';
          attempt = Number(description.raw.pendingWorkflowTask?.attempt ?? 0);
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
          running = false;
        }
        // Temporal keeps a failing task pending with a growing attempt; attempt 1 (or none) means it got past it.
        if (running && attempt > 1) await store.stillFailing(mark.workflowId, attempt);
        else if (await store.clear(mark.workflowId, mark.lastFailedAt)) {
          logger.info({ workflowId: mark.workflowId, workflowType: mark.workflowType, running }, 'saga no longer marked: its workflow task is healthy again');
        }
      } catch (err) {
        logger.warn({ err, workflowId: mark.workflowId }, 'could not check a saga marked for a failing workflow task');
      }
    }
  }

  let timer: NodeJS.Timeout | undefined;
  let checking: Promise<void> = Promise.resolve();
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      checking = checkNow()
        .catch((err: unknown) => logger.warn({ err }, 'checking marked sagas failed'))
        .finally(schedule);
    }, recheckEveryMs);
    timer.unref();
  };
  schedule();

  return {
    checkNow,
    settled: async () => {
      await Promise.all([...inFlight]);
    },
    async stop() {
      stopped = true;
      unsubscribe();
      clearTimeout(timer);
      await Promise.all([...inFlight, checking]);
    },
  };
}

/** The message and stack of core's failure report (a Rust debug print), unescaped; the raw text when it does not parse. */
export function describeCoreFailure(raw: string): string {
  const field = (name: string) => {
    const match = new RegExp(`${name}: "((?:[^"\\\\]|\\\\.)*)"`).exec(raw);
    return match ? match[1]!.replace(/\\n/g, '\n').replace(/\\(["\\'])/g, '$1') : undefined;
  };
  const message = field('message');
  if (message === undefined) return raw;
  const stack = field('stack_trace');
  return stack ? `${message}\n${stack}` : message;
}

async function withRetries<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
    }
  }
}
