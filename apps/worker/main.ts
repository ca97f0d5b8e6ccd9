import { Client, Connection } from '@temporalio/client';
import { createTemporalClient } from '../../lib/temporal-client';
import { NativeConnection } from '@temporalio/worker';
import { backgroundTaskQueue, loadConfigOrExit, databaseUrl } from '../../lib/config';
import { createPool, ping } from '../../lib/db';
import { startHealthServer } from '../../lib/health-server';
import { onShutdown } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { installTemporalRuntime } from '../../lib/temporal-runtime';
import { initTracing } from '../../lib/tracing';
import { startWorkflowTaskFailureMarking } from '../../lib/workflow-task-failure-marker';
import { WorkflowTaskFailureStore } from '../../lib/workflow-task-failures';
import { ensureReconciliationSchedule } from '../../temporal/schedules';
import { workerSettings, createWorkerPools } from './create-worker';

const config = loadConfigOrExit();
const logger = createLogger('worker', config.LOG_LEVEL);
installTemporalRuntime(logger, 'INFO', config.WORKER_METRICS_ADDRESS);
initTracing('worker', config.TRACING_EXPORTER, config.OTEL_EXPORTER_OTLP_ENDPOINT);

const pool = createPool(databaseUrl(config), config.PG_POOL_MAX);
let worker: Awaited<ReturnType<typeof createWorkerPools>> | undefined;
// Up from the start, so liveness answers while the workflows are bundled; ready once every pool polls.
const health = await startHealthServer({
  address: config.WORKER_HEALTH_ADDRESS,
  service: 'worker',
  timeoutMs: config.HEALTH_TIMEOUT_MS,
  logger,
  checks: {
    polling: () => {
      if (!worker) throw new Error('starting: workflows not bundled yet');
      const notRunning = worker.workers.filter((w) => w.getState() !== 'RUNNING');
      if (notRunning.length > 0) throw new Error(notRunning.map((w) => `task queue ${w.options.taskQueue}: ${w.getState()}`).join('; '));
    },
    postgres: () => ping(pool),
  },
});
const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
const settings = workerSettings(config);
const background = backgroundTaskQueue(config);
worker = await createWorkerPools({ connection, pool, namespace: config.TEMPORAL_NAMESPACE, taskQueue: config.TEMPORAL_TASK_QUEUE, backgroundTaskQueue: background, ...settings });
// Sagas whose workflow task fails are marked for staff from here (their own code cannot run).
const taskFailureMarking = startWorkflowTaskFailureMarking({
  client: new Client({ connection, namespace: config.TEMPORAL_NAMESPACE }),
  store: new WorkflowTaskFailureStore(pool),
  logger,
  recheckEveryMs: config.WORKFLOW_TASK_FAILURE_RECHECK_MS,
});

// The reconciliation schedule, kept in step with this worker's settings. A NativeConnection is not a client
// Connection, so a short-lived client does it. A failure is logged, not fatal: sagas must keep running.
try {
  const clientConnection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const client = createTemporalClient(clientConnection, config.TEMPORAL_NAMESPACE);
    // Reconciliation is background work: it runs on the background pool, never in a money-path slot.
    const schedule = await ensureReconciliationSchedule(client, { taskQueue: background, intervalSeconds: config.RECONCILIATION_INTERVAL_SECONDS });
    logger.info({ ...schedule, intervalSeconds: config.RECONCILIATION_INTERVAL_SECONDS }, 'reconciliation schedule ensured');
  } finally {
    await clientConnection.close();
  }
} catch (err) {
  logger.error({ err }, 'could not create or update the reconciliation schedule');
}

logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE, backgroundTaskQueue: background, backgroundSlots: settings.backgroundSlots, namespace: config.TEMPORAL_NAMESPACE, temporal: config.TEMPORAL_ADDRESS, metrics: `http://${config.WORKER_METRICS_ADDRESS}/metrics`, health: `http://${config.WORKER_HEALTH_ADDRESS}/health/ready` }, 'worker ready');
const running = worker.run();
onShutdown(async (reason) => {
  logger.info({ reason }, 'worker shutting down');
  health.drain();
  // Lets in-flight activities finish (up to the worker's shutdown grace time) before exiting.
  worker.shutdown();
  await running;
  await taskFailureMarking.stop();
  await connection.close();
  await pool.end();
  await health.close();
  logger.info('worker stopped');
});
await running;
