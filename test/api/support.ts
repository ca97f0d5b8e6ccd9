import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { recordContractViolation } from '../support/response-contract';
import type { DestinationStream } from 'pino';
import { createTemporalClient } from '../../lib/temporal-client';
import { Connection } from '@temporalio/client';
import { createApiApp } from '../../apps/api/app';
import { createPool, type Pool } from '../../lib/db';
import { createLogger } from '../../lib/logger';
import { signToken, type TokenRole } from '../../lib/tokens';
import { testConfig } from '../support';

export interface TestApi {
  app: NestFastifyApplication;
  pool: Pool;
  token(sub: string, role: TokenRole): Promise<string>;
  close(): Promise<void>;
}

/**
 * The real API application, in process, on the test run's PostgreSQL and Temporal (or the overrides).
 * logTo: receives the API's JSON log lines (at info), for tests that check what is logged.
 */
export async function startTestApi(overrides: Record<string, string> = {}, logTo?: DestinationStream): Promise<TestApi> {
  const config = testConfig(overrides);
  const pool = createPool(config.DATABASE_URL!, 10);
  // A Temporal named by the test is one meant to be unreachable: without the gRPC retry interceptor, whose
  // pending retry timers would fire on the closed channel after the test and throw (uncaught) there.
  const connection = Connection.lazy({ address: config.TEMPORAL_ADDRESS, ...(overrides.TEMPORAL_ADDRESS ? { interceptors: [] } : {}) });
  const temporal = createTemporalClient(connection, config.TEMPORAL_NAMESPACE);
  const app = await createApiApp({ config, pool, temporal, logger: logTo ? createLogger('api-test', 'info', logTo) : createLogger('api-test', 'silent'), onResponseContractViolation: recordContractViolation });
  return {
    app,
    pool,
    token: (sub, role) => signToken({ sub, role }, config.AUTH_JWT_SECRET),
    async close() {
      await app.close();
      await connection.close();
      await pool.end();
    },
  };
}
