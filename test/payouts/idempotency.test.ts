import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdempotencyStore, requestFingerprint, resourceIdFor } from '../../apps/api/sagas/idempotency';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { expectOneAnswer, storm, type StormKind } from './duplicate-storm';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

const payouts: StormKind = {
  prefix: 'po',
  post: (stack, body, key) => stack.postPayout(body, key),
  transferKinds: async (stack, payoutId) => (await stack.transfersOf(payoutId)).map((t) => t.kind),
};

/** Enough rounds and concurrency that a race in claiming the key shows every run, not by luck. */
const STORM_ROUNDS = 30;
const STORM_SIZE = 60;

describe('payout idempotency and concurrency', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack();
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const workflowCount = async (payoutId: string) => {
    try {
      await stack.temporal.workflow.getHandle(payoutId).describe();
      return 1;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return 0;
      throw err;
    }
  };

  it('the same key 50 times at once: one saga, one hold, 50 identical answers', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const key = uniqueId('double-tap');
    const body = payoutRequest(accountId, 1_000);
    const answers = await Promise.all(Array.from({ length: 50 }, () => stack.postPayout(body, key)));

    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([201]));
    expect(new Set(answers.map((a) => a.text)).size).toBe(1);
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true')).toHaveLength(49);
    const payoutId = answers[0]!.json.payout_id;
    expect(payoutId).toBe(resourceIdFor('po', accountId, key));

    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 9_000, held: 0 });

    // Later repeats, after the saga moved on, still get the first answer.
    const later = await stack.postPayout(body, key);
    expect(later.status).toBe(201);
    expect(later.text).toBe(answers[0]!.text);
    expect(later.headers.get('idempotent-replayed')).toBe('true');
  });

  it('200 rounds of 20 concurrent claims of one key in PostgreSQL: exactly one claim wins, the others see it in progress', async () => {
    // The race behind item 4 without HTTP and Temporal in between, so it shows in (nearly) every run.
    const store = new IdempotencyStore(stack.pool);
    const fingerprint = 'f'.repeat(64);
    for (let round = 0; round < 200; round++) {
      const accountId = uniqueId('claimer');
      const key = uniqueId('claim');
      const resourceId = resourceIdFor('po', accountId, key);
      const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => store.claim(accountId, key, 'payout', fingerprint, resourceId)));
      const states = outcomes.map((o) => (o.status === 'fulfilled' ? o.value.state : `error: ${(o.reason as Error).message}`));
      expect(states.filter((state) => state === 'absent'), `round ${round}: ${states.join(', ')}`).toHaveLength(1);
      expect(states.filter((state) => state === 'in_progress'), `round ${round}`).toHaveLength(19);
    }
  });

  it(`${STORM_ROUNDS} rounds of ${STORM_SIZE} identical requests at once: each round one answer, one record, one saga, one hold`, async () => {
    const settled: Promise<unknown>[] = [];
    const payoutIds: string[] = [];
    for (let round = 0; round < STORM_ROUNDS; round++) {
      const accountId = await stack.fundedAccount(10_000);
      const key = uniqueId(`storm-${round}`);
      const body = payoutRequest(accountId, 1_000);
      const answers = await storm(stack, payouts, key, Array.from({ length: STORM_SIZE }, () => body));
      const payoutId = await expectOneAnswer(stack, payouts, accountId, key, answers, 201);
      expect(answers[0]!.json).toMatchObject({ status: 'HELD' });
      expect((await payouts.transferKinds(stack, payoutId)).filter((k) => k === 'hold'), `round ${round}: one hold`).toHaveLength(1);
      expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 9_000 });
      payoutIds.push(payoutId);
      settled.push(stack.waitForStatus(payoutId, ['SETTLED'], 60_000));
    }
    await Promise.all(settled);
    for (const payoutId of payoutIds) expect(await payouts.transferKinds(stack, payoutId)).toEqual(['hold', 'post']);
  });

  it(`${STORM_ROUNDS / 2} rounds of ${STORM_SIZE} requests with one key and two bodies: one body wins, the other gets 422 IDEMPOTENCY_MISMATCH`, async () => {
    for (let round = 0; round < STORM_ROUNDS / 2; round++) {
      const accountId = await stack.fundedAccount(10_000);
      const key = uniqueId(`mixed-storm-${round}`);
      const bodies = Array.from({ length: STORM_SIZE }, (_, i) => payoutRequest(accountId, i % 2 === 0 ? 1_000 : 1_001));
      const answers = await storm(stack, payouts, key, bodies);
      const winners = answers.filter((a) => a.status === 201);
      const losers = answers.filter((a) => a.status !== 201);
      expect(winners.length, `round ${round}: one body's requests all succeed`).toBe(STORM_SIZE / 2);
      for (const loser of losers) {
        expect([loser.status, loser.json?.code]).toEqual([422, 'IDEMPOTENCY_MISMATCH']);
        expect(loser.headers.get('idempotent-replayed')).toBeNull();
      }
      const winningAmount = JSON.parse(winners[0]!.text).amount.minor_units as number;
      // Every request with the winning body won; every request with the other body lost.
      answers.forEach((a, i) => expect(a.status).toBe(bodies[i]!.amount.minor_units === winningAmount ? 201 : 422));
      const payoutId = await expectOneAnswer(stack, payouts, accountId, key, winners, 201);
      expect((await stack.transfersOf(payoutId)).filter((t) => t.kind === 'hold')).toEqual([{ kind: 'hold', amount: winningAmount }]);
      await stack.waitForStatus(payoutId, ['SETTLED'], 60_000);
    }
  });

  it('the same key with a different amount: 422 IDEMPOTENCY_MISMATCH, nothing changes', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const key = uniqueId('key');
    const first = await stack.postPayout(payoutRequest(accountId, 1_000), key);
    expect(first.status).toBe(201);
    const other = await stack.postPayout(payoutRequest(accountId, 1_001), key);
    expect(other.status).toBe(422);
    expect(other.json).toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });
    const otherDestination = await stack.postPayout(payoutRequest(accountId, 1_000, 'wallet-9999'), key);
    expect(otherDestination.json).toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });

    await stack.waitForStatus(first.json.payout_id, ['SETTLED']);
    expect((await stack.transfersOf(first.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 9_000 });
  });

  it('two accounts using one key get two independent payouts', async () => {
    const [a, b] = [await stack.fundedAccount(5_000), await stack.fundedAccount(5_000)];
    const key = uniqueId('shared-key');
    const [ra, rb] = await Promise.all([stack.postPayout(payoutRequest(a, 1_000), key), stack.postPayout(payoutRequest(b, 2_000), key)]);
    expect([ra.status, rb.status]).toEqual([201, 201]);
    expect(ra.json.payout_id).not.toBe(rb.json.payout_id);
    expect(rb.headers.get('idempotent-replayed')).toBeNull();
    await Promise.all([stack.waitForStatus(ra.json.payout_id, ['SETTLED']), stack.waitForStatus(rb.json.payout_id, ['SETTLED'])]);
    expect(await stack.ledger.getBalance(a)).toMatchObject({ posted: 4_000 });
    expect(await stack.ledger.getBalance(b)).toMatchObject({ posted: 3_000 });
  });

  it('parallel payouts exceeding the balance: exactly the affordable ones are held, the rest 422 INSUFFICIENT_FUNDS', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => stack.postPayout(payoutRequest(accountId, 300), uniqueId(`race-${i}`))));
    const held = answers.filter((a) => a.status === 201);
    const refused = answers.filter((a) => a.status === 422);
    expect(held).toHaveLength(3);
    expect(refused).toHaveLength(7);
    for (const r of refused) expect(r.json).toMatchObject({ code: 'INSUFFICIENT_FUNDS', payout_status: 'DECLINED' });
    await recordHistory(stack.temporal, 'payout-declined-insufficient-funds', refused[0]!.json.payout_id);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 100 });
    await Promise.all(held.map((h) => stack.waitForStatus(h.json.payout_id, ['SETTLED'])));
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 100, held: 0, posted: 100 });
  });

  it('a player acts only on its own account and sees only its own payouts', async () => {
    const mine = await stack.fundedAccount(1_000);
    const theirs = await stack.fundedAccount(1_000);
    const auth = await stack.playerAuth(mine);
    const refused = await stack.postPayout(payoutRequest(theirs, 100), uniqueId('key'), auth);
    expect(refused.status).toBe(403);
    const own = await stack.postPayout(payoutRequest(mine, 100), uniqueId('key'), auth);
    expect(own.status).toBe(201);
    const theirPayout = await stack.postPayout(payoutRequest(theirs, 100), uniqueId('key'));
    const seen = await stack.getPayout(own.json.payout_id, auth);
    expect(seen).toMatchObject({ payout_id: own.json.payout_id, account_id: mine });
    const peek = await stack.getPayout(theirPayout.json.payout_id, auth);
    expect(peek).toMatchObject({ status: 404, code: 'PAYOUT_NOT_FOUND' });
  });

  describe('bad input gets its 4xx and writes nothing (no key claimed, no saga)', () => {
    const iban = (value: string) => ({ method: 'bank_transfer', iban: value });
    const cases: [string, (accountId: string) => unknown, string | undefined, number, string][] = [
      ['missing Idempotency-Key', (id) => payoutRequest(id, 100), undefined, 400, 'IDEMPOTENCY_KEY_MISSING'],
      ['Idempotency-Key too long', (id) => payoutRequest(id, 100), 'k'.repeat(256), 400, 'IDEMPOTENCY_KEY_INVALID'],
      ['malformed JSON', (id) => `{"account_id":"${id}",`, 'key', 400, 'MALFORMED_JSON'],
      ['zero amount', (id) => payoutRequest(id, 0), 'key', 400, 'VALIDATION_FAILED'],
      ['negative amount', (id) => payoutRequest(id, -5), 'key', 400, 'VALIDATION_FAILED'],
      ['fractional amount', (id) => payoutRequest(id, 10.5), 'key', 400, 'VALIDATION_FAILED'],
      ['amount beyond a safe integer', (id) => payoutRequest(id, 2 ** 53), 'key', 400, 'VALIDATION_FAILED'],
      ['amount as a string', (id) => ({ ...payoutRequest(id, 1), amount: { minor_units: '100', currency: 'EUR' } }), 'key', 400, 'VALIDATION_FAILED'],
      ['unknown currency', (id) => payoutRequest(id, 100, 'wallet-0001', 'XYZ'), 'key', 422, 'UNKNOWN_CURRENCY'],
      ['currency not matching the account', (id) => payoutRequest(id, 100, 'wallet-0001', 'USD'), 'key', 422, 'CURRENCY_MISMATCH'],
      ['unknown field', (id) => ({ ...payoutRequest(id, 100), priority: 'high' }), 'key', 400, 'VALIDATION_FAILED'],
      ['IBAN with a bad checksum', (id) => ({ ...payoutRequest(id, 100), destination: iban('DE89370400440532013001') }), 'key', 422, 'INVALID_DESTINATION'],
      ['unknown destination method', (id) => ({ ...payoutRequest(id, 100), destination: { method: 'cash', to: 'x' } }), 'key', 400, 'VALIDATION_FAILED'],
    ];
    it.each(cases)('%s', async (_name, makeBody, keyPart, status, code) => {
      const accountId = await stack.fundedAccount(1_000);
      const key = keyPart === undefined ? undefined : keyPart.length > 255 ? keyPart : uniqueId(keyPart);
      const res = await stack.postPayout(makeBody(accountId), key);
      expect(res.status).toBe(status);
      expect(res.json).toMatchObject({ code });
      const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE account_id = $1', [accountId]);
      expect(records.rows[0].n).toBe(0);
      if (key) expect(await workflowCount(resourceIdFor('po', accountId, key))).toBe(0);
      expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0 });
    });

    it('unknown account: 404 ACCOUNT_NOT_FOUND', async () => {
      const res = await stack.postPayout(payoutRequest(uniqueId('ghost'), 100), uniqueId('key'));
      expect(res.status).toBe(404);
      expect(res.json).toMatchObject({ code: 'ACCOUNT_NOT_FOUND' });
    });
  });
});

describe('a key whose saga Temporal no longer keeps', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('is answered from the read model, never by starting (and submitting) again', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const key = uniqueId('old-key');
    const body = payoutRequest(accountId, 500);
    const payoutId = resourceIdFor('po', accountId, key);
    // As after retention: the key was claimed and the saga ran (its read model row exists), but its first
    // answer was never stored and Temporal has dropped its history.
    await stack.pool.query(
      `INSERT INTO idempotency_records (account_id, idempotency_key, operation, fingerprint, resource_id, created_at) VALUES ($1, $2, 'payout', $3, $4, now() - interval '60 days')`,
      [accountId, key, requestFingerprint('payout', body), payoutId],
    );
    await stack.pool.query(
      `INSERT INTO payouts (payout_id, account_id, amount_minor, currency, destination_method, destination_last4, provider, status, version, requested_at)
       VALUES ($1, $2, 500, 'EUR', 'ewallet', '0001', 'sandbox', 'SETTLED', 9, now() - interval '60 days')`,
      [payoutId, accountId],
    );

    const res = await stack.postPayout(body, key);
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ payout_id: payoutId, status: 'HELD' });
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    await expect(stack.temporal.workflow.getHandle(payoutId).describe()).rejects.toThrow(WorkflowNotFoundError);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0 });
    // GET answers from the read model too.
    expect(await stack.getPayout(payoutId)).toMatchObject({ status: 'SETTLED', payout_id: payoutId });
  });
});
