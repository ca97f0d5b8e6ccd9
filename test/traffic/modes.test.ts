import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateUp } from '../../lib/migrate';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';
import { scratchDatabase, uniqueId } from '../support';
import { bearer, countBy, secondApi, send, sendSignedWebhook } from './support';

/**
 * The degradation mode is one row for the whole platform, so these tests run on a database of their own:
 * switching it must not pause the other suites' payouts.
 */
describe('degradation modes switched by staff at run time, across two API instances', () => {
  let database: Awaited<ReturnType<typeof scratchDatabase>>;
  let stack: SagaStack;
  let other: { url: string; app: NestFastifyApplication };
  let staff: string;

  beforeAll(async () => {
    database = await scratchDatabase('modes');
    await migrateUp(database.url);
    // A reversal window, so a payout is still in flight (held, not yet submitted) when the mode changes.
    stack = await startSagaStack({ DATABASE_URL: database.url, PAYOUT_SUBMIT_DELAY_MS: '2500' });
    other = await secondApi(stack);
    staff = await bearer('night-shift', 'staff', stack.config);
  });
  afterAll(async () => {
    await other?.app.close();
    await stack?.close();
    await database?.drop();
  });

  async function switchTo(mode: string, reason: string) {
    const answer = await send(`${stack.apiUrl}/v1/ops/mode`, 'PUT', staff, { mode, reason });
    expect([answer.status, answer.json.mode]).toEqual([200, mode]);
    return performance.now();
  }

  /** Retries `attempt` on the other instance until it gives `status`; the time it took after `since`. */
  async function untilOnOther(since: number, attempt: () => Promise<{ status: number }>, status: number): Promise<number> {
    for (let tries = 0; tries < 40; tries++) {
      if ((await attempt()).status === status) return performance.now() - since;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`the other instance never answered ${status}`);
  }

  it('only staff switch modes, with a reason, to a known mode', async () => {
    const player = await bearer(uniqueId('player'), 'player', stack.config);
    expect((await send(`${stack.apiUrl}/v1/ops/mode`, 'PUT', player, { mode: 'read-only', reason: 'not mine to say' })).status).toBe(403);
    expect((await send(`${stack.apiUrl}/v1/ops/mode`, 'PUT', staff, { mode: 'off', reason: 'typo' })).code).toBe('VALIDATION_FAILED');
    expect((await send(`${stack.apiUrl}/v1/ops/mode`, 'PUT', staff, { mode: 'read-only' })).code).toBe('VALIDATION_FAILED');
    expect((await send(`${stack.apiUrl}/v1/ops/mode`, 'GET', staff)).json.mode).toBe('normal');
  });

  it('no-new-payouts: refused within a second everywhere, nothing written; in-flight sagas and deposits go on; audited; back to normal restores service', async () => {
    const accountId = await stack.fundedAccount(50_000);
    const inFlight = await stack.postPayout(payoutRequest(accountId, 1_000), uniqueId('before'));
    expect([inFlight.status, inFlight.json.status]).toEqual([201, 'HELD']);

    const switchedAt = await switchTo('no-new-payouts', 'provider maintenance window');
    // A new key each time: a key answered 201 before the switch would replay its answer.
    const newPayout = (key = uniqueId('paused')) => send(`${other.url}/v1/payouts`, 'POST', stack.service, payoutRequest(accountId, 1_000), key);
    expect(await untilOnOther(switchedAt, newPayout, 503)).toBeLessThan(1_000);
    const pausedKey = uniqueId('paused');
    const refused = await newPayout(pausedKey);
    expect([refused.status, refused.code, refused.retryAfter]).toEqual([503, 'PAYOUTS_PAUSED', '30']);
    const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE idempotency_key = $1', [pausedKey]);
    expect(records.rows[0].n).toBe(0);

    // Deposits are still taken, on either instance; the payout held before the switch is paid.
    const deposit = await send(`${other.url}/v1/deposits`, 'POST', stack.service, depositRequest(accountId, 700), uniqueId('deposit'));
    expect(deposit.status).toBe(201);
    await stack.waitForStatus(inFlight.json.payout_id, ['SETTLED']);
    await stack.waitForDepositStatus(deposit.json.deposit_id, ['CREDITED']);

    const health = await send(`${other.url}/health`, 'GET', undefined);
    expect(health.json.mode).toBe('no-new-payouts');
    const metrics = await (await fetch(`${other.url}/metrics`)).text();
    expect(metrics).toMatch(/^platform_mode\{mode="no-new-payouts",service="api"\} 1$/m);
    expect(metrics).toMatch(/^admission_requests_total\{operation="payout",outcome="paused",service="api"\} [1-9]/m);

    const audit = await stack.pool.query("SELECT actor, reason, outcome, detail FROM staff_audit_log WHERE action = 'platform:mode' ORDER BY id DESC LIMIT 1");
    expect(audit.rows[0]).toEqual({ actor: 'staff:night-shift', reason: 'provider maintenance window', outcome: 'applied', detail: 'normal → no-new-payouts' });

    const restoredAt = await switchTo('normal', 'maintenance over');
    expect(await untilOnOther(restoredAt, () => newPayout(pausedKey), 201)).toBeLessThan(1_000); // the refused key, retried
    await stack.assertLedgerClean();
  });

  it('read-only: every change refused (payouts, deposits, cancels, staff actions) while reads and provider webhooks go on', async () => {
    const accountId = await stack.fundedAccount(50_000);
    const held = await stack.postPayout(payoutRequest(accountId, 1_000), uniqueId('held'));
    expect(held.status).toBe(201);
    const switchedAt = await switchTo('read-only', 'ledger migration');
    const newDeposit = () => send(`${other.url}/v1/deposits`, 'POST', stack.service, depositRequest(accountId, 500), uniqueId('ro-deposit'));
    expect(await untilOnOther(switchedAt, newDeposit, 503)).toBeLessThan(1_000);

    const answers = await Promise.all([
      send(`${other.url}/v1/payouts`, 'POST', stack.service, payoutRequest(accountId, 1_000), uniqueId('ro-payout')),
      newDeposit(),
      send(`${other.url}/v1/payouts/${held.json.payout_id}/cancel`, 'POST', stack.service, {}),
      send(`${other.url}/v1/ops/accounts/${accountId}/freeze`, 'POST', staff, { reason: 'should not apply' }),
    ]);
    expect(countBy(answers, (a) => `${a.status} ${a.code} ${a.retryAfter}`)).toEqual({ '503 READ_ONLY 30': 4 });
    expect((await send(`${other.url}/v1/payouts/${held.json.payout_id}`, 'GET', stack.service)).status).toBe(200);
    expect((await sendSignedWebhook(other.url, stack.config, uniqueId('evt'))).status).toBe(200);
    // The saga in flight finishes (its provider's webhook is taken), though nothing new may start.
    await stack.waitForStatus(held.json.payout_id, ['SETTLED']);

    await switchTo('normal', 'migration done');
    await untilOnOther(performance.now(), newDeposit, 201);
    await stack.assertLedgerClean();
  });

  it('webhooks per provider: over its per-minute limit a delivery is 429 with Retry-After (the provider redelivers), counted across instances', async () => {
    const limited = await secondApi(stack, { RATE_LIMIT_WEBHOOK_PER_MINUTE: 6 });
    try {
      // Callbacks still due from the tests above land first (the sandbox calls back within ~50 ms).
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await stack.pool.query("DELETE FROM rate_limits WHERE key = 'webhook:sandbox'");
      const answers = [];
      for (let i = 0; i < 9; i++) answers.push(await sendSignedWebhook(limited.url, stack.config, uniqueId('evt')));
      expect(countBy(answers, (a) => String(a.status))).toEqual({ '200': 6, '429': 3 });
      const refused = answers.filter((a) => a.status === 429);
      for (const a of refused) {
        expect(a.code).toBe('RATE_LIMITED');
        expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
        expect(Number(a.retryAfter)).toBeLessThanOrEqual(60);
      }
    } finally {
      await limited.app.close();
      await stack.pool.query("DELETE FROM rate_limits WHERE key = 'webhook:sandbox'");
    }
  });
});
