import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { ManagedProcess } from '../../lib/processes';
import { freePort } from '../../lib/wait';
import { uniqueId } from '../support';
import { getHealth, hostAndPort, startEntryPoint, startTcpProxy, throughProxy, waitForHealth } from './support';

/**
 * The worker process (apps/worker/main.ts) as it runs in production, reaching PostgreSQL through a proxy the
 * test can cut: readiness follows its pools' polling and the database, liveness only the process.
 */
describe('worker health (WORKER_HEALTH_ADDRESS)', () => {
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let worker: ManagedProcess;
  let base: string;
  const output: string[] = [];

  beforeAll(async () => {
    proxy = await startTcpProxy(hostAndPort(inject('databaseUrl')));
    const healthPort = await freePort();
    base = `http://127.0.0.1:${healthPort}`;
    worker = startEntryPoint('worker', 'apps/worker/main.ts', {
      DATABASE_URL: throughProxy(inject('databaseUrl'), proxy.port),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: inject('temporalNamespace'),
      TEMPORAL_TASK_QUEUE: uniqueId('health-tq'),
      WORKER_METRICS_ADDRESS: `127.0.0.1:${await freePort()}`,
      WORKER_HEALTH_ADDRESS: `127.0.0.1:${healthPort}`,
      HEALTH_TIMEOUT_MS: '1000',
    }, output);
  });
  afterAll(async () => {
    await worker?.stop(15_000);
    await proxy?.close();
  });

  it('is ready once both pools poll and PostgreSQL answers; 503 naming PostgreSQL while it is unreachable; ready again after', async () => {
    const ready = await waitForHealth(`${base}/health/ready`, 200).catch((err: Error) => {
      throw new Error(`${err.message}\n${output.slice(-30).join('\n')}`);
    });
    expect(ready.body).toMatchObject({ status: 'ok', service: 'worker', draining: false, checks: { polling: { status: 'up' }, postgres: { status: 'up' } } });
    expect(output.join('\n')).toContain(`"health":"${base}/health/ready"`);

    await proxy.cut();
    const down = await waitForHealth(`${base}/health/ready`, 503, 15_000);
    expect(down.body).toMatchObject({ status: 'unavailable', checks: { polling: { status: 'up' }, postgres: { status: 'down', error: expect.any(String) } } });
    // Liveness checks no dependency: an outage of the database must not get the worker restarted.
    expect(await getHealth(`${base}/health/live`)).toEqual({ status: 200, body: { status: 'ok', service: 'worker' } });

    await proxy.restore();
    expect((await waitForHealth(`${base}/health/ready`, 200, 30_000)).body.checks?.postgres?.status).toBe('up');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('stops answering ready as it shuts down, and exits cleanly', async () => {
    const exited = worker.exited;
    process.kill(worker.child.pid!, 'SIGTERM');
    expect(await exited).toBe(0);
    await expect(fetch(`${base}/health/live`)).rejects.toThrow();
    expect(output.join('\n')).toContain('worker stopped');
  });
});
