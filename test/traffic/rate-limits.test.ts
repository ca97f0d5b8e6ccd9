import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';
import { uniqueId } from '../support';
import { bearer, countBy, secondApi, send } from './support';

const ACCOUNT_LIMIT = 5;
const SUBJECT_LIMIT = 25;

/**
 * Two API instances with the same limits: the counters live in PostgreSQL, so together they admit exactly
 * the limit (the documented margin is the fixed window's edge, not the number of instances). Each test
 * uses accounts and token subjects of its own: the counters are shared with every other suite.
 */
describe('rate limits per account and per token subject, held across two API instances', () => {
  let stack: SagaStack;
  let other: { url: string; app: NestFastifyApplication };

  beforeAll(async () => {
    stack = await startSagaStack({ RATE_LIMIT_ACCOUNT_PER_MINUTE: String(ACCOUNT_LIMIT), RATE_LIMIT_SUBJECT_PER_MINUTE: String(SUBJECT_LIMIT) });
    other = await secondApi(stack);
  });
  afterAll(async () => {
    await other?.app.close();
    await stack?.close();
  });

  it('5 rounds of 20 concurrent payouts on one account through both instances: exactly 5 pass, 15 get 429 RATE_LIMITED and write nothing; another player is unaffected', async () => {
    for (let round = 0; round < 5; round++) {
      const accountId = await stack.fundedAccount(100_000);
      const bystander = await stack.fundedAccount(100_000);
      // The player's own token: its subject limit (25) is above the account's (5), so the account's applies.
      const player = await bearer(accountId, 'player', stack.config);
      const keys = Array.from({ length: 20 }, () => uniqueId(`rl-${round}`));
      const answers = await Promise.all(keys.map((key, i) => send(`${i % 2 ? other.url : stack.apiUrl}/v1/payouts`, 'POST', player, payoutRequest(accountId, 100), key)));
      const unaffected = await send(`${other.url}/v1/payouts`, 'POST', await bearer(bystander, 'player', stack.config), payoutRequest(bystander, 100), uniqueId('bystander'));

      expect(countBy(answers, (a) => `${a.status} ${a.code ?? ''}`.trim()), `round ${round}`).toEqual({ '201': ACCOUNT_LIMIT, '429 RATE_LIMITED': 20 - ACCOUNT_LIMIT });
      expect(unaffected.status).toBe(201);
      const limitedKeys = keys.filter((_, i) => answers[i]!.status === 429);
      for (const answer of answers.filter((a) => a.status === 429)) {
        expect(answer.json.limit).toBe('account');
        expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1);
        expect(Number(answer.retryAfter)).toBeLessThanOrEqual(60);
      }
      const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE idempotency_key = ANY($1)', [limitedKeys]);
      expect(records.rows[0].n).toBe(0);
      const holds = await stack.pool.query("SELECT count(*)::int AS n FROM ledger_transfers WHERE debit_account_id = $1 AND kind = 'hold'", [accountId]);
      expect(holds.rows[0].n).toBe(ACCOUNT_LIMIT);
    }
    await stack.assertLedgerClean();
  });

  it('a service token over its per-minute limit gets 429 on any route, on both instances together; another subject is unaffected', async () => {
    for (let round = 0; round < 3; round++) {
      const service = await bearer(uniqueId('backend'), 'service', stack.config);
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => send(`${i % 2 ? other.url : stack.apiUrl}/v1/payouts/po_${'0'.repeat(32)}`, 'GET', service)));
      expect(countBy(answers, (a) => `${a.status} ${a.code}`), `round ${round}`).toEqual({ '404 PAYOUT_NOT_FOUND': SUBJECT_LIMIT, '429 RATE_LIMITED': 40 - SUBJECT_LIMIT });
      expect(answers.filter((a) => a.status === 429).every((a) => a.json.limit === 'subject' && Number(a.retryAfter) >= 1)).toBe(true);
      const fresh = await bearer(uniqueId('backend'), 'service', stack.config);
      expect((await send(`${other.url}/v1/payouts/po_${'0'.repeat(32)}`, 'GET', fresh)).status).toBe(404);
    }
  });
});
