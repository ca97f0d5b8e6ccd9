import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiApp } from '../../apps/api/app';
import { createLogger } from '../../lib/logger';
import { createTemporalClient } from '../../lib/temporal-client';
import { freePort } from '../../lib/wait';
import { signWebhook } from '../../lib/webhook-signature';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from './stack';

describe('a webhook that cannot be signalled', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ PAYOUT_POLL_INITIAL_MS: '60000', PAYOUT_POLL_MAX_MS: '60000' });
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

    const event = { id: uniqueId('evt'), type: 'payout.settled', created_at: new Date().toISOString(), data: { object: { id: 'po_provider_1', reference: payoutId, status: 'settled' } } };
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
