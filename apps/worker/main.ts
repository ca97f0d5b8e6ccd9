import { NativeConnection } from '@temporalio/worker';
import { loadConfigOrExit, databaseUrl } from '../../lib/config';
import { createPool } from '../../lib/db';
import { onShutdown } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { installTemporalRuntime } from '../../lib/temporal-runtime';
import { activitySettings, createPayoutWorker } from './create-worker';

const config = loadConfigOrExit();
const logger = createLogger('worker', config.LOG_LEVEL);
installTemporalRuntime(logger);

const pool = createPool(databaseUrl(config), config.PG_POOL_MAX);
const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
const worker = await createPayoutWorker({ connection, pool, namespace: config.TEMPORAL_NAMESPACE, taskQueue: config.TEMPORAL_TASK_QUEUE, ...activitySettings(config) });

logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE, namespace: config.TEMPORAL_NAMESPACE, temporal: config.TEMPORAL_ADDRESS }, 'worker ready');
const running = worker.run();
onShutdown(async (reason) => {
  logger.info({ reason }, 'worker shutting down');
  // Lets in-flight activities finish (up to the worker's shutdown grace time) before exiting.
  worker.shutdown();
  await running;
  await connection.close();
  await pool.end();
  logger.info('worker stopped');
});
await running;
