import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifyWebhookSignature } from '../../lib/webhook-signature';
import { freePort } from '../../lib/wait';
import { payoutBody, sleep, startReceiver, startSandbox, wallet, WEBHOOK_SECRET, type Receiver, type Sandbox } from '../support/sandbox';

const waitOpts = { timeout: 3_000, interval: 10 };

describe('sandbox webhook delivery', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setUp(options: Parameters<typeof startSandbox>[0] | ((receiver: Receiver) => Parameters<typeof startSandbox>[0])) {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sandbox: Sandbox = await startSandbox(typeof options === 'function' ? options(receiver) : options);
    cleanups.push(() => sandbox.close());
    return { receiver, sandbox };
  }

  it('retries on 500 with backoff, then succeeds, keeping the same event id and bytes', async () => {
    const { receiver, sandbox } = await setUp((r) => ({ webhookUrl: r.url }));
    receiver.respondWith((_hook, nth) => (nth <= 2 ? 500 : 200));
    const body = payoutBody();
    await sandbox.submitPayout(body);

    await vi.waitFor(async () => expect((await sandbox.events(body.reference))[0]?.state).toBe('delivered'), waitOpts);
    const hooks = receiver.forReference(body.reference);
    expect(hooks.map((h) => h.status)).toEqual([500, 500, 200]);
    expect(new Set(hooks.map((h) => h.event.id)).size).toBe(1);
    expect(new Set(hooks.map((h) => h.rawBody)).size).toBe(1);
    for (const hook of hooks) expect(verifyWebhookSignature(WEBHOOK_SECRET, hook.headers['x-signature'], hook.rawBody).ok).toBe(true);

    const [delivery] = await sandbox.events(body.reference);
    expect(delivery).toMatchObject({ event_id: hooks[0]!.event.id, type: 'payout.settled', reference: body.reference, state: 'delivered' });
    expect(delivery.attempts.map((a: { status_code: number }) => a.status_code)).toEqual([500, 500, 200]);
    // Exponential backoff: 20 ms, then 40 ms (test policy).
    const times = delivery.attempts.map((a: { at: string }) => Date.parse(a.at));
    expect(times[1] - times[0]).toBeGreaterThanOrEqual(15);
    expect(times[2] - times[1]).toBeGreaterThanOrEqual(35);
  });

  it('gives up after the configured number of attempts', async () => {
    const { receiver, sandbox } = await setUp((r) => ({ webhookUrl: r.url, webhookRetry: { attempts: 3, baseDelayMs: 10 } }));
    receiver.respondWith(() => 503);
    const body = payoutBody();
    await sandbox.submitPayout(body);
    await vi.waitFor(async () => expect((await sandbox.events(body.reference))[0]?.state).toBe('exhausted'), waitOpts);
    await sleep(100);
    expect(receiver.forReference(body.reference)).toHaveLength(3);
    expect((await sandbox.events(body.reference))[0].attempts).toHaveLength(3);
  });

  it('retries when the receiver is unreachable, recording the network error', async () => {
    const port = await freePort();
    const { sandbox } = await setUp({ webhookUrl: `http://127.0.0.1:${port}/hooks`, webhookRetry: { attempts: 2, baseDelayMs: 10 } });
    const body = payoutBody();
    await sandbox.submitPayout(body);
    await vi.waitFor(async () => expect((await sandbox.events(body.reference))[0]?.state).toBe('exhausted'), waitOpts);
    const [delivery] = await sandbox.events(body.reference);
    expect(delivery.attempts).toHaveLength(2);
    expect(delivery.attempts[0].status_code).toBeUndefined();
    expect(delivery.attempts[0].error).toMatch(/ECONNREFUSED/);
  });

  it('a receiver that never answers counts as a failed attempt after the timeout', async () => {
    let calls = 0;
    const silent = http.createServer(() => {
      calls += 1; // never answers
    });
    await new Promise<void>((resolve) => silent.listen({ port: 0, host: '127.0.0.1' }, resolve));
    cleanups.push(async () => {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    });
    const { port } = silent.address() as AddressInfo;
    const sandbox = await startSandbox({ webhookUrl: `http://127.0.0.1:${port}/hooks`, webhookRetry: { attempts: 2, baseDelayMs: 10, timeoutMs: 50 } });
    cleanups.push(() => sandbox.close());
    const body = payoutBody();
    await sandbox.submitPayout(body);
    await vi.waitFor(async () => expect((await sandbox.events(body.reference))[0]?.state).toBe('exhausted'), waitOpts);
    const [delivery] = await sandbox.events(body.reference);
    expect(delivery.attempts.map((a: { error?: string }) => a.error)).toEqual(['no answer within 50 ms', 'no answer within 50 ms']);
    expect(calls).toBe(2);
  });

  it('close() cancels pending outcomes and deliveries: nothing is sent afterwards', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sandbox = await startSandbox({ webhookUrl: receiver.url, callbackDelayMs: 100 });
    const body = payoutBody();
    await sandbox.submitPayout(body);
    await sandbox.close();
    await sleep(200);
    expect(receiver.received).toHaveLength(0);
  });

  it('close() releases a held-back slow response instead of hanging', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sandbox = await startSandbox({ webhookUrl: receiver.url });
    const pending = sandbox.submitPayout(payoutBody({ destination: wallet('sandbox:slow:60000') }));
    await sleep(50);
    const started = Date.now();
    await sandbox.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((await pending).status).toBe(201);
  });
});
