import { loadConfigOrExit } from '../../lib/config';
import { onShutdown } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { createSandboxAggregator } from './server';

const config = loadConfigOrExit();
const logger = createLogger('sandbox-aggregator', config.LOG_LEVEL);
const app = await createSandboxAggregator({ logger, webhookSecret: config.SANDBOX_WEBHOOK_SECRET, webhookUrl: config.SANDBOX_WEBHOOK_URL, callbackDelayMs: config.SANDBOX_CALLBACK_DELAY_MS });
await app.listen({ port: config.SANDBOX_PORT, host: config.SANDBOX_HOST });
logger.info({ url: `http://${config.SANDBOX_HOST}:${config.SANDBOX_PORT}` }, 'sandbox aggregator ready');

onShutdown(async (reason) => {
  logger.info({ reason }, 'sandbox aggregator shutting down');
  await app.close();
});
