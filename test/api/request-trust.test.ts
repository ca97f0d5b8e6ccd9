import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_JWT_SECRET } from '../../lib/config';
import { signToken } from '../../lib/tokens';
import { uniqueId } from '../support';
import { startTestApi, type TestApi } from './support';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A real HTTP request whose headers go on the wire as given: an array value is sent as repeated header lines. */
function rawRequest(url: string, method: string, headers: Record<string, string | string[]>, body?: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; json: any }>((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, json: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('headers a client controls are not trusted as given', () => {
  let api: TestApi;
  let baseUrl: string;
  const logLines: Record<string, unknown>[] = [];
  beforeAll(async () => {
    api = await startTestApi({}, { write: (line: string) => void logLines.push(JSON.parse(line)) });
    await api.app.listen({ port: 0, host: '127.0.0.1' });
    baseUrl = `http://127.0.0.1:${(api.app.getHttpServer().address() as AddressInfo).port}`;
  });
  afterAll(() => api?.close());

  describe('Idempotency-Key', () => {
    it.each([
      ['/v1/payouts', (accountId: string) => ({ account_id: accountId, amount: { minor_units: 100, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-0001' } })],
      ['/v1/deposits', (accountId: string) => ({ account_id: accountId, amount: { minor_units: 100, currency: 'EUR' } })],
    ])('two headers on %s (Node would merge them into "k1, k2") are refused with 400 IDEMPOTENCY_KEY_DUPLICATED, writing nothing', async (path, body) => {
      const service = `Bearer ${await api.token('operator-backend', 'service')}`;
      const accountId = uniqueId('player');
      const opened = await api.app.inject({ method: 'POST', url: '/v1/accounts', headers: { authorization: service }, payload: { account_id: accountId, currency: 'EUR' } });
      expect(opened.statusCode).toBe(201);

      const res = await rawRequest(`${baseUrl}${path}`, 'POST', { authorization: service, 'content-type': 'application/json', 'idempotency-key': ['k1', 'k2'] }, JSON.stringify(body(accountId)));
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json).toMatchObject({ code: 'IDEMPOTENCY_KEY_DUPLICATED' });
      const records = await api.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE account_id = $1', [accountId]);
      expect(records.rows[0].n).toBe(0);
      const sagas = await api.pool.query(`SELECT (SELECT count(*) FROM payouts WHERE account_id = $1) + (SELECT count(*) FROM deposits WHERE account_id = $1) AS n`, [accountId]);
      expect(Number(sagas.rows[0].n)).toBe(0);
    });

    it('one header whose value has a comma is still one key (only a repeated header is refused)', async () => {
      const service = `Bearer ${await api.token('operator-backend', 'service')}`;
      // Refused later for the unknown account, i.e. the key itself was accepted.
      const res = await rawRequest(`${baseUrl}/v1/deposits`, 'POST', { authorization: service, 'content-type': 'application/json', 'idempotency-key': 'k1, k2' }, JSON.stringify({ account_id: uniqueId('ghost'), amount: { minor_units: 100, currency: 'EUR' } }));
      expect(res.json.code).not.toMatch(/^IDEMPOTENCY_KEY/);
    });
  });

  describe('bearer-token lifetime (AUTH_MAX_TOKEN_LIFETIME_SECONDS, default 86400)', () => {
    const now = () => Math.floor(Date.now() / 1000);
    const me = (token: string) => api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
    const token = (claims: { iat?: number; exp: number }) => {
      const jwt = new SignJWT({ role: 'player' }).setProtectedHeader({ alg: 'HS256' }).setSubject('p').setExpirationTime(claims.exp);
      if (claims.iat !== undefined) jwt.setIssuedAt(claims.iat);
      return jwt.sign(new TextEncoder().encode(DEV_JWT_SECRET));
    };

    it('accepts a lifetime of exactly the maximum, refuses one second more', async () => {
      const t = now();
      expect((await me(await token({ iat: t, exp: t + 86_400 }))).statusCode).toBe(200);
      const tooLong = await me(await token({ iat: t, exp: t + 86_401 }));
      expect(tooLong.statusCode).toBe(401);
      expect(tooLong.json()).toMatchObject({ code: 'UNAUTHENTICATED', detail: expect.stringMatching(/lifetime/) });
    });

    it('refuses a ten-year token', async () => {
      const t = now();
      expect((await me(await token({ iat: t, exp: t + 10 * 365 * 86_400 }))).statusCode).toBe(401);
    });

    it('refuses a token without iat (its lifetime cannot be bounded)', async () => {
      const res = await me(await token({ exp: now() + 3_600 }));
      expect(res.statusCode).toBe(401);
      expect(res.json().detail).toMatch(/iat/);
    });

    it('refuses a token issued in the future, forgiving a little clock skew', async () => {
      const t = now();
      const future = await me(await token({ iat: t + 300, exp: t + 3_600 }));
      expect(future.statusCode).toBe(401);
      expect(future.json().detail).toMatch(/iat/);
      expect((await me(await token({ iat: t + 10, exp: t + 3_600 }))).statusCode).toBe(200);
    });

    it('follows the configured maximum', async () => {
      const strict = await startTestApi({ AUTH_MAX_TOKEN_LIFETIME_SECONDS: '600' });
      try {
        const call = async (expiresIn: string) => (await strict.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${await signToken({ sub: 'p', role: 'player' }, DEV_JWT_SECRET, expiresIn)}` } })).statusCode;
        expect(await call('10m')).toBe(200);
        expect(await call('1h')).toBe(401);
      } finally {
        await strict.close();
      }
    });
  });

  describe('request id', () => {
    it('is generated by the server; a well-formed client X-Request-Id is echoed apart and logged as clientRequestId', async () => {
      const res = await rawRequest(`${baseUrl}/v1/nowhere`, 'GET', { 'x-request-id': 'req-123' });
      expect(res.status).toBe(404);
      const serverId = res.headers['x-request-id'] as string;
      expect(serverId).toMatch(UUID);
      expect(res.json.request_id).toBe(serverId);
      expect(res.headers['x-client-request-id']).toBe('req-123');
      const line = logLines.find((l) => l.reqId === serverId && l.msg === 'request');
      expect(line).toMatchObject({ reqId: serverId, clientRequestId: 'req-123', status: 404 });
    });

    it("a client cannot take another request's id", async () => {
      const first = await rawRequest(`${baseUrl}/health`, 'GET', {});
      const victim = first.headers['x-request-id'] as string;
      const second = await rawRequest(`${baseUrl}/v1/nowhere`, 'GET', { 'x-request-id': victim });
      expect(second.headers['x-request-id']).toMatch(UUID);
      expect(second.headers['x-request-id']).not.toBe(victim);
      expect(second.json.request_id).not.toBe(victim);
      expect(logLines.filter((l) => l.reqId === victim && l.msg === 'request')).toHaveLength(1);
    });

    it.each([
      ['log-field forgery', 'x" "reqId":"forged'],
      ['spaces and braces', 'a b {c}'],
      ['too long', 'r'.repeat(65)],
    ])('a malformed client id (%s) is neither used, echoed nor logged', async (_name, value) => {
      const res = await rawRequest(`${baseUrl}/v1/nowhere`, 'GET', { 'x-request-id': value });
      const serverId = res.headers['x-request-id'] as string;
      expect(serverId).toMatch(UUID);
      expect(res.headers['x-client-request-id']).toBeUndefined();
      const line = logLines.find((l) => l.reqId === serverId && l.msg === 'request');
      expect(line).toBeDefined();
      expect(line).not.toHaveProperty('clientRequestId');
      expect(JSON.stringify(logLines)).not.toContain(value);
    });
  });
});
