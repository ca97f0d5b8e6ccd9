import { databaseUrl, loadConfigOrExit } from '../../lib/config';
import { createPool, ping } from '../../lib/db';
import { startHealthServer } from '../../lib/health-server';
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
// The loop retries a failed round itself (logged, with backoff): it runs from start() until shutdown.
let loopRunning = true;
const health = await startHealthServer({
  address: config.OUTBOX_HEALTH_ADDRESS,
  service: 'outbox-publisher',
  timeoutMs: config.HEALTH_TIMEOUT_MS,
  logger,
  checks: {
    loop: () => {
      if (!loopRunning) throw new Error('stopping');
    },
    postgres: () => ping(pool),
  },
});
// Ids and origins only: endpoint URLs may carry tokens.
const configured = config.OUTBOX_ENDPOINTS.map((e) => ({ id: e.id, origin: urlOrigin(e.url), enabled: e.enabled }));
logger.info(
  { configured, batchSize: config.OUTBOX_BATCH_SIZE, retryWindowMs: config.OUTBOX_RETRY_WINDOW },
  configured.length === 0 ? 'outbox publisher ready: no OUTBOX_ENDPOINTS; it serves the endpoints staff add (/v1/ops/outbox/endpoints)' : 'outbox publisher ready',
);

onShutdown(async (reason) => {
  logger.info({ reason }, 'outbox publisher shutting down');
  loopRunning = false;
  health.drain();
  await publisher.stop();
  await pool.end();
  await health.close();
  logger.info('outbox publisher stopped');
});
