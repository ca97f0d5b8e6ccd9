import { execFile } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLedger, type Ledger } from '../../ledger';
import { backoffMs, outboxLag } from '../../apps/outbox-publisher/publisher';
import { repoRoot } from '../../lib/config';
import type { Pool } from '../../lib/db';
import { sleep, waitUntil } from '../../lib/wait';
import { expectInvariantsHold } from '../support/ledger';
import { testPool } from '../support';
import { createPlayers, retireTestEndpoints, firstArrivalOrder, orderByAccount, outboxEventsOf, sagaLikeRun, stoppedAfterEach, testPublisher } from './helpers';

let pool: Pool;
let ledger: Ledger;
const { receiver, started } = stoppedAfterEach();

beforeAll(() => {
  pool = testPool();
  ledger = createLedger(pool);
});
afterEach(async () => {
  await expectInvariantsHold(pool);
});
afterAll(async () => {
  if (pool) await retireTestEndpoints(pool);
  await pool?.end();
});

/** Delivery rows of an endpoint (by id). */
async function deliveryRows(endpointId: string) {
  const { rows } = await pool.query<{ event_id: string; attempts: number; delivered: boolean; dead: boolean; last_error: string | null; claimed_by: number | null }>(
    `SELECT e.event_id::text, d.attempts, d.delivered_at IS NOT NULL AS delivered, d.dead_at IS NOT NULL AS dead, d.last_error, d.claimed_by
       FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_seq JOIN outbox_endpoints p ON p.endpoint = d.endpoint
      WHERE p.name = $1 ORDER BY d.event_seq`,
    [endpointId],
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
  it('delivers every event once, as a Standard Webhook of the stored bytes (webhook-id = event id), in per-account order', async () => {
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
      expect(r.headers['webhook-id']).toBe(stored.event_id);
      expect(Math.abs(Number(r.headers['webhook-timestamp']) - r.at / 1000)).toBeLessThan(5);
      expect(r.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+={0,2}$/); // one secret: one signature
      expect(r.headers['x-signature']).toBeUndefined(); // the former scheme is gone
      expect(r.signatureOk).toBe(true);
    }
    expect(firstArrivalOrder(rx.received)).toEqual(orderByAccount(events));
    expect(new Set(events.map((e) => e.event_type))).toEqual(new Set(['ledger.transfer_posted', 'payout.held', 'payout.settled', 'payout.released', 'payout.refunded', 'deposit.credited']));
    await waitUntil('deliveries recorded', async () => (await deliveryRows(rx.id)).every((d) => d.delivered), 5_000, 20);
    expect((await deliveryRows(rx.id)).map((d) => d.attempts)).toEqual(events.map(() => 1));
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
    started(testPublisher(pool, [rx.url], players, { backoffBaseMs: 100 }));
    await waitUntil('accepted', async () => rx.accepted().length === 1, 10_000, 10);

    const times = rx.received.map((r) => r.at);
    expect(rx.received.map((r) => [r.eventId, r.status])).toEqual([
      [event!.event_id, 500],
      [event!.event_id, 500],
      [event!.event_id, 500],
      [event!.event_id, 200],
    ]);
    // Gaps of at least base · 2^(n−1): 100, 200, 400 ms (a few ms of clock slack between database and test).
    for (let n = 1; n <= 3; n++) expect(times[n]! - times[n - 1]!).toBeGreaterThanOrEqual(backoffMs(100, n, 5_000) - 15);
    expect(new Set(rx.received.map((r) => r.body)).size).toBe(1); // the same bytes every time
    expect(new Set(rx.received.map((r) => r.headers['webhook-id'])).size).toBe(1); // the same webhook-id every time
    await waitUntil('recorded', async () => (await deliveryRows(rx.id))[0]?.delivered === true, 5_000, 20);
    expect(await deliveryRows(rx.id)).toEqual([{ event_id: event!.event_id, attempts: 4, delivered: true, dead: false, last_error: expect.stringContaining('HTTP 500'), claimed_by: null }]);
    expect(backoffMs(1_000, 20, 3_600_000)).toBe(3_600_000);
  });

  it("dead-letters an event at the retry window; the account's later events wait behind it until the command replays it, then follow in order", async () => {
    const { players, clearing } = await createPlayers(ledger, 1, 1_000);
    const player = players[0]!;
    await sagaLikeRun(ledger, player, clearing, 1); // funding + 4 more events
    const events = await outboxEventsOf(pool, players);
    const poisoned = events[0]!.event_id;
    const rx = await receiver();
    let refuse = true;
    rx.respondWith((r) => (refuse && r.eventId === poisoned ? 503 : 200));
    const publisher = started(testPublisher(pool, [rx.url], players, { retryWindowMs: 400, backoffBaseMs: 30, backoffMaxMs: 200 }));
    await waitUntil('dead-lettered', async () => (await deliveryRows(rx.id))[0]?.dead === true, 10_000, 20);
    await sleep(500); // rounds go on: nothing else of the account may go out

    // Order kept: the account's later events were held, never sent.
    expect(rx.received.every((r) => r.eventId === poisoned && r.status === 503)).toBe(true);
    const { rows: dead } = await pool.query(
      'SELECT l.event_id::text, l.attempts, l.last_error, l.replayed_at, l.skipped_at FROM outbox_dead_letters l JOIN outbox_endpoints p ON p.endpoint = l.endpoint WHERE p.name = $1',
      [rx.id],
    );
    expect(dead).toEqual([{ event_id: poisoned, attempts: rx.received.length, last_error: expect.stringContaining('HTTP 503'), replayed_at: null, skipped_at: null }]);
    expect(await outboxLag(pool, { endpoints: [rx.id] })).toMatchObject({ dead_letters: 1, held_events: events.length - 1 });

    // The operator fixes the endpoint and replays the dead letter with the command.
    refuse = false;
    const replayed = await replay(['--event', poisoned, '--endpoint', rx.id, '--reason', 'receiver fixed, ticket OPS-7']);
    expect(replayed.status, replayed.stderr).toBe(0);
    expect(JSON.parse(replayed.stdout.trim())).toMatchObject({ eventId: poisoned, endpoint: rx.id, state: 'replayed', resolvedBy: expect.stringMatching(/^cli:/), reopened: true });
    expect(replayed.stderr).toContain('1 dead letter(s) moved back to pending');
    await waitUntil('every event accepted', async () => rx.accepted().length === events.length, 10_000, 20);
    await publisher.stop();
    // The replayed event first, then the held ones, in outbox order, each once.
    expect(rx.accepted().map((r) => r.eventId)).toEqual(events.map((e) => e.event_id));
    expect(firstArrivalOrder(rx.received)).toEqual(orderByAccount(events));

    expect((await deliveryRows(rx.id)).every((d) => d.delivered && d.attempts >= 1)).toBe(true);
    expect(await outboxLag(pool, { endpoints: [rx.id] })).toMatchObject({ dead_letters: 0, held_events: 0 });
    const { rows: audit } = await pool.query("SELECT actor, action, reason, outcome FROM staff_audit_log WHERE target = $1", [`outbox-dead-letter:${rx.id}:${events[0]!.id}`]);
    expect(audit).toEqual([{ actor: expect.stringMatching(/^cli:/), action: 'outbox:replay', reason: 'receiver fixed, ticket OPS-7', outcome: 'applied' }]);
    // Nothing left to replay.
    const again = await replay(['--all', '--endpoint', rx.id]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('no open dead letter matched');
    expect((await replay(['--event', 'not-a-uuid'])).status).toBe(2);
    expect((await replay(['--skip', '--event', poisoned, '--endpoint', rx.id])).status).toBe(2); // a skip needs a reason
  });

  it('counts pending events for lag metrics until they are delivered', async () => {
    const rx = await receiver();
    const { players } = await createPlayers(ledger, 2, 100);
    // Registered with the first round; from then on pending counts this endpoint's undelivered events.
    const publisher = testPublisher(pool, [rx.url], players);
    rx.respondWith(() => 500);
    await publisher.runOnce();
    const lag = await outboxLag(pool, { endpoints: [rx.id] });
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
