import { execFile } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLedger, type Ledger } from '../../ledger';
import { backoffMs, outboxLag, type OutboxPublisher } from '../../apps/outbox-publisher/publisher';
import { repoRoot } from '../../lib/config';
import type { Pool } from '../../lib/db';
import { waitUntil } from '../../lib/wait';
import { expectInvariantsHold } from '../support/ledger';
import { testPool } from '../support';
import { createPlayers, firstArrivalOrder, orderByAccount, outboxEventsOf, sagaLikeRun, startReceiver, testPublisher, type Receiver } from './helpers';

let pool: Pool;
let ledger: Ledger;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(() => {
  pool = testPool();
  ledger = createLedger(pool);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await expectInvariantsHold(pool);
});
afterAll(async () => {
  await pool?.end();
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  cleanups.push(() => r.close());
  return r;
}

function started(publisher: OutboxPublisher): OutboxPublisher {
  publisher.start();
  cleanups.push(() => publisher.stop());
  return publisher;
}

async function deliveryRows(endpoint: string) {
  const { rows } = await pool.query<{ event_id: string; attempts: number; delivered: boolean; dead: boolean; last_error: string | null; claimed_by: number | null }>(
    `SELECT e.event_id::text, d.attempts, d.delivered_at IS NOT NULL AS delivered, d.dead_at IS NOT NULL AS dead, d.last_error, d.claimed_by
       FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_seq WHERE d.endpoint = $1 ORDER BY d.event_seq`,
    [endpoint],
  );
  return rows;
}

/** The replay command as an operator runs it (async: the receiver and publisher of the test keep running). */
function replay(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'scripts/outbox-replay.ts', ...args],
      { cwd: repoRoot, env: { ...process.env, DATABASE_URL: inject('databaseUrl'), NODE_ENV: 'test', LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 60_000 },
      (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: unknown }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

describe('outbox publisher', () => {
  it('delivers every event once, as a signed webhook of the stored bytes, in per-account order', async () => {
    const { players, clearing } = await createPlayers(ledger, 3, 1_000);
    await Promise.all(players.map((p) => sagaLikeRun(ledger, p, clearing, 4)));
    const events = await outboxEventsOf(pool, players);
    const rx = await receiver();
    started(testPublisher(pool, [rx.url], players, { batchSize: 2 }));
    await waitUntil('every event received', async () => rx.distinctIds().size === events.length, 20_000, 20);

    expect(rx.received).toHaveLength(events.length); // no duplicates
    const byId = new Map(events.map((e) => [e.event_id, e]));
    for (const r of rx.received) {
      const stored = byId.get(r.eventId)!;
      expect(r.body).toBe(stored.body);
      expect(JSON.parse(r.body)).toMatchObject({ event_id: r.eventId, type: stored.event_type, schema_version: 1 });
      expect(r.eventType).toBe(stored.event_type);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.signatureOk).toBe(true);
    }
    expect(firstArrivalOrder(rx.received)).toEqual(orderByAccount(events));
    expect(new Set(events.map((e) => e.event_type))).toEqual(new Set(['ledger.transfer_posted', 'payout.held', 'payout.settled', 'payout.released', 'payout.refunded', 'deposit.credited']));
    await waitUntil('deliveries recorded', async () => (await deliveryRows(rx.url)).every((d) => d.delivered), 5_000, 20);
    expect((await deliveryRows(rx.url)).map((d) => d.attempts)).toEqual(events.map(() => 1));
  });

  it('two publishers share one endpoint without duplicates or reordering', async () => {
    const { players, clearing } = await createPlayers(ledger, 5, 1_000);
    await Promise.all(players.map((p) => sagaLikeRun(ledger, p, clearing, 5)));
    const events = await outboxEventsOf(pool, players);
    const rx = await receiver();
    rx.respondWith(() => ({ status: 200, delayMs: 2 }));
    const sent = [0, 0];
    const counting = (i: number): typeof fetch => (url, init) => {
      sent[i]!++;
      return fetch(url, init);
    };
    started(testPublisher(pool, [rx.url], players, { batchSize: 3, fetch: counting(0) }));
    started(testPublisher(pool, [rx.url], players, { batchSize: 3, fetch: counting(1) }));
    await waitUntil('every event received', async () => rx.distinctIds().size === events.length, 30_000, 20);
    expect(rx.received).toHaveLength(events.length);
    expect(sent[0]! + sent[1]!).toBe(events.length);
    expect(Math.min(...sent)).toBeGreaterThan(0); // both did part of the work
    expect(firstArrivalOrder(rx.received)).toEqual(orderByAccount(events));
  });

  it('retries a refused delivery with exponential backoff until it is accepted', async () => {
    const { players } = await createPlayers(ledger, 1, 100);
    const [event] = await outboxEventsOf(pool, players);
    const rx = await receiver();
    rx.respondWith((_, nth) => (nth <= 3 ? 500 : 200));
    started(testPublisher(pool, [rx.url], players, { backoffBaseMs: 100, maxAttempts: 5 }));
    await waitUntil('accepted', async () => rx.accepted().length === 1, 10_000, 10);

    const times = rx.received.map((r) => r.at);
    expect(rx.received.map((r) => [r.eventId, r.status])).toEqual([
      [event!.event_id, 500],
      [event!.event_id, 500],
      [event!.event_id, 500],
      [event!.event_id, 200],
    ]);
    // Gaps of at least base · 2^(n−1): 100, 200, 400 ms (a few ms of clock slack between database and test).
    for (let n = 1; n <= 3; n++) expect(times[n]! - times[n - 1]!).toBeGreaterThanOrEqual(backoffMs(100, n) - 15);
    expect(new Set(rx.received.map((r) => r.body)).size).toBe(1); // the same bytes every time
    await waitUntil('recorded', async () => (await deliveryRows(rx.url))[0]?.delivered === true, 5_000, 20);
    expect(await deliveryRows(rx.url)).toEqual([{ event_id: event!.event_id, attempts: 4, delivered: true, dead: false, last_error: expect.stringContaining('HTTP 500'), claimed_by: null }]);
    expect(backoffMs(1_000, 20)).toBe(5 * 60_000);
  });

  it('dead-letters an event after max attempts, lets the account\'s next events go, and replays it on request', async () => {
    const { players, clearing } = await createPlayers(ledger, 1, 1_000);
    const player = players[0]!;
    await sagaLikeRun(ledger, player, clearing, 1); // funding + 4 more events
    const events = await outboxEventsOf(pool, players);
    const poisoned = events[0]!.event_id;
    const rx = await receiver();
    let refuse = true;
    rx.respondWith((r) => (refuse && r.eventId === poisoned ? 503 : 200));
    const publisher = started(testPublisher(pool, [rx.url], players, { maxAttempts: 3, backoffBaseMs: 30 }));
    await waitUntil('the later events delivered', async () => rx.accepted().length === events.length - 1, 10_000, 20);

    // Head of line: nothing of the account went out before the poisoned event was dead-lettered.
    expect(rx.received.slice(0, 3).map((r) => [r.eventId, r.status])).toEqual([
      [poisoned, 503],
      [poisoned, 503],
      [poisoned, 503],
    ]);
    expect(rx.accepted().map((r) => r.eventId)).toEqual(events.slice(1).map((e) => e.event_id));
    const { rows: dead } = await pool.query('SELECT event_id::text, endpoint, attempts, last_error, replayed_at FROM outbox_dead_letters WHERE endpoint = $1', [rx.url]);
    expect(dead).toEqual([{ event_id: poisoned, endpoint: rx.url, attempts: 3, last_error: expect.stringContaining('HTTP 503'), replayed_at: null }]);
    expect(await outboxLag(pool, { endpoints: [rx.url] })).toMatchObject({ dead_letters: 1 });

    // The operator fixes the endpoint and replays the dead letter with the command.
    refuse = false;
    const replayed = await replay(['--event', poisoned, '--endpoint', rx.url]);
    expect(replayed.status, replayed.stderr).toBe(0);
    expect(JSON.parse(replayed.stdout.trim())).toMatchObject({ eventId: poisoned, endpoint: rx.url, attempts: 3, reopened: true });
    expect(replayed.stderr).toContain('1 dead letter(s) moved back to pending');
    await waitUntil('the replayed event accepted', async () => rx.accepted().length === events.length, 10_000, 20);
    expect(rx.accepted().at(-1)!.eventId).toBe(poisoned);
    await publisher.stop();

    expect((await deliveryRows(rx.url)).every((d) => d.delivered && d.attempts >= 1)).toBe(true);
    const { rows: after } = await pool.query('SELECT replayed_at IS NOT NULL AS replayed FROM outbox_dead_letters WHERE endpoint = $1', [rx.url]);
    expect(after).toEqual([{ replayed: true }]);
    expect(await outboxLag(pool, { endpoints: [rx.url] })).toMatchObject({ dead_letters: 0 });
    // Nothing left to replay.
    const again = await replay(['--all', '--endpoint', rx.url]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('no dead letter matched');
    expect((await replay(['--event', 'not-a-uuid'])).status).toBe(2);
  });

  it('counts pending events for lag metrics until they are delivered', async () => {
    const rx = await receiver();
    const { players } = await createPlayers(ledger, 2, 100);
    // Registered with the first round; from then on pending counts this endpoint's undelivered events.
    const publisher = testPublisher(pool, [rx.url], players);
    rx.respondWith(() => 500);
    await publisher.runOnce();
    const lag = await outboxLag(pool, { endpoints: [rx.url] });
    expect(lag.pending_events).toBeGreaterThanOrEqual(2);
    expect(lag.oldest_pending_age_seconds).toBeGreaterThan(0);
    expect(lag).toMatchObject({ dead_letters: 0 });
    rx.respondWith(() => 200);
    await waitUntil('delivered', async () => {
      await publisher.runOnce();
      return rx.accepted().length === 2;
    }, 10_000, 20);
    await publisher.stop();
  });
});
