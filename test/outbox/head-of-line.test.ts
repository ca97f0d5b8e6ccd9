import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, type Ledger } from '../../ledger';
import type { Pool } from '../../lib/db';
import { waitUntil } from '../../lib/wait';
import { expectInvariantsHold } from '../support/ledger';
import { testPool } from '../support';
import { createPlayers, retireTestEndpoints, firstArrivalOrder, orderByAccount, outboxEventsOf, sagaLikeRun, startReceiver, testPublisher } from './helpers';

let pool: Pool;
let ledger: Ledger;

beforeAll(() => {
  pool = testPool();
  ledger = createLedger(pool);
});
afterAll(async () => {
  await retireTestEndpoints(pool);
  await expectInvariantsHold(pool);
  await pool?.end();
});

describe('per-account ordering with head-of-line blocking', () => {
  it("account A's event 2 waits while its event 1 is retried; account B's events flow meanwhile", async () => {
    const { players, clearing } = await createPlayers(ledger, 2, 1_000);
    const [a, b] = players as [string, string];
    await sagaLikeRun(ledger, a, clearing, 2);
    await sagaLikeRun(ledger, b, clearing, 2);
    const events = await outboxEventsOf(pool, players);
    const ofA = events.filter((e) => e.account_id === a).map((e) => e.event_id);
    const ofB = events.filter((e) => e.account_id === b).map((e) => e.event_id);
    const rx = await startReceiver();
    // A's first event is refused 4 times (backoff 80 + 160 + 320 + 640 ms), everything else accepted at once.
    rx.respondWith((r, nth) => (r.eventId === ofA[0] && nth <= 4 ? 500 : 200));
    const publisher = testPublisher(pool, [rx.url], players, { backoffBaseMs: 80 });
    publisher.start();
    try {
      await waitUntil('all events accepted', async () => rx.accepted().length === events.length, 20_000, 20);
    } finally {
      await publisher.stop();
      await rx.close();
    }

    const firstAccepted = (id: string) => rx.received.find((r) => r.eventId === id && r.status === 200)!;
    const a1 = firstAccepted(ofA[0]!);
    // Nothing else of A reached the endpoint before A's first event was accepted...
    const beforeA1 = rx.received.slice(0, a1.index);
    expect(beforeA1.filter((r) => r.accountId === a).every((r) => r.eventId === ofA[0])).toBe(true);
    expect(beforeA1.filter((r) => r.eventId === ofA[0]).map((r) => r.status)).toEqual([500, 500, 500, 500]);
    // ...while all of B's events were delivered during A's retries.
    expect(beforeA1.filter((r) => r.accountId === b).map((r) => r.eventId)).toEqual(ofB);
    expect(firstAccepted(ofA[1]!).index).toBeGreaterThan(a1.index);
    expect(firstArrivalOrder(rx.received)).toEqual(orderByAccount(events));
    expect(rx.accepted()).toHaveLength(events.length); // each accepted exactly once
  });
});
