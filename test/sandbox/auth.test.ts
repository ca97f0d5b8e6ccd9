import { spawn, spawnSync } from 'node:child_process';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { aggregatorAt, submitToAggregator } from '../../activities/aggregator-client';
import { repoRoot } from '../../lib/config';
import { freePort } from '../../lib/wait';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';
import { uniqueId } from '../support';
import { depositBody, payoutBody, startReceiver, startSandbox, type Receiver, type Sandbox } from '../support/sandbox';

const TOKEN = 'sandbox-api-token-for-tests-0123456789abcdef';

describe('sandbox aggregator with SANDBOX_API_TOKEN set', () => {
  let receiver: Receiver;
  let sandbox: Sandbox;
  const bearer = { authorization: `Bearer ${TOKEN}` };
  beforeAll(async () => {
    receiver = await startReceiver();
    sandbox = await startSandbox({ webhookUrl: receiver.url, apiToken: TOKEN });
  });
  afterAll(async () => {
    await sandbox?.close();
    await receiver?.close();
  });

  it('refuses every API and control call without the token (or with another) with 401, and does nothing', async () => {
    const created = await sandbox.call('POST', '/v1/payouts', payoutBody(), { 'idempotency-key': uniqueId('k'), ...bearer });
    expect(created.status).toBe(201);
    const { id, reference } = created.body;
    const calls: [string, string, unknown?][] = [
      ['POST', '/v1/payouts', payoutBody()],
      ['GET', `/v1/payouts/${id}`],
      ['GET', `/v1/payouts?reference=${reference}`],
      ['POST', '/v1/deposits', depositBody()],
      ['GET', `/v1/reports/settlements?since=${new Date(0).toISOString()}`],
      ['PUT', `/sandbox/scenarios/${reference}`, { scenario: 'return_after_settlement' }],
      ['POST', `/sandbox/payouts/${id}/resolve`, { outcome: 'fail' }],
      ['POST', `/sandbox/deposits/${id}/reverse`, {}],
      ['GET', `/sandbox/events?reference=${reference}`],
    ];
    for (const authorization of [undefined, 'Bearer wrong-token', `Basic ${TOKEN}`]) {
      for (const [method, path, body] of calls) {
        const res = await sandbox.call(method, path, body, { 'idempotency-key': uniqueId('k'), ...(authorization ? { authorization } : {}) });
        expect(res.status, `${method} ${path} with ${authorization}`).toBe(401);
        expect(res.body.error.code).toBe('unauthorized');
        expect(res.headers.get('www-authenticate')).toBe('Bearer');
      }
    }
    // Nothing happened to the payout, no second one was created.
    const payout = await sandbox.call('GET', `/v1/payouts/${id}`, undefined, bearer);
    expect(payout.status).toBe(200);
    expect(payout.body.status).not.toBe('failed');
    const scenario = await sandbox.call('GET', `/sandbox/scenarios/${reference}`, undefined, bearer);
    expect(scenario.status).toBe(404);
  });

  it("the platform's client sends the token, and a refused token is waited out (retryable), never a refusal of the payout", async () => {
    const reference = uniqueId('po_ref');
    const body = { amount: { minor_units: 100, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-0001' } };
    const wrong = await submitToAggregator(aggregatorAt(sandbox.baseUrl, 'not-the-token-0123456789abcdef'), 'payouts', reference, body).catch((err: unknown) => err);
    expect(wrong).toBeInstanceOf(ApplicationFailure);
    expect((wrong as ApplicationFailure).type).toBe('ProviderUnavailable');
    expect((wrong as ApplicationFailure).nonRetryable).toBe(false);
    const paid = (await submitToAggregator(aggregatorAt(sandbox.baseUrl, TOKEN), 'payouts', reference, body)) as { reference: string; status: string };
    expect(paid).toMatchObject({ reference, status: 'pending' });
  });

  it('answers the same calls with the token', async () => {
    expect((await sandbox.get('/health')).status).toBe(200);
    const created = await sandbox.call('POST', '/v1/payouts', payoutBody(), { 'idempotency-key': uniqueId('k'), ...bearer });
    expect(created.status).toBe(201);
    const { id, reference } = created.body;
    expect((await sandbox.call('GET', `/v1/payouts/${id}`, undefined, bearer)).status).toBe(200);
    expect((await sandbox.call('GET', `/v1/payouts?reference=${reference}`, undefined, bearer)).status).toBe(200);
    expect((await sandbox.call('PUT', `/sandbox/scenarios/${reference}`, { scenario: 'stay_pending' }, bearer)).status).toBe(200);
    expect((await sandbox.call('GET', `/sandbox/events?reference=${reference}`, undefined, bearer)).status).toBe(200);
    expect((await sandbox.call('GET', `/v1/reports/settlements?since=${new Date(0).toISOString()}`, undefined, bearer)).status).toBe(200);
  });

  it("the player's checkout page needs no token but the deposit's secret, and acts only on that deposit", async () => {
    const created = await sandbox.call('POST', '/v1/deposits', depositBody(), { 'idempotency-key': uniqueId('k'), ...bearer });
    expect(created.status).toBe(201);
    await sandbox.call('PUT', `/sandbox/scenarios/${created.body.reference}`, { scenario: 'stay_pending' }, bearer);
    const other = await sandbox.call('POST', '/v1/deposits', depositBody(), { 'idempotency-key': uniqueId('k'), ...bearer });
    // Held open too, so that only a checkout acting on it could make it succeed (not its own scripted callback).
    await sandbox.call('PUT', `/sandbox/scenarios/${other.body.reference}`, { scenario: 'stay_pending' }, bearer);
    const checkout = new URL(created.body.checkout_url);
    const secret = checkout.searchParams.get('secret')!;

    const page = await fetch(checkout);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Pay');
    expect((await fetch(new URL(checkout.pathname, checkout))).status).toBe(400);
    expect((await fetch(new URL(`${checkout.pathname}?secret=${'0'.repeat(32)}`, checkout))).status).toBe(404);
    // The deposit's secret does not open another deposit's checkout.
    expect((await sandbox.call('POST', `/sandbox/checkout/${other.body.id}`, { outcome: 'succeed', secret })).status).toBe(404);
    // The control endpoint stays closed to the browser.
    expect((await sandbox.call('POST', `/sandbox/deposits/${created.body.id}/resolve`, { outcome: 'succeed' })).status).toBe(401);

    const paid = await sandbox.call('POST', `/sandbox/checkout/${created.body.id}`, { outcome: 'succeed', secret });
    expect(paid.status).toBe(200);
    expect(paid.body).toMatchObject({ id: created.body.id, status: 'succeeded' });
    expect((await sandbox.call('GET', `/v1/deposits/${other.body.id}`, undefined, bearer)).body.status).not.toBe('succeeded');
  });
});

describe('the worker sends SANDBOX_API_TOKEN to a sandbox that requires it', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ SANDBOX_API_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('a payout settles and a deposit is created (submission and status lookups authenticated)', async () => {
    expect((await fetch(`${stack.sandboxUrl}/v1/payouts?reference=x`)).status).toBe(401);
    const accountId = await stack.fundedAccount(1_000);
    const payout = await stack.postPayout(payoutRequest(accountId, 300), uniqueId('key'));
    expect(payout.status).toBe(201);
    await stack.waitForStatus(payout.json.payout_id, ['SETTLED']);
    const deposit = await stack.postDeposit(depositRequest(accountId, 500), uniqueId('key'));
    expect(deposit.status).toBe(201);
    await stack.waitForDepositStatus(deposit.json.deposit_id, ['CREDITED']);
  });
});

describe('sandbox aggregator process', () => {
  const productionEnv = () => ({
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    AUTH_JWT_SECRET: 'p'.repeat(40),
    SANDBOX_WEBHOOK_SECRET: 's'.repeat(40),
    OUTBOX_WEBHOOK_SECRET: 'o'.repeat(40),
    DESTINATION_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`,
    // Every instance's secret is checked at start, the second sandbox's (sandbox-b) too.
    SANDBOX_B_WEBHOOK_SECRET: 'b'.repeat(40),
  });

  it('refuses to start in production without SANDBOX_API_TOKEN', async () => {
    const env = { ...productionEnv(), SANDBOX_PORT: String(await freePort()) };
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'apps/sandbox-aggregator/main.ts'], { cwd: repoRoot, env, encoding: 'utf8', timeout: 30_000 });
    expect(result.status).toBe(78);
    expect(result.stderr).toMatch(/SANDBOX_API_TOKEN: required in production/);
  });

  it('starts in production with it, on loopback only by default', async () => {
    const port = await freePort();
    const env = { ...productionEnv(), SANDBOX_PORT: String(port), SANDBOX_API_TOKEN: TOKEN, SANDBOX_DATABASE_URL: inject('databaseUrl') };
    const child = spawn(process.execPath, ['--import', 'tsx', 'apps/sandbox-aggregator/main.ts'], { cwd: repoRoot, env });
    try {
      const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString('utf8');
          const line = out.split('\n').find((l) => l.includes('sandbox aggregator ready'));
          if (line) resolve(JSON.parse(line));
        });
        child.on('exit', (code) => reject(new Error(`exited ${code}`)));
      });
      expect(ready.url).toBe(`http://127.0.0.1:${port}`);
      expect((await fetch(`http://127.0.0.1:${port}/v1/payouts?reference=x`)).status).toBe(401);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
