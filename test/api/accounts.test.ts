import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkInvariants, createLedger } from '../../ledger';
import { uniqueId } from '../support';
import { startTestApi, type TestApi } from './support';

describe('accounts API', () => {
  let api: TestApi;
  let service: string;
  beforeAll(async () => {
    api = await startTestApi({ API_BODY_LIMIT_BYTES: '2048' });
    service = `Bearer ${await api.token('operator-backend', 'service')}`;
  });
  afterAll(async () => {
    expect((await checkInvariants(api.pool)).violations).toEqual([]);
    await api.close();
  });

  const post = (payload: unknown, authorization = service, headers: Record<string, string> = {}) =>
    api.app.inject({ method: 'POST', url: '/v1/accounts', headers: { authorization, 'content-type': 'application/json', ...headers }, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) });
  const exists = async (id: string) => (await createLedger(api.pool).getAccount(id)) !== undefined;

  it('creates an account (201), answers a repeat with 200 and the same body, refuses another currency (409)', async () => {
    const id = uniqueId('player');
    const first = await post({ account_id: id, currency: 'EUR' });
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ account_id: id, currency: 'EUR' });

    const repeat = await post({ account_id: id, currency: 'EUR' });
    expect(repeat.statusCode).toBe(200);
    expect(repeat.body).toBe(first.body);

    const other = await post({ account_id: id, currency: 'USD' });
    expect(other.statusCode).toBe(409);
    expect(other.json()).toMatchObject({ code: 'ACCOUNT_EXISTS_WITH_DIFFERENT_CURRENCY' });
  });

  it('serves a zero balance for a new account, in minor units', async () => {
    const id = uniqueId('player');
    await post({ account_id: id, currency: 'JPY' });
    const res = await api.app.inject({ method: 'GET', url: `/v1/accounts/${id}/balance`, headers: { authorization: service } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ account_id: id, currency: 'JPY', available: 0, held: 0, posted: 0 });
  });

  it('lets a player act only on the account whose id is its subject', async () => {
    const own = uniqueId('player');
    const other = uniqueId('player');
    const player = `Bearer ${await api.token(own, 'player')}`;
    expect((await post({ account_id: own, currency: 'EUR' }, player)).statusCode).toBe(201);

    const refused = await post({ account_id: other, currency: 'EUR' }, player);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'FORBIDDEN' });
    expect(await exists(other)).toBe(false);

    await post({ account_id: other, currency: 'EUR' });
    const peek = await api.app.inject({ method: 'GET', url: `/v1/accounts/${other}/balance`, headers: { authorization: player } });
    expect(peek.statusCode).toBe(403);
  });

  it('answers 404 ACCOUNT_NOT_FOUND for an unknown account', async () => {
    const res = await api.app.inject({ method: 'GET', url: `/v1/accounts/${uniqueId('ghost')}/balance`, headers: { authorization: service } });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ code: 'ACCOUNT_NOT_FOUND' });
  });

  describe('bad input gets a precise 4xx and writes nothing', () => {
    const cases: [string, (id: string) => Promise<{ statusCode: number; json(): unknown }>, number, string][] = [
      ['malformed JSON', (id) => post(`{"account_id":"${id}","currency":"EUR"`), 400, 'MALFORMED_JSON'],
      ['empty JSON body', () => post(''), 400, 'MALFORMED_JSON'],
      ['wrong content type', (id) => post(`account_id=${id}&currency=EUR`, service, { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['text/plain', (id) => post(JSON.stringify({ account_id: id, currency: 'EUR' }), service, { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['oversized body', (id) => post({ account_id: id, currency: 'EUR', padding: 'x'.repeat(4096) }), 413, 'PAYLOAD_TOO_LARGE'],
      ['unknown field', (id) => post({ account_id: id, currency: 'EUR', overdraft: true }), 400, 'VALIDATION_FAILED'],
      ['unknown currency', (id) => post({ account_id: id, currency: 'XYZ' }), 422, 'UNKNOWN_CURRENCY'],
      ['lower-case currency', (id) => post({ account_id: id, currency: 'eur' }), 400, 'VALIDATION_FAILED'],
      ['missing currency', (id) => post({ account_id: id }), 400, 'VALIDATION_FAILED'],
      ['reserved id prefix', () => post({ account_id: 'system:fees:EUR', currency: 'EUR' }), 400, 'VALIDATION_FAILED'],
      ['id with spaces', () => post({ account_id: 'not an id', currency: 'EUR' }), 400, 'VALIDATION_FAILED'],
      ['array body', () => post([]), 400, 'VALIDATION_FAILED'],
    ];
    it.each(cases)('%s', async (_name, send, status, code) => {
      const id = uniqueId('bad');
      const res = await send(id);
      expect(res.statusCode).toBe(status);
      expect(res.json()).toMatchObject({ status, code });
      expect(await exists(id)).toBe(false);
    });
  });
});
