import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../lib/tokens';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe("per-account limits set by staff override the defaults for that account, audited", () => {
  let stack: SagaStack;
  let staff: string;
  beforeAll(async () => {
    stack = await startSagaStack();
    staff = `Bearer ${await signToken({ sub: 'erin', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const limits = async (accountId: string, method: 'GET' | 'PUT' = 'GET', body?: unknown, authorization = staff) => {
    const res = await fetch(`${stack.apiUrl}/v1/ops/accounts/${accountId}/limits`, { method, headers: { authorization, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, json: (await res.json()) as any };
  };
  const eur = (minor_units: number) => ({ minor_units, currency: 'EUR' });

  it('lists the defaults in the account currency; a lower payout cap and hourly count apply to that account only', async () => {
    const [own, other] = [await stack.fundedAccount(100_000), await stack.fundedAccount(100_000)];
    const before = await limits(own);
    expect(before.status).toBe(200);
    expect(before.json.limits.payout_max).toEqual({ value: eur(stack.config.PAYOUT_MAX_AMOUNT * 100), source: 'default' });
    expect(before.json.limits.payout_hourly_max_count).toEqual({ value: stack.config.PAYOUT_HOURLY_MAX_COUNT, source: 'default' });

    const set = await limits(own, 'PUT', { payout_max: eur(500), payout_hourly_max_count: 2, reason: 'responsible gambling: player asked for a cap' });
    expect(set.status).toBe(200);
    expect(set.json).toMatchObject({ limits: { payout_max: { value: eur(500), source: 'account' }, payout_hourly_max_count: { value: 2, source: 'account' }, deposit_max: { source: 'default' } }, changed_by: 'staff:erin' });

    const over = await stack.postPayout(payoutRequest(own, 600), uniqueId('key'));
    expect([over.status, over.json.code]).toEqual([422, 'LIMIT_EXCEEDED']);
    expect(over.json.detail).toMatch(/at most 5\.00 EUR/);
    expect((await stack.postPayout(payoutRequest(other, 600), uniqueId('key'))).status).toBe(201);
    expect((await stack.postPayout(payoutRequest(own, 400), uniqueId('key'))).status).toBe(201);
    expect((await stack.postPayout(payoutRequest(own, 400), uniqueId('key'))).status).toBe(201);
    const third = await stack.postPayout(payoutRequest(own, 400), uniqueId('key'));
    expect([third.status, third.json.code]).toEqual([422, 'VELOCITY_LIMIT_EXCEEDED']);
    expect((await stack.postPayout(payoutRequest(other, 400), uniqueId('key'))).status).toBe(201);

    // Back to the default (null) for the cap only; the count stays the account's.
    const reset = await limits(own, 'PUT', { payout_max: null, reason: 'cap lifted after review' });
    expect(reset.json.limits).toMatchObject({ payout_max: { source: 'default' }, payout_hourly_max_count: { value: 2, source: 'account' } });
    const { rows } = await stack.pool.query<{ actor: string; action: string; reason: string; outcome: string }>("SELECT actor, action, reason, outcome FROM staff_audit_log WHERE target = $1 ORDER BY id", [own]);
    expect(rows.map((r) => [r.actor, r.action, r.reason, r.outcome])).toEqual([
      ['staff:erin', 'account:limits', 'responsible gambling: player asked for a cap', 'applied'],
      ['staff:erin', 'account:limits', 'cap lifted after review', 'applied'],
    ]);
  });

  it('a higher deposit cap lets that account deposit more than the default, at the API and in the saga; others are refused writing nothing', async () => {
    const [vip, other] = [await stack.fundedAccount(0), await stack.fundedAccount(0)];
    const big = (stack.config.DEPOSIT_MAX_AMOUNT + 1) * 100;
    const refused = await stack.postDeposit(depositRequest(other, big), uniqueId('dep'));
    expect([refused.status, refused.json.code]).toEqual([422, 'LIMIT_EXCEEDED']);
    expect((await stack.pool.query('SELECT 1 FROM idempotency_records WHERE account_id = $1', [other])).rowCount).toBe(0);

    expect((await limits(vip, 'PUT', { deposit_max: eur(big * 2), deposit_daily_max: eur(big * 2), reason: 'VIP, source of funds verified' })).status).toBe(200);
    const accepted = await stack.postDeposit(depositRequest(vip, big), uniqueId('dep'));
    expect(accepted.status).toBe(201);
  });

  it('refuses amounts in another currency, an empty change, a reasonless one, unknown accounts and non-staff, writing nothing', async () => {
    const accountId = await stack.fundedAccount(1_000);
    expect((await limits(accountId, 'PUT', { payout_max: { minor_units: 500, currency: 'USD' }, reason: 'wrong currency' })).json.code).toBe('CURRENCY_MISMATCH');
    expect((await limits(accountId, 'PUT', { reason: 'nothing named' })).json.code).toBe('VALIDATION_FAILED');
    expect((await limits(accountId, 'PUT', { payout_max: eur(500) })).json.code).toBe('VALIDATION_FAILED');
    expect((await limits(accountId, 'PUT', { payout_max: eur(0), reason: 'zero' })).json.code).toBe('VALIDATION_FAILED');
    // A daily total below the single-payout limit (here the default's) makes no sense: refused, nothing written.
    const inconsistent = await limits(accountId, 'PUT', { payout_daily_max: eur(500), reason: 'daily under the single cap' });
    expect([inconsistent.status, inconsistent.json.code, inconsistent.json.detail]).toEqual([400, 'VALIDATION_FAILED', expect.stringMatching(/payout_max .* would exceed payout_daily_max/)]);
    expect((await limits(uniqueId('nobody'), 'PUT', { payout_max: eur(500), reason: 'no such account' })).status).toBe(404);
    expect((await limits(accountId, 'PUT', { payout_max: eur(500), reason: 'not staff' }, stack.service)).status).toBe(403);
    expect((await limits(accountId)).json.limits.payout_max.source).toBe('default');
    expect((await stack.pool.query('SELECT 1 FROM account_limits WHERE account_id = $1', [accountId])).rowCount).toBe(0);
  });
});
