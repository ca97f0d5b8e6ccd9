import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { createTemporalClient } from '../../lib/temporal-client';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { inject } from 'vitest';
import { workerSettings, createWorkerPools } from '../../apps/worker/create-worker';
import { backgroundTaskQueue, loadConfig, type Config } from '../../lib/config';
import { createPool, type Pool } from '../../lib/db';
import { createLogger } from '../../lib/logger';
import { installTemporalRuntime } from '../../lib/temporal-runtime';
import { ProviderRegistry } from '../../activities/provider-registry';
import { providerConnections } from '../../lib/providers';

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

/**
 * A real worker process's two pools (money path and background) on their own task queues (so test files
 * never steal each other's tasks); the background queue is derived from the main one as the API derives it.
 */
export async function startTestWorker(pool: Pool, taskQueue = uniqueId('tq'), config: Config = testConfig(), opts: { workflowBundlePath?: string } = {}) {
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const pools = await createWorkerPools({
    connection,
    pool,
    namespace: inject('temporalNamespace'),
    taskQueue,
    backgroundTaskQueue: backgroundTaskQueue({ ...config, TEMPORAL_TASK_QUEUE: taskQueue }),
    ...workerSettings(config),
    workflowBundle: { codePath: opts.workflowBundlePath ?? inject(config.TRACING_EXPORTER === 'off' ? 'workflowBundlePath' : 'tracedWorkflowBundlePath') },
  });
  const worker: Worker = pools.workers[0]!;
  const running = pools.run();
  return {
    taskQueue,
    worker,
    async stop() {
      pools.shutdown();
      await running;
      await connection.close();
    },
  };
}

/** A database of its own on the test run's PostgreSQL, empty (the caller migrates it as far as it needs); `drop` removes it. */
export async function scratchDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const database = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: inject('databaseUrl') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(inject('databaseUrl'));
  url.pathname = `/${database}`;
  return {
    url: url.toString(),
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** The worker's provider connections (both sandbox instances), for tests that call activities directly. */
export function providerRegistry(pool: Pool, urls: { sandbox: string; sandboxB?: string }): ProviderRegistry {
  const config = loadConfig({ SANDBOX_URL: urls.sandbox, ...(urls.sandboxB ? { SANDBOX_B_URL: urls.sandboxB } : {}) });
  return new ProviderRegistry(providerConnections(config), { errorPercent: 50, minCalls: 5, windowMs: 30_000, resetMs: 15_000 }, pool);
}
