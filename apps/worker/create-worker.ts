import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../../activities';
import type { Config } from '../../lib/config';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));

export interface PayoutWorkerOptions extends ActivityDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  /** Pre-built bundle (tests share one); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  logger?: WorkerOptions['sinks'];
}

/** The one place that decides what a payout worker runs; used by apps/worker and by tests. */
export function createPayoutWorker(opts: PayoutWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities(opts),
  });
}

/** The activities' settings, from the platform configuration. */
export function activitySettings(config: Config): Omit<ActivityDeps, 'pool'> {
  return {
    providerUrl: config.SANDBOX_URL,
    payoutLimits: { maxAmountMajor: config.PAYOUT_MAX_AMOUNT, dailyMaxAmountMajor: config.PAYOUT_DAILY_MAX_AMOUNT, hourlyMaxCount: config.PAYOUT_HOURLY_MAX_COUNT },
  };
}
