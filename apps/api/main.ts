import { Connection } from '@temporalio/client';
import { createTemporalClient } from '../../lib/temporal-client';
import { databaseUrl, loadConfigOrExit } from '../../lib/config';
import { createPool } from '../../lib/db';
import { onShutdown } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { initTracing } from '../../lib/tracing';
import { createApiApp } from './app';

const config = loadConfigOrExit();
const logger = createLogger('api', config.LOG_LEVEL);
const tracing = initTracing('api', config.TRACING_EXPORTER, config.OTEL_EXPORTER_OTLP_ENDPOINT);
const pool = createPool(databaseUrl(config), config.PG_POOL_MAX);
// Lazy: the API starts (and /health reports 503) even while Temporal is still coming up.
const connection = Connection.lazy({ address: config.TEMPORAL_ADDRESS });
const temporal = createTemporalClient(connection, config.TEMPORAL_NAMESPACE);

const app = await createApiApp({ config, pool, temporal, logger });
await app.listen({ port: config.API_PORT, host: config.API_HOST });
logger.info({ url: `http://${config.API_HOST}:${config.API_PORT}`, docs: `http://${config.API_HOST}:${config.API_PORT}/docs` }, 'api ready');

onShutdown(async (reason) => {
  logger.info({ reason }, 'api shutting down');
  await app.close();
  await connection.close();
  await pool.end();
  await tracing.shutdown();
});
