import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../lib/wait';
import { signWebhook } from '../../lib/webhook-signature';
import { startTestWorker, uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

/** A claim that cannot be checked is not acted on: the saga asks again until the provider answers. */
describe('a webhook claim while the provider cannot be asked', () => {
  let stack: SagaStack;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let proxy: http.Server;
  let providerDown = false;
  let statusAsks = 0;

  beforeAll(async () => {
    // Regular polls far apart: what settles the payout here is the re-asked claim.
    stack = await startSagaStack({ PROVIDER_POLL_INITIAL_MS: '60000', PROVIDER_POLL_MAX_MS: '60000' }, { worker: false });
    // The worker reaches the provider through a proxy that can cut it off (503 to everything).
    proxy = http.createServer(async (req, res) => {
      if (req.method === 'GET' && req.url?.startsWith('/v1/payouts?reference=')) statusAsks++;
      if (providerDown) return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"unavailable"}}');
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const upstream = await fetch(`${stack.sandboxUrl}${req.url}`, { method: req.method, headers: req.headers as Record<string, string>, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined });
      res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(await upstream.text());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    worker = await startTestWorker(stack.pool, stack.config.TEMPORAL_TASK_QUEUE, { ...stack.config, SANDBOX_URL: `http://127.0.0.1:${(proxy.address() as { port: number }).port}` });
  });
  afterAll(async () => {
    await worker?.stop();
    proxy?.close();
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('moves no money until the provider can confirm it, then settles once', async () => {
    const accountId = await stack.fundedAccount(5_000);
    const res = await stack.postPayout(payoutRequest(accountId, 1_200, 'sandbox:stay_pending'), uniqueId('key'));
    const payoutId = res.json.payout_id as string;
    await stack.waitForStatus(payoutId, ['SUBMITTED']);
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    // The provider settles it, and its status endpoint then goes down before the callback is checked.
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle', send_webhook: false }) });
    providerDown = true;
    const asksBefore = statusAsks;

    const body = JSON.stringify({ id: uniqueId('evt'), type: 'payout.settled', created_at: new Date().toISOString(), data: { object: { id: provider.id, reference: payoutId, status: 'settled' } } });
    const hook = await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-signature': signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, body, Date.now() / 1000) },
      body,
    });
    expect(((await hook.json()) as { delivered: string }).delivered).toBe('signalled');

    await sleep(4_000);
    expect(statusAsks - asksBefore).toBeGreaterThanOrEqual(3); // asked, and asked again
    expect((await stack.getPayout(payoutId)).status).toBe('SUBMITTED');
    expect(await stack.transfersOf(payoutId)).toEqual([{ kind: 'hold', amount: 1_200 }]);

    providerDown = false;
    await stack.waitForStatus(payoutId, ['SETTLED'], 20_000);
    expect(await stack.transfersOf(payoutId)).toEqual([
      { kind: 'hold', amount: 1_200 },
      { kind: 'post', amount: 1_200 },
    ]);
    const { rows } = await stack.pool.query('SELECT kind FROM provider_incidents WHERE reference = $1', [payoutId]);
    expect(rows).toEqual([]); // confirmed in the end: nothing for staff
  });
});
