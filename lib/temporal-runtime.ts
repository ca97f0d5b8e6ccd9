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
        logger.error(
          { ...fields, alert: 'workflow_task_failed', nondeterminism: failure.includes('TMPRL1100') || failure.includes('NonDeterministic') },
          'workflow task failed: the saga is stopped and retried until its code is fixed (see the Temporal UI, and temporal_workflow_task_execution_failed)',
        );
        return;
      }
      logger[levels[entry.level]](fields, entry.message);
    }),
  });
}
