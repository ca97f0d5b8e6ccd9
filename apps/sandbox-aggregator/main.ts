import { databaseUrl, loadConfigOrExit } from '../../lib/config';
import { onShutdown } from '../../lib/lifecycle';
import { createLogger } from '../../lib/logger';
import { createSandboxAggregator } from './server';

// Anyone who reaches an unauthenticated sandbox can settle, fail or return its payouts: production needs a token.
const config = loadConfigOrExit(process.env, { requiredInProduction: ['SANDBOX_API_TOKEN'], asProvider: true });
const logger = createLogger('sandbox-aggregator', config.LOG_LEVEL);
// One instance per process (`sandbox`, `sandbox-b`, ...): each gets its own port, schema, secret and capabilities through SANDBOX_*.
const app = await createSandboxAggregator({
  logger,
  databaseUrl: config.SANDBOX_DATABASE_URL ?? databaseUrl(config),
  schema: config.SANDBOX_SCHEMA,
  webhookSecret: config.SANDBOX_WEBHOOK_SECRET,
  webhookUrl: config.SANDBOX_WEBHOOK_URL,
  callbackDelayMs: config.SANDBOX_CALLBACK_DELAY_MS,
  apiToken: config.SANDBOX_API_TOKEN,
  supportedMethods: config.SANDBOX_METHODS,
  supportedCurrencies: config.SANDBOX_CURRENCIES,
});
await app.listen({ port: config.SANDBOX_PORT, host: config.SANDBOX_HOST });
logger.info(
  { url: `http://${config.SANDBOX_HOST}:${config.SANDBOX_PORT}`, schema: config.SANDBOX_SCHEMA, methods: config.SANDBOX_METHODS, currencies: config.SANDBOX_CURRENCIES },
  'sandbox aggregator ready',
);

onShutdown(async (reason) => {
  logger.info({ reason }, 'sandbox aggregator shutting down');
  await app.close();
});
