import { databaseUrl, loadConfigOrExit } from '../../lib/config';
import { createPool } from '../../lib/db';
import { onShutdown } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { createOutboxPublisher } from './publisher';

const config = loadConfigOrExit();
const logger = createLogger('outbox-publisher', config.LOG_LEVEL);
const pool = createPool(databaseUrl(config), config.PG_POOL_MAX);
const endpoints = config.OUTBOX_ENDPOINTS.split(',')
  .map((url) => url.trim())
  .filter((url) => url !== '');

const publisher = createOutboxPublisher({
  pool,
  endpoints,
  secret: config.OUTBOX_WEBHOOK_SECRET,
  batchSize: config.OUTBOX_BATCH_SIZE,
  pollIntervalMs: config.OUTBOX_POLL_INTERVAL_MS,
  maxAttempts: config.OUTBOX_MAX_ATTEMPTS,
  backoffBaseMs: config.OUTBOX_BACKOFF_BASE_MS,
  logger,
});
publisher.start();
// Origins only: endpoint URLs may carry tokens.
const origins = endpoints.map((url) => new URL(url).origin);
if (endpoints.length === 0) logger.warn('no OUTBOX_ENDPOINTS configured: events stay in the outbox until one is');
logger.info({ endpoints: origins, batchSize: config.OUTBOX_BATCH_SIZE }, 'outbox publisher ready');

onShutdown(async (reason) => {
  logger.info({ reason }, 'outbox publisher shutting down');
  await publisher.stop();
  await pool.end();
  logger.info('outbox publisher stopped');
});
