import { randomUUID } from 'node:crypto';
import { runner } from 'node-pg-migrate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayDeadLetters } from '../../apps/outbox-publisher/store';
import { createPool, type Pool } from '../../lib/db';
import { migrateUp, MIGRATIONS_DIR } from '../../lib/migrate';
import { urlEndpointId } from '../../lib/outbox-webhooks';
import { sleep, waitUntil } from '../../lib/wait';
import { scratchDatabase } from '../support';
import { startReceiver, testPublisher, type Receiver } from './helpers';

/**
 * Upgrading to endpoints as data (migration 0021) on a database an older publisher served: the endpoint keeps
 * its delivery state under the id its bare URL gets (nothing it received is sent again), waits for a
 * publisher's OUTBOX_ENDPOINTS to name it (it had no secret), and its old dead letter now holds the
 * account's new events until it is replayed.
 */
let database: Awaited<ReturnType<typeof scratchDatabase>>;
let pool: Pool;
let rx: Receiver;

beforeAll(async () => {
  database = await scratchDatabase('outbox_upgrade');
  await runner({ databaseUrl: database.url, dir: MIGRATIONS_DIR, direction: 'up', migrationsTable: 'pgmigrations', count: 20, checkOrder: true, singleTransaction: true, log: () => undefined });
  pool = createPool(database.url, 10);
  rx = await startReceiver();
});
afterAll(async () => {
  await rx?.close();
  await pool?.end();
  await database?.drop();
});

let transferId = 0;
/** An event as the ledger writes it (raw: the ledger of today expects the newest schema). */
async function event(accountId: string): Promise<{ seq: number; id: string }> {
  const id = randomUUID();
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO outbox_events (event_id, event_type, schema_version, account_id, idempotency_key, transfer_id, payload)
     VALUES ($1, 'ledger.transfer_posted', 1, $2, $3, $4, $5) RETURNING id`,
    [id, accountId, `k-${id}`, ++transferId, JSON.stringify({ event_id: id, type: 'ledger.transfer_posted', schema_version: 1, account_id: accountId })],
  );
  return { seq: Number(rows[0]!.id), id };
}

describe('outbox upgrade to endpoints as data', () => {
  it('an endpoint served before keeps its state under its bare URL id; its old dead letter holds the account until replayed', async () => {
    const url = rx.url;
    const [a1, a2, a3, b1] = [await event('acct-a'), await event('acct-a'), await event('acct-a'), await event('acct-b')];
    // What a publisher before 0021 left: a1, a3, b1 delivered; a2 dead-lettered (a3 went on past it, as it then did).
    await pool.query("INSERT INTO outbox_endpoints (endpoint, scanned_before) VALUES ($1, pg_snapshot_xmin(pg_current_snapshot()))", [url]);
    for (const [e, account, dead] of [[a1, 'acct-a', false], [a2, 'acct-a', true], [a3, 'acct-a', false], [b1, 'acct-b', false]] as const) {
      await pool.query(
        `INSERT INTO outbox_deliveries (endpoint, event_seq, account_id, attempts, delivered_at, dead_at, last_error)
         VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN NULL ELSE now() END, CASE WHEN $5 THEN now() END, CASE WHEN $5 THEN 'HTTP 500' END)`,
        [url, e.seq, account, dead ? 10 : 1, dead],
      );
    }
    await pool.query("INSERT INTO outbox_dead_letters (event_seq, event_id, endpoint, attempts, last_error) VALUES ($1, $2, $3, 10, 'HTTP 500')", [a2.seq, a2.id, url]);

    await migrateUp(database.url);
    const { rows: migrated } = await pool.query('SELECT endpoint, name, url, enabled, source, secret_sealed FROM outbox_endpoints');
    expect(migrated).toEqual([{ endpoint: url, name: urlEndpointId(url), url, enabled: false, source: 'config', secret_sealed: null }]);

    const [a4, b2] = [await event('acct-a'), await event('acct-b')];
    // OUTBOX_ENDPOINTS names the URL again (bare, as before): same id, the secret applied, enabled.
    const publisher = testPublisher(pool, [url], ['acct-a', 'acct-b']);
    publisher.start();
    try {
      await waitUntil('the other account goes on', async () => rx.accepted().some((r) => r.eventId === b2.id), 10_000, 20);
      await sleep(300);
      expect(rx.received.map((r) => r.eventId)).toEqual([b2.id]); // nothing sent twice; a4 held behind a2
      expect(rx.received[0]!.signatureOk).toBe(true);

      expect(await replayDeadLetters(pool, { endpoint: urlEndpointId(url), eventSeq: a2.seq }, { actor: 'test', reason: 'upgrade' })).toHaveLength(1);
      await waitUntil('the replayed event and the held one', async () => rx.accepted().length === 3, 10_000, 20);
      expect(rx.accepted().map((r) => r.eventId)).toEqual([b2.id, a2.id, a4.id]);
    } finally {
      await publisher.stop();
    }
    const { rows: after } = await pool.query('SELECT name, enabled, source, secret_fingerprint IS NOT NULL AS signs FROM outbox_endpoints');
    expect(after).toEqual([{ name: urlEndpointId(url), enabled: true, source: 'config', signs: true }]);
    expect(a3.seq).toBeGreaterThan(a2.seq);
  });
});
