import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HealthController } from '../../apps/api/health/health.controller';
import { freePort } from '../../lib/wait';
import { startTestApi, type TestApi } from '../api/support';

describe('API liveness and readiness', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi({ HEALTH_TIMEOUT_MS: '1000' });
  });
  afterAll(() => api?.close());

  it('/health/live is 200 and /health/ready 200 with PostgreSQL and Temporal up; /health keeps its shape', async () => {
    const live = await api.app.inject({ method: 'GET', url: '/health/live' });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toEqual({ status: 'ok' });
    const ready = await api.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ status: 'ok', draining: false, checks: { postgres: { status: 'up' }, temporal: { status: 'up' } } });
    expect((await api.app.inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ status: 'ok', mode: expect.any(String), admission: expect.any(Object) });
  });

  it('is not ready while draining (the application closing), and says so; liveness still answers', async () => {
    api.app.get(HealthController).beforeApplicationShutdown();
    const ready = await api.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ status: 'unavailable', draining: true, checks: { postgres: { status: 'up' }, temporal: { status: 'up' } } });
    expect((await api.app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
    // Nest calls it when the application closes (main.ts on SIGTERM): the wiring, not only the method.
    const other = await startTestApi();
    const otherController = other.app.get(HealthController);
    const otherSpy = vi.spyOn(otherController, 'beforeApplicationShutdown');
    await other.close();
    expect(otherSpy).toHaveBeenCalledOnce();
  });

  it('is 503 naming PostgreSQL when the database is unreachable, while liveness stays 200', async () => {
    const url = new URL(api.pool.options.connectionString!);
    url.port = String(await freePort());
    const unreachable = await startTestApi({ DATABASE_URL: url.toString(), HEALTH_TIMEOUT_MS: '1000' });
    try {
      const ready = await unreachable.app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toMatchObject({ status: 'unavailable', draining: false, checks: { postgres: { status: 'down' }, temporal: { status: 'up' } } });
      expect((await unreachable.app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
    } finally {
      await unreachable.close();
    }
  });

  it('stays ready while Temporal is unreachable, reporting it: reads and webhooks still work without it', async () => {
    const unreachable = await startTestApi({ TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`, HEALTH_TIMEOUT_MS: '1000' });
    try {
      const ready = await unreachable.app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toMatchObject({ status: 'ok', draining: false, checks: { postgres: { status: 'up' }, temporal: { status: 'down' } } });
      // /health keeps saying both must answer.
      expect((await unreachable.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(503);
    } finally {
      await unreachable.close();
    }
  });
});
