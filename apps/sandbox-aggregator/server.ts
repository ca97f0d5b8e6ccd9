import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../../lib/logger';

export interface SandboxOptions {
  logger: Logger;
  webhookSecret: string;
  webhookUrl: string;
}

/**
 * A stand-in payment aggregator, run as its own process so the platform talks to it over HTTP
 * exactly as it would to a real one.
 */
export async function createSandboxAggregator(opts: SandboxOptions): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: opts.logger as FastifyBaseLogger, disableRequestLogging: true });
  app.get('/health', async () => ({ status: 'ok', service: 'sandbox-aggregator' }));
  return app;
}
