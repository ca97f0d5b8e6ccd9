import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTE_DOCS, routesOf } from '../../apps/api/app';
import { DEV_JWT_SECRET } from '../../lib/config';
import { signToken } from '../../lib/tokens';
import { freePort } from '../../lib/wait';
import { startTestApi, type TestApi } from './support';

describe('API skeleton on real PostgreSQL and Temporal', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi();
  });
  afterAll(() => api?.close());

  it('GET /health is 200 with both dependencies up', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/health' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'ok', checks: { postgres: { status: 'up' }, temporal: { status: 'up' } } });
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('GET /metrics serves Prometheus text with request latency and process metrics', async () => {
    await api.app.inject({ method: 'GET', url: '/health' });
    const res = await api.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/health"[^}]*\} \d+/);
    expect(res.body).toContain('process_cpu_user_seconds_total');
  });

  it('serves the OpenAPI document and Swagger UI at /docs', async () => {
    const json = await api.app.inject({ method: 'GET', url: '/docs/json' });
    expect(json.statusCode).toBe(200);
    const doc = json.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/health', '/metrics', '/v1/me']));
    const ui = await api.app.inject({ method: 'GET', url: '/docs/' });
    expect(ui.statusCode).toBe(200);
    expect(ui.headers['content-type']).toContain('text/html');
  });

  it('answers unknown routes with a problem+json carrying a stable code and the (server\'s) request id', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/v1/nowhere', headers: { 'x-request-id': 'req-123' } });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.json()).toMatchObject({ status: 404, code: 'NOT_FOUND', instance: '/v1/nowhere', request_id: res.headers['x-request-id'] });
    expect(res.headers['x-client-request-id']).toBe('req-123');
  });

  describe('JWT auth guard', () => {
    const me = (authorization?: string) => api.app.inject({ method: 'GET', url: '/v1/me', headers: authorization ? { authorization } : {} });

    it('accepts a valid HS256 token and exposes its principal', async () => {
      const res = await me(`Bearer ${await api.token('player-1', 'staff')}`);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ sub: 'player-1', role: 'staff' });
    });

    it.each([
      ['no header', undefined],
      ['not a bearer', 'Basic abc'],
      ['garbage', 'Bearer not.a.jwt'],
    ])('refuses %s with 401 UNAUTHENTICATED', async (_name, header) => {
      const res = await me(header);
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
    });

    it('refuses a token signed with another secret', async () => {
      const forged = await signToken({ sub: 'p', role: 'staff' }, 'another-secret-that-is-long-enough-to-sign');
      expect((await me(`Bearer ${forged}`)).statusCode).toBe(401);
    });

    it('refuses an expired token', async () => {
      const expired = await new SignJWT({ role: 'player' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('p')
        .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
        .sign(new TextEncoder().encode(DEV_JWT_SECRET));
      const res = await me(`Bearer ${expired}`);
      expect(res.statusCode).toBe(401);
      expect(res.json().detail).toMatch(/expired/);
    });

    it('refuses a token without an expiry (a leaked one would never expire)', async () => {
      const forever = await new SignJWT({ role: 'staff' }).setProtectedHeader({ alg: 'HS256' }).setSubject('p').sign(new TextEncoder().encode(DEV_JWT_SECRET));
      const res = await me(`Bearer ${forever}`);
      expect(res.statusCode).toBe(401);
      expect(res.json().detail).toMatch(/exp/);
    });

    it('refuses an unsigned (alg none) token and an unknown role', async () => {
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      const payload = Buffer.from(JSON.stringify({ sub: 'p', role: 'staff' })).toString('base64url');
      expect((await me(`Bearer ${header}.${payload}.`)).statusCode).toBe(401);
      const badRole = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject('p').setExpirationTime('1h').sign(new TextEncoder().encode(DEV_JWT_SECRET));
      expect((await me(`Bearer ${badRole}`)).statusCode).toBe(401);
    });
  });
});

describe('GET /health with a dependency down', () => {
  it('is 503 when Temporal does not answer, naming it', async () => {
    const api = await startTestApi({ TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`, HEALTH_TIMEOUT_MS: '1500' });
    try {
      const res = await api.app.inject({ method: 'GET', url: '/health' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'unavailable', checks: { postgres: { status: 'up' }, temporal: { status: 'down' } } });
    } finally {
      await api.close();
    }
  });

  it('is 503 when PostgreSQL does not answer, naming it', async () => {
    const api = await startTestApi({ DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${await freePort()}/nothing`, HEALTH_TIMEOUT_MS: '1500' });
    try {
      const res = await api.app.inject({ method: 'GET', url: '/health' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'unavailable', checks: { postgres: { status: 'down' }, temporal: { status: 'up' } } });
    } finally {
      await api.close();
    }
  });
});

describe('OpenAPI document', () => {
  it('documents every served route, and serves every documented one', async () => {
    const api = await startTestApi();
    try {
      const served = routesOf(api.app)
        .filter((r) => !r.url.startsWith('/docs'))
        .map((r) => `${r.method} ${r.url}`)
        .sort();
      const documented = ROUTE_DOCS.map((d) => `${d.method.toUpperCase()} ${d.path}`).sort();
      expect(served).toEqual(documented);
      const doc = (await api.app.inject({ method: 'GET', url: '/docs/json' })).json();
      for (const d of ROUTE_DOCS) expect(doc.paths[d.path.replace(/:([A-Za-z_]+)/g, '{$1}')]?.[d.method], `${d.method} ${d.path}`).toBeDefined();
    } finally {
      await api.close();
    }
  });
});

describe('token issuer and audience', () => {
  it('when configured, a token must carry them', async () => {
    const api = await startTestApi({ AUTH_JWT_ISSUER: 'https://auth.operator.example', AUTH_JWT_AUDIENCE: 'payouts' });
    try {
      const me = (token: string) => api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
      expect((await me(await signToken({ sub: 'p', role: 'player' }, DEV_JWT_SECRET))).statusCode).toBe(401);
      expect((await me(await signToken({ sub: 'p', role: 'player' }, DEV_JWT_SECRET, '1h', { issuer: 'https://auth.operator.example', audience: 'other' }))).statusCode).toBe(401);
      expect((await me(await signToken({ sub: 'p', role: 'player' }, DEV_JWT_SECRET, '1h', { issuer: 'https://auth.operator.example', audience: 'payouts' }))).statusCode).toBe(200);
    } finally {
      await api.close();
    }
  });
});

