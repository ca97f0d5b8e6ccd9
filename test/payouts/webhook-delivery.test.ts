import { signToken } from '../../lib/tokens';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiApp } from '../../apps/api/app';
import { createLogger } from '../../lib/logger';
import { createTemporalClient } from '../../lib/temporal-client';
import { freePort } from '../../lib/wait';
import { signWebhook } from '../../lib/webhook-signature';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('a webhook that cannot be signalled', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ PROVIDER_POLL_INITIAL_MS: '60000', PROVIDER_POLL_MAX_MS: '60000' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('is stored and answered 503 so the provider retries; the retry signals once; later copies change nothing', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 600, 'sandbox:stay_pending'), uniqueId('key'));
    const payoutId: string = res.json.payout_id;
    await stack.waitForStatus(payoutId, ['SUBMITTED']);

    // The provider settles it (its record says so), and its callback is what cannot be signalled at first.
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle', send_webhook: false }) });
    const event = { id: uniqueId('evt'), type: 'payout.settled', created_at: new Date().toISOString(), data: { object: { id: provider.id, reference: payoutId, status: 'settled' } } };
    const raw = JSON.stringify(event);
    const deliver = (url: string) =>
      fetch(`${url}/v1/webhooks/sandbox`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-signature': signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, raw, Date.now() / 1000) },
        body: raw,
      });

    // The same API, but its Temporal is unreachable.
    const deadTemporal = Connection.lazy({ address: `127.0.0.1:${await freePort()}`, connectTimeout: 500 });
    const cutOff = await createApiApp({ config: stack.config, pool: stack.pool, temporal: createTemporalClient(deadTemporal, 'default'), logger: createLogger('api-cut-off', 'silent') });
    await cutOff.listen({ port: 0, host: '127.0.0.1' });
    try {
      const refused = await deliver(`http://127.0.0.1:${(cutOff.getHttpServer().address() as { port: number }).port}`);
      expect(refused.status).toBe(503);
      expect(await refused.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    } finally {
      await cutOff.close();
      await deadTemporal.close().catch(() => undefined);
    }
    const stored = await stack.pool.query('SELECT signalled_at FROM webhook_events WHERE event_id = $1', [event.id]);
    expect(stored.rows).toEqual([{ signalled_at: null }]);
    expect((await stack.getPayout(payoutId)).status).toBe('SUBMITTED');

    const retried = await deliver(stack.apiUrl);
    expect(retried.status).toBe(200);
    expect(await retried.json()).toEqual({ received: true, duplicate: true, delivered: 'signalled' });
    await stack.waitForStatus(payoutId, ['SETTLED']);

    const again = await deliver(stack.apiUrl);
    expect(await again.json()).toEqual({ received: true, duplicate: true, delivered: 'already_signalled' });
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
  });
});

describe('returns and odd webhooks', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ PAYOUT_RETURN_WINDOW_MS: '300' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const signed = (event: unknown) => {
    const raw = JSON.stringify(event);
    return fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-signature': signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, raw, Date.now() / 1000) },
      body: raw,
    });
  };

  it('a return after the saga closed is refunded once by a return saga, and GET shows RETURNED', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 600), uniqueId('key'));
    const payoutId: string = res.json.payout_id;
    await stack.waitForStatus(payoutId, ['SETTLED']);
    await stack.temporal.workflow.getHandle(payoutId).result(); // the return window has passed: the saga is closed
    // The provider's record says returned (its own callback is the webhook below).
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'return', send_webhook: false }) });

    const returned = (id: string) => ({ id, type: 'payout.returned', created_at: new Date().toISOString(), data: { object: { id: provider.id, reference: payoutId, status: 'returned', return_reason: 'account_closed' } } });
    const first = await signed(returned(uniqueId('evt')));
    expect(await first.json()).toMatchObject({ delivered: 'return_saga_started' });
    await stack.temporal.workflow.getHandle(`${payoutId}:return`).result();
    // The provider reports it again under another event id: no second refund.
    expect(await (await signed(returned(uniqueId('evt')))).json()).toMatchObject({ delivered: 'return_saga_started' });
    await stack.temporal.workflow.getHandle(`${payoutId}:return`).result();

    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post', 'refund']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, posted: 1_000 });
    const view = await stack.getPayout(payoutId);
    expect(view.status).toBe('RETURNED');
    expect(view.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'RETURNED', note: 'returned_after_close' });
  });

  it('a signed body that is not a provider event gets 400 and is not stored', async () => {
    const res = await signed({ hello: 'world' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('cancelling a payout whose saga has ended is 409, not a server error', async () => {
    const accountId = await stack.fundedAccount(100);
    const declined = await stack.postPayout(payoutRequest(accountId, 500), uniqueId('key'));
    expect(declined.status).toBe(422);
    const staff = `Bearer ${await signToken({ sub: 'dave', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
    const res = await fetch(`${stack.apiUrl}/v1/ops/payouts/${declined.json.payout_id}/cancel`, { method: 'POST', headers: { authorization: staff, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'player asked support' }) });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ code: 'PAYOUT_NOT_CANCELLABLE' });
  });

  it('with Temporal unreachable, a payout request fails fast with 503 (retry with the same key) and nothing moves', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const deadTemporal = Connection.lazy({ address: `127.0.0.1:${await freePort()}`, connectTimeout: 500 });
    const cutOff = await createApiApp({ config: { ...stack.config, SAGA_SYNC_DEADLINE_MS: 1_000 }, pool: stack.pool, temporal: createTemporalClient(deadTemporal, 'default'), logger: createLogger('api-cut-off', 'silent') });
    await cutOff.listen({ port: 0, host: '127.0.0.1' });
    try {
      const started = Date.now();
      const res = await fetch(`http://127.0.0.1:${(cutOff.getHttpServer().address() as { port: number }).port}/v1/payouts`, {
        method: 'POST',
        headers: { authorization: stack.service, 'content-type': 'application/json', 'idempotency-key': uniqueId('key') },
        body: JSON.stringify(payoutRequest(accountId, 100)),
      });
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      await cutOff.close();
      await deadTemporal.close().catch(() => undefined);
    }
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0 });
  });
});
