import fs from 'node:fs';
import Fastify from 'fastify';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPayoutClient, type PayoutClient } from '../../clients/typescript/src';
import { checkResponsesAgainstDocs, type ContractViolation } from '../../apps/api/docs/response-contract';
import { ROUTE_DOCS } from '../../apps/api/app';
import { CLIENT_SCHEMA_PATH, OPENAPI_PATH, clientSchemaText } from '../../scripts/openapi';
import { uniqueId } from '../support';
import { takeContractViolations } from '../support/response-contract';
import { startSagaStack, type SagaStack } from '../support/saga-stack';

describe('the committed OpenAPI document and the typed client generated from it', () => {
  let stack: SagaStack;
  let service: PayoutClient;
  beforeAll(async () => {
    stack = await startSagaStack();
    service = createPayoutClient({ baseUrl: stack.apiUrl, token: stack.service.replace(/^Bearer /, '') });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('openapi.json is exactly what /docs/json serves, and the client schema is what openapi-typescript makes of it', async () => {
    const served = await (await fetch(`${stack.apiUrl}/docs/json`)).json();
    const committed = fs.readFileSync(OPENAPI_PATH, 'utf8');
    expect(JSON.parse(committed), 'openapi.json is out of date: run npm run openapi').toEqual(served);
    expect(fs.readFileSync(CLIENT_SCHEMA_PATH, 'utf8'), 'clients/typescript/src/schema.d.ts is out of date: run npm run openapi').toBe(await clientSchemaText(committed));
  });

  it('every route documents a schema for each of its success responses', () => {
    const undocumented = ROUTE_DOCS.flatMap((route) =>
      Object.entries(route.responses)
        .filter(([status, response]) => Number(status) < 400 && !response.schema)
        .map(([status]) => `${route.method} ${route.path} ${status}`),
    );
    expect(undocumented).toEqual([]);
  });

  it('moves money through the generated client: typed bodies in, typed answers and problems out, each checked against its schema', async () => {
    const accountId = await stack.fundedAccount(5_000);
    const player = createPayoutClient({ baseUrl: stack.apiUrl, token: async () => (await stack.playerAuth(accountId)).replace(/^Bearer /, '') });

    const me = await player.GET('/v1/me');
    expect(me.data).toMatchObject({ sub: accountId, role: 'player' });

    const key = uniqueId('client');
    const body = { account_id: accountId, amount: { minor_units: 1_200, currency: 'EUR' }, destination: { method: 'ewallet' as const, wallet_id: 'wallet-0001' } };
    const created = await service.POST('/v1/payouts', { params: { header: { 'Idempotency-Key': key } }, body });
    expect(created.error).toBeUndefined();
    expect([201, 202]).toContain(created.response.status);
    const payoutId = created.data!.payout_id;

    const replay = await service.POST('/v1/payouts', { params: { header: { 'Idempotency-Key': key } }, body });
    expect(replay.data!.payout_id).toBe(payoutId);
    expect(replay.response.headers.get('idempotent-replayed')).toBe('true');

    await stack.waitForStatus(payoutId, ['SETTLED']);
    const read = await player.GET('/v1/payouts/{payoutId}', { params: { path: { payoutId } } });
    expect(read.data).toMatchObject({ payout_id: payoutId, status: 'SETTLED', account_id: accountId });

    // A problem comes back as the typed error, with its stable code; nothing is written.
    const refused = await service.POST('/v1/payouts', { params: { header: { 'Idempotency-Key': uniqueId('client') } }, body: { ...body, amount: { minor_units: 10_000_000, currency: 'EUR' } } });
    expect(refused.data).toBeUndefined();
    expect(refused.response.status).toBe(422);
    expect(refused.error).toMatchObject({ code: 'INSUFFICIENT_FUNDS', status: 422 });

    const other = await player.GET('/v1/accounts/{accountId}/balance', { params: { path: { accountId: uniqueId('someone-else') } } });
    expect(other.error?.code).toBe('FORBIDDEN');

    const balance = await player.GET('/v1/accounts/{accountId}/balance', { params: { path: { accountId } } });
    expect(balance.data).toMatchObject({ account_id: accountId });
    // Every answer above went through the schema check (test/support/response-contract.ts).
    expect(takeContractViolations()).toEqual([]);
  });

  it('the response check reports a body that drifts from its schema, and a status the route does not document', async () => {
    const app = Fastify();
    const seen: ContractViolation[] = [];
    checkResponsesAgainstDocs(app, [
      { method: 'get', path: '/drift/:id', summary: '', tag: 't', auth: 'public', responses: { 200: { description: 'ok', schema: z.object({ id: z.string(), amount_minor: z.number().int() }) } } },
    ], (violation) => seen.push(violation));
    app.get('/drift/:id', async (request, reply) => {
      const { id } = request.params as { id: string };
      if (id === 'created') return reply.status(201).send({ id, amount_minor: 1 });
      return id === 'good' ? { id, amount_minor: 1 } : { id, amount_minor: '1.00' };
    });
    await app.inject({ method: 'GET', url: '/drift/good' });
    expect(seen).toEqual([]);
    await app.inject({ method: 'GET', url: '/drift/bad' });
    await app.inject({ method: 'GET', url: '/drift/created' });
    await app.close();
    expect(seen).toEqual([
      expect.objectContaining({ route: '/drift/:id', status: 200, problem: expect.stringContaining('amount_minor') }),
      expect.objectContaining({ route: '/drift/:id', status: 201, problem: expect.stringContaining('not documented') }),
    ]);
  });
});
