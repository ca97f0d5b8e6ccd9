import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import type { Logger } from './logger';

const levels: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/** Routes the Temporal SDK's own logs (worker, workflows, activities) into our pino JSON logs. */
/** With metricsAddress, the SDK serves its Prometheus metrics (workflow/activity task latencies, slots, polls) there. */
export function installTemporalRuntime(logger: Logger, level: LogLevel = 'INFO', metricsAddress?: string): void {
  Runtime.install({
    ...(metricsAddress ? { telemetryOptions: { metrics: { prometheus: { bindAddress: metricsAddress } } } } : {}),
    // Our entry points own signal handling (lib/lifecycle.ts), so shutdown has one owner.
    shutdownSignals: [],
    logger: new DefaultLogger(level, (entry) => {
      const { workflowId, workflowType, activityType, runId, ...rest } = (entry.meta ?? {}) as Record<string, unknown>;
      logger[levels[entry.level]]({ workflowId, workflowType, activityType, runId, ...rest, sdk: 'temporal' }, entry.message);
    }),
  });
}
