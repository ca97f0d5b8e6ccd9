import { databaseUrl, loadConfigOrExit } from '../../lib/config';
import { createPool } from '../../lib/db';
import { onShutdown } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { urlOrigin } from '../../lib/outbox-webhooks';
import { createOutboxPublisher } from './publisher';

const config = loadConfigOrExit();
const logger = createLogger('outbox-publisher', config.LOG_LEVEL);
const pool = createPool(databaseUrl(config), config.PG_POOL_MAX);

const publisher = createOutboxPublisher({
  pool,
  endpoints: config.OUTBOX_ENDPOINTS,
  defaultSecret: config.OUTBOX_WEBHOOK_SECRET,
  keyRing: config.DESTINATION_KEYS,
  batchSize: config.OUTBOX_BATCH_SIZE,
  pollIntervalMs: config.OUTBOX_POLL_INTERVAL_MS,
  retryWindowMs: config.OUTBOX_RETRY_WINDOW,
  backoffBaseMs: config.OUTBOX_BACKOFF_BASE_MS,
  backoffMaxMs: config.OUTBOX_BACKOFF_MAX_MS,
  logger,
});
publisher.start();
// Ids and origins only: endpoint URLs may carry tokens.
const configured = config.OUTBOX_ENDPOINTS.map((e) => ({ id: e.id, origin: urlOrigin(e.url), enabled: e.enabled }));
logger.info(
  { configured, batchSize: config.OUTBOX_BATCH_SIZE, retryWindowMs: config.OUTBOX_RETRY_WINDOW },
  configured.length === 0 ? 'outbox publisher ready: no OUTBOX_ENDPOINTS; it serves the endpoints staff add (/v1/ops/outbox/endpoints)' : 'outbox publisher ready',
);

onShutdown(async (reason) => {
  logger.info({ reason }, 'outbox publisher shutting down');
  await publisher.stop();
  await pool.end();
  logger.info('outbox publisher stopped');
});
