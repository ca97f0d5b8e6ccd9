import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

/** The operator's `reference` and `metadata` on payouts and deposits: stored, answered, echoed in events, part of the key's request. */
describe('operator metadata and reference on payouts and deposits', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack();
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const metadata = { order_id: 'ord-1842', 'player.segment': 'vip', note: 'Ünïcode and spaces are fine' };
  const reference = 'WD-2026-000184';

  const eventsOf = async (column: 'payout_id' | 'deposit_id', id: string) =>
    (await stack.pool.query<{ event_type: string; payload: any }>(`SELECT event_type, payload FROM outbox_events WHERE payload->>'${column}' = $1 ORDER BY id`, [id])).rows;

  /** What the workflow history holds, with payloads decoded (they are base64 in its JSON form). */
  const historyText = async (workflowId: string) => {
    const history = await stack.temporal.workflow.getHandle(workflowId).fetchHistory();
    return JSON.stringify(history, (key, value) => (key === 'data' && typeof value === 'string' ? Buffer.from(value, 'base64').toString('utf8') : value));
  };

  it('a payout keeps them: in its answers, its history listing and every outbox event of its transfers, never in the workflow history', async () => {
    const accountId = await stack.fundedAccount(5_000);
    const player = await stack.playerAuth(accountId);
    const created = await stack.postPayout({ ...payoutRequest(accountId, 1_200), reference, metadata }, uniqueId('key'), player);
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ status: 'HELD', reference, metadata });
    const payoutId = created.json.payout_id;

    const settled = await stack.waitForStatus(payoutId, ['SETTLED']);
    expect(settled).toMatchObject({ reference, metadata });
    expect(await stack.getPayout(payoutId, player)).toMatchObject({ reference, metadata });
    const listed = (await (await fetch(`${stack.apiUrl}/v1/accounts/${accountId}/payouts`, { headers: { authorization: player } })).json()) as { items: unknown[] };
    expect(listed.items).toEqual([expect.objectContaining({ payout_id: payoutId, reference, metadata })]);

    const events = await eventsOf('payout_id', payoutId);
    expect(events.map((e) => e.event_type)).toEqual(['payout.held', 'payout.settled']);
    for (const event of events) expect(event.payload).toMatchObject({ payout_id: payoutId, reference, metadata });

    const history = await historyText(payoutId);
    expect(history).toContain(payoutId);
    expect(history).not.toContain('ord-1842');
    expect(history).not.toContain(reference);
  });

  it('a deposit keeps them too, and its credited event echoes them; an operation without them has none', async () => {
    const accountId = await stack.fundedAccount(0);
    const created = await stack.postDeposit({ ...depositRequest(accountId, 900), reference: 'DEP-77', metadata: { campaign: 'spring' } }, uniqueId('dep'));
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ status: 'PENDING', reference: 'DEP-77', metadata: { campaign: 'spring' } });
    const depositId = created.json.deposit_id;
    expect(await stack.waitForDepositStatus(depositId, ['CREDITED'])).toMatchObject({ reference: 'DEP-77', metadata: { campaign: 'spring' } });
    const events = await eventsOf('deposit_id', depositId);
    expect(events).toEqual([expect.objectContaining({ event_type: 'deposit.credited', payload: expect.objectContaining({ deposit_id: depositId, reference: 'DEP-77', metadata: { campaign: 'spring' } }) })]);

    const plain = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'));
    expect(plain.status).toBe(201);
    expect(plain.json).not.toHaveProperty('metadata');
    expect(plain.json).not.toHaveProperty('reference');
    await stack.waitForStatus(plain.json.payout_id, ['SETTLED']);
    for (const event of await eventsOf('payout_id', plain.json.payout_id)) {
      expect(event.payload).not.toHaveProperty('metadata');
      expect(event.payload).not.toHaveProperty('reference');
    }
    expect((await stack.pool.query('SELECT 1 FROM operation_metadata WHERE resource_id = $1', [plain.json.payout_id])).rowCount).toBe(0);
  });

  it('bad metadata or reference is 422 INVALID_METADATA and writes nothing', async () => {
    const accountId = await stack.fundedAccount(5_000);
    const tooMany = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']));
    const tooBig = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, 'x'.repeat(450)]));
    const cases: [string, Record<string, unknown>][] = [
      ['21 keys', { metadata: tooMany }],
      ['a value over 500 characters', { metadata: { note: 'x'.repeat(501) } }],
      ['a value that is not a string', { metadata: { amount: 12 } }],
      ['a nested object', { metadata: { nested: { a: 'b' } } }],
      ['a key with a space', { metadata: { 'bad key': 'v' } }],
      ['a key over 40 characters', { metadata: { ['k'.repeat(41)]: 'v' } }],
      ['over 4096 bytes in all', { metadata: tooBig }],
      ['a NUL character', { metadata: { note: 'a\u0000b' } }],
      ['not an object', { metadata: ['a'] }],
      ['a null', { metadata: null }],
      ['a reference over 128 characters', { reference: 'r'.repeat(129) }],
      ['an empty reference', { reference: '' }],
    ];
    for (const [what, extra] of cases) {
      const key = uniqueId('key');
      const res = await stack.postPayout({ ...payoutRequest(accountId, 100), ...extra }, key);
      expect(res.status, what).toBe(422);
      expect(res.headers.get('content-type'), what).toMatch(/^application\/problem\+json/);
      expect(res.json, what).toMatchObject({ code: 'INVALID_METADATA', errors: [expect.objectContaining({ path: expect.stringMatching(/^body\.(metadata|reference)/) })] });
      // The refusal never echoes a value (metadata may hold personal data).
      expect(res.text, what).not.toContain('xxxxxxxxxx');
      const payoutId = resourceIdFor('po', accountId, key);
      const written = await stack.pool.query(
        `SELECT (SELECT count(*) FROM idempotency_records WHERE account_id = $1 AND idempotency_key = $2)::int AS keys,
                (SELECT count(*) FROM payouts WHERE payout_id = $3)::int AS payouts,
                (SELECT count(*) FROM operation_metadata WHERE resource_id = $3)::int AS fields,
                (SELECT count(*) FROM payout_destinations WHERE payout_id = $3)::int AS destinations`,
        [accountId, key, payoutId],
      );
      expect(written.rows[0], what).toEqual({ keys: 0, payouts: 0, fields: 0, destinations: 0 });
      await expect(stack.temporal.workflow.getHandle(payoutId).describe(), what).rejects.toBeInstanceOf(WorkflowNotFoundError);
    }
    // Deposits refuse the same way.
    const deposit = await stack.postDeposit({ ...depositRequest(accountId, 100), metadata: tooMany }, uniqueId('dep'));
    expect(deposit.status).toBe(422);
    expect(deposit.json.code).toBe('INVALID_METADATA');
    // With another problem as well, it is the usual 400 naming each.
    const both = await stack.postPayout({ ...payoutRequest(accountId, 100), metadata: tooMany, colour: 'red' }, uniqueId('key'));
    expect(both.status).toBe(400);
    expect(both.json.code).toBe('VALIDATION_FAILED');
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 5_000, held: 0 });
  });

  it('the same key with other metadata is IDEMPOTENCY_MISMATCH, as another amount is; the same metadata in another key order replays', async () => {
    const accountId = await stack.fundedAccount(5_000);
    const key = uniqueId('key');
    const body = { ...payoutRequest(accountId, 700), reference, metadata: { a: '1', b: '2' } };
    const first = await stack.postPayout(body, key);
    expect(first.status).toBe(201);

    const replay = await stack.postPayout({ ...payoutRequest(accountId, 700), metadata: { b: '2', a: '1' }, reference }, key);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.text).toBe(first.text);

    for (const [what, other] of [
      ['other metadata', { ...body, metadata: { a: '1', b: '3' } }],
      ['metadata left out', { ...payoutRequest(accountId, 700), reference }],
      ['another reference', { ...body, reference: 'WD-other' }],
      ['another amount', { ...body, amount: { minor_units: 701, currency: 'EUR' } }],
    ] as const) {
      const res = await stack.postPayout(other, key);
      expect(res.status, what).toBe(422);
      expect(res.json.code, what).toBe('IDEMPOTENCY_MISMATCH');
    }
    // Nothing changed: one hold, the first metadata.
    expect((await stack.transfersOf(first.json.payout_id)).filter((t) => t.kind === 'hold')).toHaveLength(1);
    expect(await stack.getPayout(first.json.payout_id)).toMatchObject({ reference, metadata: { a: '1', b: '2' } });

    // Deposits: the same rule.
    const depositKey = uniqueId('dep');
    expect((await stack.postDeposit({ ...depositRequest(accountId, 300), metadata: { a: '1' } }, depositKey)).status).toBe(201);
    const mismatch = await stack.postDeposit({ ...depositRequest(accountId, 300), metadata: { a: '2' } }, depositKey);
    expect(mismatch.status).toBe(422);
    expect(mismatch.json.code).toBe('IDEMPOTENCY_MISMATCH');
  });
});
