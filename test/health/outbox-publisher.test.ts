import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateUp } from '../../lib/migrate';
import type { ManagedProcess } from '../../lib/processes';
import { freePort } from '../../lib/wait';
import { scratchDatabase } from '../support';
import { getHealth, hostAndPort, startEntryPoint, startTcpProxy, throughProxy, waitForHealth } from './support';

/**
 * The outbox publisher process (apps/outbox-publisher/main.ts) on a database of its own (it serves every
 * endpoint it finds), reaching it through a proxy the test can cut.
 */
describe('outbox publisher health (OUTBOX_HEALTH_ADDRESS)', () => {
  let database: Awaited<ReturnType<typeof scratchDatabase>>;
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let publisher: ManagedProcess;
  let base: string;
  const output: string[] = [];

  beforeAll(async () => {
    database = await scratchDatabase('outbox_health');
    await migrateUp(database.url);
    proxy = await startTcpProxy(hostAndPort(database.url));
    const healthPort = await freePort();
    base = `http://127.0.0.1:${healthPort}`;
    publisher = startEntryPoint('outbox-publisher', 'apps/outbox-publisher/main.ts', {
      DATABASE_URL: throughProxy(database.url, proxy.port),
      OUTBOX_HEALTH_ADDRESS: `127.0.0.1:${healthPort}`,
      OUTBOX_POLL_INTERVAL_MS: '50',
      HEALTH_TIMEOUT_MS: '1000',
    }, output);
  });
  afterAll(async () => {
    await publisher?.stop(15_000);
    await proxy?.close();
    await database?.drop();
  });

  it('is ready while its loop runs and PostgreSQL answers; 503 naming PostgreSQL while it is unreachable; ready again after', async () => {
    const ready = await waitForHealth(`${base}/health/ready`, 200, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${output.slice(-30).join('\n')}`);
    });
    expect(ready.body).toMatchObject({ status: 'ok', service: 'outbox-publisher', draining: false, checks: { loop: { status: 'up' }, postgres: { status: 'up' } } });

    await proxy.cut();
    const down = await waitForHealth(`${base}/health/ready`, 503, 15_000);
    expect(down.body).toMatchObject({ status: 'unavailable', checks: { loop: { status: 'up' }, postgres: { status: 'down', error: expect.any(String) } } });
    expect(await getHealth(`${base}/health/live`)).toEqual({ status: 200, body: { status: 'ok', service: 'outbox-publisher' } });

    await proxy.restore();
    await waitForHealth(`${base}/health/ready`, 200, 30_000);
  });

  it('exits cleanly on SIGTERM', async () => {
    const exited = publisher.exited;
    process.kill(publisher.child.pid!, 'SIGTERM');
    expect(await exited).toBe(0);
    expect(output.join('\n')).toContain('outbox publisher stopped');
  });
});
