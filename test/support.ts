import { randomUUID } from 'node:crypto';
import { createTemporalClient } from '../lib/temporal-client';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { inject } from 'vitest';
import { workerSettings, createPayoutWorker } from '../apps/worker/create-worker';
import { loadConfig, type Config } from '../lib/config';
import { createPool, type Pool } from '../lib/db';
import { createLogger } from '../lib/logger';
import { installTemporalRuntime } from '../lib/temporal-runtime';

// SDK logs at WARN and above, as JSON on stderr, so a failing test shows what the worker saw.
installTemporalRuntime(createLogger('test-worker', 'warn'), 'WARN');

/** A config for in-process apps under test, pointing at the test run's PostgreSQL and Temporal. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: inject('databaseUrl'),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: inject('temporalNamespace'),
    ...overrides,
  });
}

export function testPool(): Pool {
  return createPool(inject('databaseUrl'), 20);
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomUUID()}`;
}

export async function temporalClient(): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  return { client: createTemporalClient(connection, inject('temporalNamespace')), close: () => connection.close() };
}

/** A real worker on its own task queue (so test files never steal each other's tasks). */
export async function startTestWorker(pool: Pool, taskQueue = uniqueId('tq'), config: Config = testConfig()) {
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const worker: Worker = await createPayoutWorker({
    connection,
    pool,
    namespace: inject('temporalNamespace'),
    taskQueue,
    ...workerSettings(config),
    workflowBundle: { codePath: inject(config.TRACING_EXPORTER === 'off' ? 'workflowBundlePath' : 'tracedWorkflowBundlePath') },
  });
  const running = worker.run();
  return {
    taskQueue,
    worker,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}
