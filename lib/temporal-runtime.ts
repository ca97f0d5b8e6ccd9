import { DefaultLogger, Runtime, makeTelemetryFilterString, type LogLevel } from '@temporalio/worker';
import type { Logger } from './logger';

const levels: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/** What Temporal's core logs (at WARN) when a workflow task fails: the saga stops until the code is fixed. */
const WORKFLOW_TASK_FAILED = /^Failing workflow task/;

/** A failed workflow task as Temporal's core reports it: it names the run only (no workflow id or type). */
export interface WorkflowTaskFailure {
  runId: string;
  failure: string;
  nondeterminism: boolean;
}

const workflowTaskFailureListeners = new Set<(failure: WorkflowTaskFailure) => void>();

/**
 * Calls `listener` for each failed workflow task this process's workers report (see installTemporalRuntime).
 * Core reports a run's failure once, on the task's first failed attempt; the retries that follow fail
 * without a report (they only count in temporal_workflow_task_execution_failed). Returns an unsubscribe.
 */
export function onWorkflowTaskFailed(listener: (failure: WorkflowTaskFailure) => void): () => void {
  workflowTaskFailureListeners.add(listener);
  return () => workflowTaskFailureListeners.delete(listener);
}

/**
 * Routes the Temporal SDK's own logs (worker, workflows, activities, and its native core) into our pino
 * JSON logs. A failed workflow task (a nondeterminism error, a bug in workflow code) is an ERROR with
 * `alert: 'workflow_task_failed'`: a saga it stops is a payout nobody pays, retried in silence otherwise.
 * With metricsAddress, the SDK serves its Prometheus metrics (workflow/activity task latencies, slots,
 * polls, `temporal_workflow_task_execution_failed{failure_reason}`) there.
 */
export function installTemporalRuntime(logger: Logger, level: LogLevel = 'INFO', metricsAddress?: string): void {
  Runtime.install({
    telemetryOptions: {
      ...(metricsAddress ? { metrics: { prometheus: { bindAddress: metricsAddress } } } : {}),
      logging: { filter: makeTelemetryFilterString({ core: level }), forward: {} },
    },
    // Our entry points own signal handling (lib/lifecycle.ts), so shutdown has one owner.
    shutdownSignals: [],
    logger: new DefaultLogger(level, (entry) => {
      const { workflowId, workflowType, activityType, runId, ...rest } = (entry.meta ?? {}) as Record<string, unknown>;
      const fields = { workflowId, workflowType, activityType, runId, ...rest, sdk: 'temporal' };
      if (WORKFLOW_TASK_FAILED.test(entry.message)) {
        const failure = String(rest.failure ?? '');
        const nondeterminism = failure.includes('TMPRL1100') || failure.includes('NonDeterministic');
        logger.error(
          { ...fields, alert: 'workflow_task_failed', nondeterminism },
          'workflow task failed: the saga is stopped and retried until its code is fixed (see the Temporal UI, and temporal_workflow_task_execution_failed)',
        );
        if (typeof runId === 'string') {
          for (const listener of workflowTaskFailureListeners) {
            try {
              listener({ runId, failure, nondeterminism });
            } catch (err) {
              logger.error({ err, runId }, 'a workflow task failure listener threw');
            }
          }
        }
        return;
      }
      logger[levels[entry.level]](fields, entry.message);
    }),
  });
}
