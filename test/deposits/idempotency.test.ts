import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { uniqueId } from '../support';
import { expectOneAnswer, storm, type StormKind } from '../payouts/duplicate-storm';
import { depositRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

const deposits: StormKind = {
  prefix: 'dp',
  post: (stack, body, key) => stack.postDeposit(body, key),
  transferKinds: async (stack, depositId) => (await stack.depositTransfersOf(depositId)).map((t) => t.kind),
};

/** Deposits share the payouts' claim (IdempotentStart): the same storm, so a race there shows here too. */
const STORM_ROUNDS = 20;
const STORM_SIZE = 60;

describe('deposit idempotency, access and input validation', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack();
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const workflowCount = async (depositId: string) => {
    try {
      await stack.temporal.workflow.getHandle(depositId).describe();
      return 1;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return 0;
      throw err;
    }
  };

  it('the same key 20 times at once: one deposit, one credit, 20 identical answers', async () => {
    const accountId = await stack.fundedAccount(0);
    const key = uniqueId('double-tap');
    const body = depositRequest(accountId, 1_500);
    const answers = await Promise.all(Array.from({ length: 20 }, () => stack.postDeposit(body, key)));

    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([201]));
    expect(new Set(answers.map((a) => a.text)).size).toBe(1);
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true')).toHaveLength(19);
    const depositId = answers[0]!.json.deposit_id;
    expect(depositId).toBe(resourceIdFor('dp', accountId, key));

    await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect((await stack.depositTransfersOf(depositId)).map((t) => t.idempotency_key)).toEqual([`${depositId}:credit`]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_500, posted: 1_500 });
    const provider = await fetch(`${stack.sandboxUrl}/v1/deposits?reference=${depositId}`);
    expect(provider.status).toBe(200);

    // Later repeats, after the saga has ended, still get the first answer.
    const later = await stack.postDeposit(body, key);
    expect([later.status, later.text, later.headers.get('idempotent-replayed')]).toEqual([201, answers[0]!.text, 'true']);
    expect(await stack.depositTransfersOf(depositId)).toHaveLength(1);
  });

  it(`${STORM_ROUNDS} rounds of ${STORM_SIZE} identical requests at once: each round one answer, one record, one saga, one credit`, async () => {
    const credited: { accountId: string; depositId: string }[] = [];
    for (let round = 0; round < STORM_ROUNDS; round++) {
      const accountId = await stack.fundedAccount(0);
      const key = uniqueId(`storm-${round}`);
      const body = depositRequest(accountId, 1_500);
      const answers = await storm(stack, deposits, key, Array.from({ length: STORM_SIZE }, () => body));
      credited.push({ accountId, depositId: await expectOneAnswer(stack, deposits, accountId, key, answers, 201) });
    }
    for (const { accountId, depositId } of credited) {
      await stack.waitForDepositStatus(depositId, ['CREDITED'], 60_000);
      expect(await deposits.transferKinds(stack, depositId)).toEqual(['transfer']);
      expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_500, posted: 1_500 });
    }
  });

  it(`${STORM_ROUNDS / 2} rounds of ${STORM_SIZE} requests with one key and two bodies: one body wins, the other gets 422 IDEMPOTENCY_MISMATCH`, async () => {
    for (let round = 0; round < STORM_ROUNDS / 2; round++) {
      const accountId = await stack.fundedAccount(0);
      const key = uniqueId(`mixed-storm-${round}`);
      const bodies = Array.from({ length: STORM_SIZE }, (_, i) => depositRequest(accountId, i % 2 === 0 ? 1_000 : 1_001));
      const answers = await storm(stack, deposits, key, bodies);
      const winners = answers.filter((a) => a.status === 201);
      expect(winners.length, `round ${round}: one body's requests all succeed`).toBe(STORM_SIZE / 2);
      const winningAmount = JSON.parse(winners[0]!.text).amount.minor_units as number;
      answers.forEach((a, i) => {
        if (bodies[i]!.amount.minor_units === winningAmount) expect(a.status).toBe(201);
        else expect([a.status, a.json?.code, a.headers.get('idempotent-replayed')]).toEqual([422, 'IDEMPOTENCY_MISMATCH', null]);
      });
      const depositId = await expectOneAnswer(stack, deposits, accountId, key, winners, 201);
      await stack.waitForDepositStatus(depositId, ['CREDITED'], 60_000);
      expect((await stack.depositTransfersOf(depositId)).map((t) => t.amount)).toEqual([winningAmount]);
    }
  });

  it('the same key with a different amount: 422 IDEMPOTENCY_MISMATCH, nothing changes', async () => {
    const accountId = await stack.fundedAccount(0);
    const key = uniqueId('key');
    const first = await stack.postDeposit(depositRequest(accountId, 1_000), key);
    expect(first.status).toBe(201);
    const other = await stack.postDeposit(depositRequest(accountId, 1_001), key);
    expect(other.status).toBe(422);
    expect(other.json).toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });

    await stack.waitForDepositStatus(first.json.deposit_id, ['CREDITED']);
    expect((await stack.depositTransfersOf(first.json.deposit_id)).map((t) => t.amount)).toEqual([1_000]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 1_000 });
    const again = await stack.postDeposit(depositRequest(accountId, 1_001), key);
    expect(again.json).toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });
  });

  it('a mismatch sent while the first request is still in flight is refused too', async () => {
    const accountId = await stack.fundedAccount(0);
    const key = uniqueId('key');
    const [first, other] = await Promise.all([stack.postDeposit(depositRequest(accountId, 300), key), stack.postDeposit(depositRequest(accountId, 301), key)]);
    const statuses = [first.status, other.status].sort();
    expect(statuses).toEqual([201, 422]);
    const winner = first.status === 201 ? first : other;
    await stack.waitForDepositStatus(winner.json.deposit_id, ['CREDITED']);
    expect(await stack.depositTransfersOf(winner.json.deposit_id)).toHaveLength(1);
  });

  it('two accounts using one key get two independent deposits', async () => {
    const [a, b] = [await stack.fundedAccount(0), await stack.fundedAccount(0)];
    const key = uniqueId('shared-key');
    const [ra, rb] = await Promise.all([stack.postDeposit(depositRequest(a, 1_000), key), stack.postDeposit(depositRequest(b, 2_000), key)]);
    expect([ra.status, rb.status]).toEqual([201, 201]);
    expect(ra.json.deposit_id).not.toBe(rb.json.deposit_id);
    expect(rb.headers.get('idempotent-replayed')).toBeNull();
    await Promise.all([stack.waitForDepositStatus(ra.json.deposit_id, ['CREDITED']), stack.waitForDepositStatus(rb.json.deposit_id, ['CREDITED'])]);
    expect(await stack.ledger.getBalance(a)).toMatchObject({ posted: 1_000 });
    expect(await stack.ledger.getBalance(b)).toMatchObject({ posted: 2_000 });
  });

  it('a player deposits only into its own account and sees only its own deposits', async () => {
    const mine = await stack.fundedAccount(0);
    const theirs = await stack.fundedAccount(0);
    const auth = await stack.playerAuth(mine);
    const refusedKey = uniqueId('key');
    const refused = await stack.postDeposit(depositRequest(theirs, 100), refusedKey, auth);
    expect(refused.status).toBe(403);
    expect(await workflowCount(resourceIdFor('dp', theirs, refusedKey))).toBe(0);

    const own = await stack.postDeposit(depositRequest(mine, 100), uniqueId('key'), auth);
    expect(own.status).toBe(201);
    const theirDeposit = await stack.postDeposit(depositRequest(theirs, 100), uniqueId('key'));
    expect(await stack.getDeposit(own.json.deposit_id, auth)).toMatchObject({ deposit_id: own.json.deposit_id, account_id: mine });
    expect(await stack.getDeposit(theirDeposit.json.deposit_id, auth)).toMatchObject({ status: 404, code: 'DEPOSIT_NOT_FOUND' });
    await Promise.all([stack.waitForDepositStatus(own.json.deposit_id, ['CREDITED']), stack.waitForDepositStatus(theirDeposit.json.deposit_id, ['CREDITED'])]);
  });

  it('GET: a malformed id is 400, an unknown one 404', async () => {
    expect(await stack.getDeposit('po_123')).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    expect(await stack.getDeposit(`dp_${'0'.repeat(32)}`)).toMatchObject({ status: 404, code: 'DEPOSIT_NOT_FOUND' });
  });

  describe('bad input gets its 4xx and writes nothing (no key claimed, no saga, no read model row, no money)', () => {
    const cases: [string, (accountId: string) => unknown, string | undefined, number, string][] = [
      ['missing Idempotency-Key', (id) => depositRequest(id, 100), undefined, 400, 'IDEMPOTENCY_KEY_MISSING'],
      ['Idempotency-Key too long', (id) => depositRequest(id, 100), 'k'.repeat(256), 400, 'IDEMPOTENCY_KEY_INVALID'],
      ['malformed JSON', (id) => `{"account_id":"${id}",`, 'key', 400, 'MALFORMED_JSON'],
      ['zero amount', (id) => depositRequest(id, 0), 'key', 400, 'VALIDATION_FAILED'],
      ['negative amount', (id) => depositRequest(id, -5), 'key', 400, 'VALIDATION_FAILED'],
      ['fractional amount', (id) => depositRequest(id, 10.5), 'key', 400, 'VALIDATION_FAILED'],
      ['amount beyond a safe integer', (id) => depositRequest(id, 2 ** 53), 'key', 400, 'VALIDATION_FAILED'],
      ['amount as a string', (id) => ({ account_id: id, amount: { minor_units: '100', currency: 'EUR' } }), 'key', 400, 'VALIDATION_FAILED'],
      ['missing amount', (id) => ({ account_id: id }), 'key', 400, 'VALIDATION_FAILED'],
      ['unknown currency', (id) => depositRequest(id, 100, 'XYZ'), 'key', 422, 'UNKNOWN_CURRENCY'],
      ['currency not matching the account', (id) => depositRequest(id, 100, 'USD'), 'key', 422, 'CURRENCY_MISMATCH'],
      ['unknown field', (id) => ({ ...depositRequest(id, 100), sandbox_scenario: 'fail' }), 'key', 400, 'VALIDATION_FAILED'],
    ];
    it.each(cases)('%s', async (_name, makeBody, keyPart, status, code) => {
      const accountId = await stack.fundedAccount(1_000);
      const key = keyPart === undefined ? undefined : keyPart.length > 255 ? keyPart : uniqueId(keyPart);
      const res = await stack.postDeposit(makeBody(accountId), key);
      expect(res.status).toBe(status);
      expect(res.json).toMatchObject({ code });
      await expectNothingWritten(accountId, key);
    });

    it('wrong content type: 415', async () => {
      const accountId = await stack.fundedAccount(1_000);
      const key = uniqueId('key');
      const res = await fetch(`${stack.apiUrl}/v1/deposits`, {
        method: 'POST',
        headers: { authorization: stack.service, 'content-type': 'text/plain', 'idempotency-key': key },
        body: JSON.stringify(depositRequest(accountId, 100)),
      });
      expect(res.status).toBe(415);
      await expectNothingWritten(accountId, key);
    });

    it('unknown account: 404 ACCOUNT_NOT_FOUND', async () => {
      const ghost = uniqueId('ghost');
      const key = uniqueId('key');
      const res = await stack.postDeposit(depositRequest(ghost, 100), key);
      expect(res.status).toBe(404);
      expect(res.json).toMatchObject({ code: 'ACCOUNT_NOT_FOUND' });
      expect(await workflowCount(resourceIdFor('dp', ghost, key))).toBe(0);
    });

    async function expectNothingWritten(accountId: string, key: string | undefined) {
      const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE account_id = $1', [accountId]);
      expect(records.rows[0].n).toBe(0);
      const rows = await stack.pool.query('SELECT count(*)::int AS n FROM deposits WHERE account_id = $1', [accountId]);
      expect(rows.rows[0].n).toBe(0);
      if (key) expect(await workflowCount(resourceIdFor('dp', accountId, key))).toBe(0);
      expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0, posted: 1_000 });
    }
  });
});
