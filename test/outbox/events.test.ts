import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkInvariants, createLedger, outboxEventIdOf, type Ledger, type Transfer } from '../../ledger';
import type { Pool } from '../../lib/db';
import { waitUntil } from '../../lib/wait';
import { expectInvariantsHold, transferOf } from '../support/ledger';
import { testPool, uniqueId } from '../support';
import { createPlayers, outboxEventsOf } from './helpers';

/** Writer side of the outbox: each new ledger transfer writes exactly one event, in its own transaction. */
let pool: Pool;
let ledger: Ledger;

beforeAll(() => {
  pool = testPool();
  ledger = createLedger(pool);
});
afterEach(async () => {
  await expectInvariantsHold(pool);
});
afterAll(async () => {
  await pool?.end();
});

async function eventOf(idempotencyKey: string) {
  const { rows } = await pool.query<{
    event_id: string;
    event_type: string;
    schema_version: number;
    account_id: string;
    transfer_id: number;
    payload: Record<string, unknown>;
    same_transaction: boolean;
    same_time: boolean;
  }>(
    `SELECT e.event_id::text, e.event_type, e.schema_version, e.account_id, e.transfer_id, e.payload,
            -- tx_id is the 64-bit xid; its low 32 bits are the transfer row's xmin when one transaction wrote both.
            (e.tx_id::text::bigint & 4294967295) = t.xmin::text::bigint AS same_transaction,
            e.created_at = t.created_at AS same_time
       FROM outbox_events e JOIN ledger_transfers t ON t.id = e.transfer_id
      WHERE e.idempotency_key = $1`,
    [idempotencyKey],
  );
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

async function countEvents(accountIds: string[]): Promise<number> {
  return (await outboxEventsOf(pool, accountIds)).length;
}

function expectedPayload(eventId: string, type: string, accountId: string, t: Transfer, extra: Record<string, string>) {
  return {
    event_id: eventId,
    type,
    schema_version: 1,
    occurred_at: t.createdAt,
    account_id: accountId,
    idempotency_key: t.idempotencyKey,
    transfer: {
      id: t.id,
      kind: t.kind,
      amount: { minor_units: t.amount, currency: t.currency },
      debit_account_id: t.debitAccountId,
      credit_account_id: t.creditAccountId,
      ...(t.pendingId !== null ? { pending_id: t.pendingId } : {}),
      ...(t.refundOfId !== null ? { refund_of_id: t.refundOfId } : {}),
    },
    ...extra,
  };
}

describe('every ledger command writes its event', () => {
  it('maps each kind of movement to its event type and payload, in the transfer\'s transaction', async () => {
    const { players, clearing, funding } = await createPlayers(ledger, 1, 1_000);
    const player = players[0]!;
    const payoutId = uniqueId('payout');
    const hold = transferOf(await ledger.hold({ idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: clearing, amount: 300, currency: 'EUR', metadata: { payout_id: payoutId, step: 'hold' } }));
    const post = transferOf(await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: hold.id, amount: 250, metadata: { payout_id: payoutId, step: 'post' } }));
    const refund = transferOf(await ledger.refund({ idempotencyKey: uniqueId('refund'), transferId: post.id, amount: 100, metadata: { payout_id: payoutId, step: 'refund' } }));
    const cancelled = uniqueId('payout');
    const hold2 = transferOf(await ledger.hold({ idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: clearing, amount: 50, currency: 'EUR', metadata: { payout_id: cancelled, step: 'hold' } }));
    const voided = transferOf(await ledger.void({ idempotencyKey: uniqueId('void'), pendingId: hold2.id, metadata: { payout_id: cancelled, step: 'void' } }));
    const depositId = uniqueId('deposit');
    const credit = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('credit'), debitAccountId: clearing, creditAccountId: player, amount: 70, currency: 'EUR', metadata: { deposit_id: depositId, step: 'credit' } }));
    const plainHold = transferOf(await ledger.hold({ idempotencyKey: uniqueId('plain'), debitAccountId: player, creditAccountId: clearing, amount: 1, currency: 'EUR' }));

    const fundingEvent = (await outboxEventsOf(pool, [player]))[0]!;
    expect(fundingEvent).toMatchObject({ event_type: 'ledger.transfer_posted', account_id: player });
    expect(fundingEvent.payload.transfer).toMatchObject({ kind: 'transfer', debit_account_id: funding, credit_account_id: player });

    const cases: [Transfer, string, Record<string, string>][] = [
      [hold, 'payout.held', { payout_id: payoutId }],
      [post, 'payout.settled', { payout_id: payoutId }],
      [refund, 'payout.refunded', { payout_id: payoutId }],
      [hold2, 'payout.held', { payout_id: cancelled }],
      [voided, 'payout.released', { payout_id: cancelled }],
      [credit, 'deposit.credited', { deposit_id: depositId }],
      [plainHold, 'ledger.transfer_posted', {}],
    ];
    for (const [transfer, type, extra] of cases) {
      const event = await eventOf(transfer.idempotencyKey);
      expect(event, type).toMatchObject({ event_type: type, schema_version: 1, account_id: player, transfer_id: transfer.id, same_transaction: true, same_time: true });
      expect(event.payload, type).toEqual(expectedPayload(event.event_id, type, player, transfer, extra));
      expect(event.event_id, type).toBe(outboxEventIdOf(transfer.idempotencyKey));
    }
    // Per account, outbox order is the order the commands committed in.
    const ordered = (await outboxEventsOf(pool, [player])).map((e) => e.transfer_id);
    expect(ordered).toEqual([...ordered].sort((a, b) => a - b));
    expect(ordered).toHaveLength(1 + cases.length);
  });

  it("an event's id is derived from its transfer's idempotency key, so a transfer made again after a failover publishes the same id", () => {
    // Pinned: regions, and versions during an upgrade, must derive the same id from the same key.
    expect(outboxEventIdOf('po_0123:hold')).toBe('6cba135b-a759-500a-b5c1-8b851298aa6a');
    expect(outboxEventIdOf('po_0123:hold')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(outboxEventIdOf('po_0123:post')).not.toBe(outboxEventIdOf('po_0123:hold'));
  });

  it('a transfer between two system accounts is ordered under its debit account', async () => {
    const fees = uniqueId('fees');
    const funding = uniqueId('funding');
    await ledger.createAccount({ accountId: fees, currency: 'USD', kind: 'fees' });
    await ledger.createAccount({ accountId: funding, currency: 'USD', kind: 'operator_funding' });
    const moved = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('sweep'), debitAccountId: fees, creditAccountId: funding, amount: 5, currency: 'USD' }));
    expect(await eventOf(moved.idempotencyKey)).toMatchObject({ account_id: fees, event_type: 'ledger.transfer_posted' });
  });

  it('a repeat (exists), a mismatched repeat and refused commands write no event', async () => {
    const { players, clearing } = await createPlayers(ledger, 1, 100);
    const player = players[0]!;
    const input = { idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: clearing, amount: 60, currency: 'EUR' };
    expect((await ledger.hold(input)).result).toBe('ok');
    const before = await countEvents([player]);

    expect((await ledger.hold(input)).result).toBe('exists');
    expect((await ledger.hold({ ...input, amount: 61 })).result).toBe('exists_with_different_amount');
    expect((await ledger.hold({ ...input, idempotencyKey: uniqueId('hold') })).result).toBe('insufficient_funds');
    expect((await ledger.transfer({ ...input, idempotencyKey: uniqueId('t'), currency: 'USD' })).result).toBe('currency_mismatch');
    expect((await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: 2 ** 40 })).result).toBe('pending_transfer_not_found');
    const held = transferOf(await ledger.hold(input));
    expect((await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: held.id, amount: 61 })).result).toBe('exceeds_pending_transfer_amount');

    expect(await countEvents([player])).toBe(before);
    await eventOf(input.idempotencyKey); // still exactly one
  });

  it('a command killed after writing its transfer, while writing its event, leaves neither; the retry writes one of each', async () => {
    const { players, clearing } = await createPlayers(ledger, 1, 100);
    const player = players[0]!;
    const blocker = new pg.Client({ connectionString: inject('databaseUrl') });
    const admin = new pg.Client({ connectionString: inject('databaseUrl') });
    await Promise.all([blocker.connect(), admin.connect()]);
    try {
      // Holding the account's outbox lock stops the command after its transfer insert, before its event insert.
      await blocker.query('BEGIN');
      await blocker.query("SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || $1, 7))", [player]);
      const holder = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const input = { idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: clearing, amount: 40, currency: 'EUR' };
      const attempt = ledger.hold(input);
      attempt.catch(() => undefined);
      let victim: number | undefined;
      await waitUntil(
        'the hold blocked on the outbox lock',
        async () => {
          const { rows } = await admin.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%outbox:%'`,
            [holder],
          );
          victim = rows[0]?.pid;
          return victim !== undefined;
        },
        10_000,
        20,
      );
      await admin.query('SELECT pg_terminate_backend($1)', [victim]);
      await expect(attempt).rejects.toThrow();
      await blocker.query('ROLLBACK');

      expect(await ledger.getTransfer(input.idempotencyKey)).toBeUndefined();
      expect((await pool.query('SELECT 1 FROM outbox_events WHERE idempotency_key = $1', [input.idempotencyKey])).rowCount).toBe(0);
      expect((await ledger.hold(input)).result).toBe('ok');
      expect(await eventOf(input.idempotencyKey)).toMatchObject({ event_type: 'ledger.transfer_posted', same_transaction: true });
    } finally {
      await blocker.end();
      await admin.end();
    }
  });

  it('events are append-only, and the invariant checker sees a transfer without its event', async () => {
    const { players, funding } = await createPlayers(ledger, 1, 10);
    const player = players[0]!;
    await expect(pool.query("UPDATE outbox_events SET event_type = 'x' WHERE account_id = $1", [player])).rejects.toMatchObject({ code: '23001' });
    await expect(pool.query('DELETE FROM outbox_events WHERE account_id = $1', [player])).rejects.toMatchObject({ code: '23001' });

    const client = await pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      // Written around the ledger module (no event), inside a transaction that is rolled back.
      const { rows } = await client.query<{ id: number }>(
        `INSERT INTO ledger_transfers (idempotency_key, request_fingerprint, kind, state, debit_account_id, credit_account_id, amount, currency)
         VALUES ($1, repeat('0', 64), 'transfer', 'posted', $2, $3, 1, 'EUR') RETURNING id`,
        [uniqueId('raw'), funding, player],
      );
      const report = await checkInvariants(client);
      expect(report.violations).toEqual([{ rule: 'transfer_has_outbox_event', detail: { transfer_id: rows[0]!.id, kind: 'transfer', event_id: null } }]);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
