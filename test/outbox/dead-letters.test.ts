import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, type Ledger } from '../../ledger';
import { backoffMs, outboxLag } from '../../apps/outbox-publisher/publisher';
import { sleep, waitUntil } from '../../lib/wait';
import { startTestApi, type TestApi } from '../api/support';
import { expectInvariantsHold } from '../support/ledger';
import { uniqueId } from '../support';
import { createPlayers, retireTestEndpoints, endpointEntry, firstArrivalOrder, orderByAccount, outboxEventsOf, sagaLikeRun, stoppedAfterEach, testPublisher } from './helpers';

/**
 * Retry window and dead letters: a failing endpoint is retried with growing delays for the window, then the
 * event is dead-lettered; the account's later events wait behind it (order kept) while other accounts' flow,
 * until staff replay it (it goes, then the rest) or skip it (the rest go) through the HTTP API, audited.
 */
let api: TestApi;
let ledger: Ledger;
let staff: string;
const { receiver, started } = stoppedAfterEach();

beforeAll(async () => {
  api = await startTestApi();
  ledger = createLedger(api.pool);
  staff = `Bearer ${await api.token('dana', 'staff')}`;
});
afterAll(async () => {
  if (api) await retireTestEndpoints(api.pool);
  if (api) await expectInvariantsHold(api.pool);
  await api?.close();
});

/** As staff by default; `null`: without a token. */
async function ops(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown, authorization: string | null = staff) {
  const res = await api.app.inject({
    method,
    url: `/v1/ops/outbox${url}`,
    headers: { ...(authorization ? { authorization } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    payload: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.statusCode, contentType: String(res.headers['content-type']), json: res.json() as any };
}

async function deliveryOf(endpointId: string, eventId: string) {
  const { rows } = await api.pool.query<{ attempts: number; first_failed_at: Date | null; dead_at: Date | null; skipped_at: Date | null; delivered_at: Date | null }>(
    `SELECT d.attempts, d.first_failed_at, d.dead_at, d.skipped_at, d.delivered_at FROM outbox_deliveries d
       JOIN outbox_endpoints p ON p.endpoint = d.endpoint JOIN outbox_events e ON e.id = d.event_seq
      WHERE p.name = $1 AND e.event_id = $2`,
    [endpointId, eventId],
  );
  return rows[0];
}

async function auditOf(target: string) {
  const { rows } = await api.pool.query('SELECT actor, action, reason, outcome, detail FROM staff_audit_log WHERE target = $1 ORDER BY id', [target]);
  return rows;
}

describe('outbox retry window and dead letters', () => {
  it('a failing endpoint is retried with growing delays, capped, and dead-lettered at the retry window; nothing is sent after', async () => {
    const { players } = await createPlayers(ledger, 1, 100);
    const [event] = await outboxEventsOf(api.pool, players);
    const rx = await receiver();
    rx.respondWith(() => 500);
    const windowMs = 1_500;
    started(testPublisher(api.pool, [rx.url], players, { retryWindowMs: windowMs, backoffBaseMs: 100, backoffMaxMs: 400 }));
    await waitUntil('dead-lettered', async () => (await deliveryOf(rx.id, event!.event_id))?.dead_at != null, 10_000, 20);
    const count = rx.received.length;
    await sleep(600);
    expect(rx.received).toHaveLength(count); // given up: no attempt after the dead letter

    const gaps = rx.received.slice(1).map((r, i) => r.at - rx.received[i]!.at);
    // Growing delays 100, 200, 400 ms, then capped at 400 (a few ms of clock slack between database and test)...
    for (let n = 1; n <= 3; n++) expect(gaps[n - 1]!).toBeGreaterThanOrEqual(backoffMs(100, n, 400) - 15);
    expect(Math.max(...gaps)).toBeLessThan(400 + 150);
    // ...for the window: the last attempt at its end, none before it gave up.
    expect(rx.received.at(-1)!.at - rx.received[0]!.at).toBeGreaterThanOrEqual(windowMs - 30);
    const delivery = (await deliveryOf(rx.id, event!.event_id))!;
    expect(delivery.attempts).toBe(count);
    const deadAfterMs = delivery.dead_at!.getTime() - delivery.first_failed_at!.getTime();
    expect(deadAfterMs).toBeGreaterThanOrEqual(windowMs);
    expect(deadAfterMs).toBeLessThan(windowMs + 400);
    expect(count).toBeGreaterThanOrEqual(5); // 0, 100, 300, 700, 1100, 1500 ms
    const listed = await ops('GET', `/dead-letters?endpoint=${rx.id}`);
    expect(listed.json.items).toEqual([
      expect.objectContaining({ endpoint: rx.id, event_id: event!.event_id, account_id: players[0], attempts: count, state: 'open', held_events: 0, last_error: expect.stringContaining('HTTP 500') }),
    ]);
  });

  it("an account's later events wait behind its dead letter while others flow, until staff replay or skip it; exact over rounds with three publishers", async () => {
    const ROUNDS = 4;
    for (let round = 0; round < ROUNDS; round++) {
      const action = round % 2 === 0 ? 'replay' : 'skip';
      const { players, clearing } = await createPlayers(ledger, 3, 10_000);
      const [a, b, c] = players as [string, string, string];
      await Promise.all(players.map((p) => sagaLikeRun(ledger, p, clearing, 2)));
      const before = await outboxEventsOf(api.pool, players);
      const ofA = before.filter((e) => e.account_id === a);
      const poisoned = ofA[2]!; // the funding event and the first hold go, then this one fails for good
      const rx = await receiver();
      let refuse = true;
      rx.respondWith((r) => (refuse && r.eventId === poisoned.event_id ? 503 : { status: 200, delayMs: 1 }));
      const entry = endpointEntry(rx.url);
      const publishers = [0, 1, 2].map(() => testPublisher(api.pool, [entry], players, { batchSize: 2, retryWindowMs: 300, backoffBaseMs: 20, backoffMaxMs: 100, concurrency: 2 }));
      const stops = publishers.map((p) => started(p));
      await waitUntil(`round ${round}: dead-lettered`, async () => (await deliveryOf(rx.id, poisoned.event_id))?.dead_at != null, 10_000, 20);
      // More of everyone's events after the dead letter: B's and C's go out, A's wait.
      await Promise.all(players.map((p) => sagaLikeRun(ledger, p, clearing, 1)));
      const events = await outboxEventsOf(api.pool, players);
      const others = events.filter((e) => e.account_id !== a).map((e) => e.event_id);
      await waitUntil(`round ${round}: the other accounts' events`, async () => others.every((id) => rx.accepted().some((r) => r.eventId === id)), 15_000, 20);
      await sleep(300);

      const idsOfA = events.filter((e) => e.account_id === a).map((e) => e.event_id);
      const upTo = idsOfA.indexOf(poisoned.event_id);
      const held = idsOfA.slice(upTo + 1);
      const acceptedOfA = () => rx.accepted().filter((r) => r.accountId === a).map((r) => r.eventId);
      expect(acceptedOfA()).toEqual(idsOfA.slice(0, upTo)); // before the dead letter: delivered; after: nothing
      expect(rx.received.filter((r) => held.includes(r.eventId))).toEqual([]);
      for (const account of [b, c]) expect(rx.accepted().filter((r) => r.accountId === account).map((r) => r.eventId)).toEqual(orderByAccount(events).get(account));
      const listed = await ops('GET', `/dead-letters?endpoint=${rx.id}&account_id=${a}`);
      expect(listed.status).toBe(200);
      expect(listed.json.items).toEqual([expect.objectContaining({ endpoint: rx.id, event_seq: poisoned.id, event_id: poisoned.event_id, state: 'open', held_events: held.length })]);
      expect(await outboxLag(api.pool, { endpoints: [rx.id] })).toMatchObject({ dead_letters: 1, held_events: held.length });

      // Staff resolve it through the API.
      refuse = false;
      const reason = `${action} in round ${round}, ticket OPS-${round}`;
      const resolved = await ops('POST', `/dead-letters/${rx.id}/${poisoned.id}/${action}`, { reason });
      expect(resolved.status).toBe(200);
      expect(resolved.json).toMatchObject({ endpoint: rx.id, event_seq: poisoned.id, state: action === 'replay' ? 'replayed' : 'skipped', resolved_by: 'staff:dana', resolution_reason: reason });
      const expectedOfA = action === 'replay' ? idsOfA : idsOfA.filter((id) => id !== poisoned.event_id);
      await waitUntil(`round ${round}: A's events after the ${action}`, async () => acceptedOfA().length === expectedOfA.length, 15_000, 20);
      await Promise.all(stops.map((p) => p.stop()));

      // Exact: each accepted once, in outbox order; a skipped event never accepted.
      expect(acceptedOfA()).toEqual(expectedOfA);
      expect(rx.accepted()).toHaveLength(others.length + expectedOfA.length);
      expect(firstArrivalOrder(rx.accepted()).get(a)).toEqual(expectedOfA);
      const delivery = (await deliveryOf(rx.id, poisoned.event_id))!;
      expect(action === 'replay' ? delivery.delivered_at : delivery.skipped_at).not.toBeNull();
      expect(await outboxLag(api.pool, { endpoints: [rx.id] })).toMatchObject({ dead_letters: 0, held_events: 0 });
      expect(await auditOf(`outbox-dead-letter:${rx.id}:${poisoned.id}`)).toMatchObject([{ actor: 'staff:dana', action: `outbox:${action}`, reason, outcome: 'applied' }]);

      // A second resolution is refused (and audited as refused).
      const again = await ops('POST', `/dead-letters/${rx.id}/${poisoned.id}/${action === 'replay' ? 'skip' : 'replay'}`, { reason: 'second thoughts' });
      expect(again).toMatchObject({ status: 409, json: { code: 'DEAD_LETTER_RESOLVED' } });
      expect((await auditOf(`outbox-dead-letter:${rx.id}:${poisoned.id}`)).map((r) => r.outcome)).toEqual(['applied', 'refused']);
      expect((await ops('GET', `/dead-letters?endpoint=${rx.id}&state=all`)).json.items).toEqual([expect.objectContaining({ state: action === 'replay' ? 'replayed' : 'skipped', held_events: 0 })]);
    }
  });

  it('players, services and callers without a token are refused with problem+json; bad input is a 400; unknown is a 404', async () => {
    const player = `Bearer ${await api.token(uniqueId('player'), 'player')}`;
    const service = `Bearer ${await api.token('backend', 'service')}`;
    const calls: [method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown][] = [
      ['GET', '/dead-letters'],
      ['POST', '/dead-letters/some-endpoint/1/replay', { reason: 'try it' }],
      ['POST', '/dead-letters/some-endpoint/1/skip', { reason: 'try it' }],
      ['GET', '/endpoints'],
      ['PUT', '/endpoints/mine', { url: 'https://attacker.example/hook', reason: 'try it' }],
      ['POST', '/endpoints/mine/rotate-secret', { reason: 'try it' }],
    ];
    for (const [method, url, body] of calls) {
      for (const [authorization, status, code] of [[player, 403, 'FORBIDDEN'], [service, 403, 'FORBIDDEN'], [null, 401, 'UNAUTHENTICATED']] as const) {
        const refused = await ops(method, url, body, authorization);
        expect(refused, `${method} ${url} as ${authorization ? authorization.slice(0, 12) : 'nobody'}`).toMatchObject({ status, json: { code } });
        expect(refused.contentType).toMatch(/^application\/problem\+json/);
      }
    }
    expect((await api.pool.query("SELECT 1 FROM outbox_endpoints WHERE name = 'mine'")).rowCount).toBe(0);

    expect(await ops('POST', '/dead-letters/no-such-endpoint/123/skip', { reason: 'cleanup' })).toMatchObject({ status: 404, json: { code: 'NOT_FOUND' } });
    expect(await ops('POST', '/dead-letters/no-such-endpoint/123/skip', {})).toMatchObject({ status: 400, json: { code: 'VALIDATION_FAILED' } });
    expect(await ops('POST', '/dead-letters/Bad%20Id/x/replay', { reason: 'cleanup' })).toMatchObject({ status: 400, json: { code: 'VALIDATION_FAILED' } });
    expect(await ops('PUT', '/endpoints/ok-id', { url: 'ftp://x.example', reason: 'new one' })).toMatchObject({ status: 400, json: { code: 'VALIDATION_FAILED' } });
    expect(await ops('PUT', '/endpoints/ok-id', { url: 'https://x.example', event_types: ['payouts*'], reason: 'new one' })).toMatchObject({ status: 400 });
    expect(await ops('GET', '/endpoints/no-such-endpoint')).toMatchObject({ status: 404, json: { code: 'NOT_FOUND' } });
    expect(await ops('POST', '/endpoints/no-such-endpoint/rotate-secret', { reason: 'rotate' })).toMatchObject({ status: 404, json: { code: 'NOT_FOUND' } });
    expect((await auditOf('outbox-endpoint:no-such-endpoint')).map((r) => [r.action, r.outcome])).toEqual([['outbox:rotate_secret', 'refused']]);
  });
});
