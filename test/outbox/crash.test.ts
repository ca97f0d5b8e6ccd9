import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, type Ledger } from '../../ledger';
import { repoRoot } from '../../lib/config';
import { createPool, type Pool } from '../../lib/db';
import { migrateDatabase } from '../../lib/migrate';
import { startProcess, type ManagedProcess } from '../../lib/processes';
import { sleep, waitUntil } from '../../lib/wait';
import { expectInvariantsHold } from '../support/ledger';
import { scratchDatabase } from '../support';
import { createPlayers, eventsPerRun, firstArrivalOrder, orderByAccount, OUTBOX_SECRET, outboxEventsOf, sagaLikeRun, startReceiver, TEST_KEY_RING } from './helpers';

/**
 * The publisher as it runs in production (`node --import tsx apps/outbox-publisher/main.ts`, configured by
 * env), killed with SIGKILL in the middle of a batch and restarted: no event is lost, per-account order
 * holds, and the only duplicates are byte-identical redeliveries of events the dead process had sent but
 * not recorded. A database of its own: the production publisher serves every enabled endpoint it finds,
 * and other test files add theirs to the shared one.
 */
let pool: Pool;
let ledger: Ledger;
let database: Awaited<ReturnType<typeof scratchDatabase>>;

beforeAll(async () => {
  database = await scratchDatabase('outbox_crash');
  await migrateDatabase(database.url, TEST_KEY_RING);
  pool = createPool(database.url, 20);
  ledger = createLedger(pool);
});
afterAll(async () => {
  if (pool) await expectInvariantsHold(pool);
  await pool?.end();
  await database?.drop();
});

const PLAYERS = 12;
const ROUNDS = 8;

function startPublisherProcess(endpoint: string, output: string[]): ManagedProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    DATABASE_URL: database.url,
    // As an operator writes it: the endpoint receives what is written from its first start on.
    OUTBOX_ENDPOINTS: JSON.stringify([{ id: 'crash-receiver', url: endpoint, from: 'now' }]),
    OUTBOX_WEBHOOK_SECRET: OUTBOX_SECRET,
    OUTBOX_BATCH_SIZE: '20',
    OUTBOX_POLL_INTERVAL_MS: '20',
    OUTBOX_RETRY_WINDOW: '1m',
    OUTBOX_BACKOFF_BASE_MS: '50',
    OUTBOX_HEALTH_ADDRESS: '127.0.0.1:0', // any free port: other tests run publishers too
  };
  delete env.LAUNCHER_PID;
  return startProcess('outbox-publisher', process.execPath, ['--import', 'tsx', 'apps/outbox-publisher/main.ts'], {
    cwd: repoRoot,
    env,
    onLine: (line) => output.push(line),
  });
}

describe('outbox publisher crash', () => {
  it('SIGKILL mid-batch and restart: every event arrives, in per-account order, duplicates only as identical redeliveries', async () => {
    const rx = await startReceiver();
    // Unfiltered like production; started once before the events are written (from: now), which it must all get.
    const output: string[] = [];
    let publisher = startPublisherProcess(rx.url, output);
    await waitUntil('the endpoint applied', async () => (await pool.query("SELECT 1 FROM outbox_endpoints WHERE name = 'crash-receiver'")).rowCount === 1, 30_000, 50);
    await publisher.stop(10_000, 'SIGTERM');
    const { players, clearing } = await createPlayers(ledger, PLAYERS, 1_000);
    await Promise.all(players.map((p) => sagaLikeRun(ledger, p, clearing, ROUNDS)));
    const events = await outboxEventsOf(pool, players);
    expect(events).toHaveLength(PLAYERS * (1 + eventsPerRun(ROUNDS)));
    const mine = new Set(players);

    // Kill the publisher the moment the receiver has accepted a third of the events: the answer is on the
    // wire, other deliveries of the batch are in flight, none of them recorded yet.
    publisher = startPublisherProcess(rx.url, output);
    const killAt = Math.floor(events.length / 3);
    let killedAfter: number | undefined;
    rx.respondWith((r) => {
      if (!mine.has(r.accountId) || killedAfter !== undefined) return { status: 200, delayMs: 2 };
      const seen = rx.received.filter((x) => mine.has(x.accountId)).length;
      if (seen < killAt) return { status: 200, delayMs: 2 };
      killedAfter = seen;
      setImmediate(() => process.kill(-publisher.child.pid!, 'SIGKILL'));
      return 200;
    });

    try {
      expect(await publisher.exited).toBe('SIGKILL');
      // A statement the dead process had already sent still completes on the server: let it land first.
      await sleep(300);
      const receivedBeforeCrash = rx.received.filter((r) => mine.has(r.accountId));
      const { rows: unrecorded } = await pool.query<{ event_id: string; claimed: boolean }>(
        `SELECT e.event_id::text, d.claimed_by IS NOT NULL AS claimed
           FROM outbox_events e LEFT JOIN outbox_deliveries d ON d.event_seq = e.id AND d.endpoint = $1
          WHERE e.event_id = ANY($2::uuid[]) AND d.delivered_at IS NULL`,
        ['crash-receiver', receivedBeforeCrash.map((r) => r.eventId)],
      );
      // Mid-batch: the endpoint has events the dead publisher never recorded as delivered (claims left behind).
      expect(unrecorded.length).toBeGreaterThan(0);
      expect(unrecorded.every((u) => u.claimed)).toBe(true);

      publisher = startPublisherProcess(rx.url, output);
      await waitUntil('every event received after the restart', async () => events.every((e) => rx.distinctIds().has(e.event_id)), 60_000, 50);
      await waitUntil(
        'every delivery recorded',
        async () =>
          (
            await pool.query(
              `SELECT 1 FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_seq
                WHERE d.endpoint = $1 AND e.account_id = ANY($2::text[]) AND d.delivered_at IS NULL`,
              ['crash-receiver', players],
            )
          ).rowCount === 0,
        10_000,
        50,
      );
      await publisher.stop(10_000, 'SIGTERM');
      expect(await publisher.exited).toBe(0); // graceful stop through onShutdown

      const received = rx.received.filter((r) => mine.has(r.accountId));
      const byId = new Map(events.map((e) => [e.event_id, e]));
      // None lost, none foreign.
      expect(new Set(received.map((r) => r.eventId))).toEqual(new Set(byId.keys()));
      // Per-account first-arrival order is outbox order.
      expect(firstArrivalOrder(received)).toEqual(orderByAccount(events));
      // Every arrival (first or repeated) carries the stored bytes, correctly signed.
      for (const r of received) {
        expect(r.body).toBe(byId.get(r.eventId)!.body);
        expect(r.signatureOk).toBe(true);
      }
      // After dedupe by event id each event counts once; the duplicates are exactly the unrecorded ones.
      const counts = new Map<string, number>();
      for (const r of received) counts.set(r.eventId, (counts.get(r.eventId) ?? 0) + 1);
      const duplicated = [...counts].filter(([, n]) => n > 1);
      expect(duplicated.every(([, n]) => n === 2)).toBe(true);
      expect(new Set(duplicated.map(([id]) => id))).toEqual(new Set(unrecorded.map((u) => u.event_id)));
      const redeliveries = received.length - counts.size;

      // Any other test's events the endpoint got keep per-account order too.
      const { rows: seqs } = await pool.query<{ event_id: string; id: number }>('SELECT event_id::text, id FROM outbox_events WHERE event_id = ANY($1::uuid[])', [
        [...rx.distinctIds()],
      ]);
      const seqOf = new Map(seqs.map((s) => [s.event_id, s.id]));
      for (const [account, ids] of firstArrivalOrder(rx.received)) {
        const order = ids.map((id) => seqOf.get(id)!);
        expect(order, account).toEqual([...order].sort((x, y) => x - y));
      }

      console.log(
        `outbox crash test: ${events.length} events over ${PLAYERS} accounts; SIGKILL after ${killedAfter} received; ` +
          `${unrecorded.length} sent-but-unrecorded at the crash; ${redeliveries} redeliveries after restart; 0 lost`,
      );
    } catch (err) {
      console.error(output.slice(-40).join('\n'));
      throw err;
    } finally {
      await publisher.stop(2_000, 'SIGKILL');
      await rx.close();
    }
  });
});
