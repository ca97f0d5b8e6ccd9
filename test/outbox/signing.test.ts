import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, type Ledger } from '../../ledger';
import { openSecret, type EndpointRow } from '../../apps/outbox-publisher/endpoints';
import { DestinationKeyRing } from '../../lib/destination-vault';
import { loadConfig } from '../../lib/config';
import { generateSigningSecret, parseConfiguredEndpoints } from '../../lib/outbox-webhooks';
import { sleep, waitUntil } from '../../lib/wait';
import { startTestApi, type TestApi } from '../api/support';
import { expectInvariantsHold } from '../support/ledger';
import { uniqueId } from '../support';
import { createPlayers, retireTestEndpoints, endpointEntry, OUTBOX_SECRET, outboxEventsOf, sagaLikeRun, stoppedAfterEach, TEST_KEY_RING, testPublisher } from './helpers';

/**
 * Standard Webhooks signing as receivers check it (the standardwebhooks library's Webhook.verify in the test
 * receiver), secrets per endpoint and their rotation (through the staff API and through OUTBOX_ENDPOINTS),
 * event type filters, and how endpoints are configured.
 */
let api: TestApi;
let ledger: Ledger;
let staff: string;
const { receiver, started } = stoppedAfterEach();

beforeAll(async () => {
  api = await startTestApi();
  ledger = createLedger(api.pool);
  staff = `Bearer ${await api.token('erin', 'staff')}`;
});
afterAll(async () => {
  if (api) await retireTestEndpoints(api.pool);
  if (api) await expectInvariantsHold(api.pool);
  await api?.close();
});

async function ops(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const res = await api.app.inject({ method, url: `/v1/ops/outbox${url}`, headers: { authorization: staff, ...(body ? { 'content-type': 'application/json' } : {}) }, payload: body ? JSON.stringify(body) : undefined });
  return { status: res.statusCode, json: res.json() as any, text: res.body };
}

async function endpointRow(id: string): Promise<EndpointRow> {
  const { rows } = await api.pool.query<EndpointRow>('SELECT * FROM outbox_endpoints WHERE name = $1', [id]);
  return rows[0]!;
}

describe('outbox signing, secrets and filters', () => {
  it('staff create an endpoint (secret shown once), rotate its secret: old and new verify during the overlap, only the new one after', async () => {
    const { players, funding } = await createPlayers(ledger, 1, 100);
    const player = players[0]!;
    const rx = await receiver([]); // secrets learned below, from the API's answers
    const id = uniqueId('ep').slice(0, 40);

    const created = await ops('PUT', `/endpoints/${id}`, { url: rx.url, reason: 'new ledger consumer, ticket OPS-1' });
    expect(created.status).toBe(201);
    const first: string = created.json.secret;
    expect(first).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/); // 32 random bytes
    expect(created.json.endpoint).toMatchObject({ id, url: rx.url, enabled: true, event_types: [], source: 'api', secret: { fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/), previous: null } });
    // Never again: not in the listing, nor in one endpoint's answer, nor stored in the clear.
    const listed = await ops('GET', '/endpoints');
    expect(listed.json.items.find((e: { id: string }) => e.id === id)).toMatchObject({ id, pending: expect.any(Number) });
    expect(listed.text).not.toContain(first.slice(6));
    expect((await ops('GET', `/endpoints/${id}`)).text).not.toContain(first.slice(6));
    const row = await endpointRow(id);
    expect(row.secret_sealed!.includes(Buffer.from(first))).toBe(false);
    expect(openSecret(TEST_KEY_RING, row.endpoint, row.secret_key_id!, row.secret_sealed!)).toBe(first);
    expect(() => openSecret(DestinationKeyRing.parse(`${row.secret_key_id}:${Buffer.alloc(32, 9).toString('base64')}`), row.endpoint, row.secret_key_id!, row.secret_sealed!)).toThrow(/does not authenticate/);

    rx.verifyWith([first]);
    started(testPublisher(api.pool, [], players, { endpointIds: [id] }));
    await waitUntil('the first event', async () => rx.accepted().length === 1, 10_000, 20);
    expect(rx.received[0]!.verifiedWith).toEqual([true]);

    // Rotation: both secrets sign until keep_previous_until.
    const overlapMs = 2_000;
    const rotated = await ops('POST', `/endpoints/${id}/rotate-secret`, { reason: 'yearly rotation', keep_previous_until: new Date(Date.now() + overlapMs).toISOString() });
    expect(rotated.status).toBe(200);
    const second: string = rotated.json.secret;
    expect(second).not.toBe(first);
    expect(rotated.json.endpoint.secret).toMatchObject({ previous: { fingerprint: created.json.endpoint.secret.fingerprint, active: true } });
    expect(rotated.json.endpoint.secret.fingerprint).not.toBe(created.json.endpoint.secret.fingerprint);
    rx.verifyWith([first, second]);
    const during = await ledger.transfer({ idempotencyKey: uniqueId('t'), debitAccountId: funding, creditAccountId: player, amount: 1, currency: 'EUR' });
    expect(during.result).toBe('ok');
    await waitUntil('the event during the overlap', async () => rx.accepted().length === 2, 10_000, 20);
    const overlap = rx.received.at(-1)!;
    expect(overlap.verifiedWith).toEqual([true, true]); // a receiver still on the old secret and one on the new both accept
    expect(String(overlap.headers['webhook-signature']).split(' ')).toHaveLength(2);

    await sleep(overlapMs + 200);
    expect((await ops('GET', `/endpoints/${id}`)).json.endpoint.secret.previous).toMatchObject({ active: false });
    await ledger.transfer({ idempotencyKey: uniqueId('t'), debitAccountId: funding, creditAccountId: player, amount: 1, currency: 'EUR' });
    await waitUntil('the event after the overlap', async () => rx.accepted().length === 3, 10_000, 20);
    const after = rx.received.at(-1)!;
    expect(after.verifiedWith).toEqual([false, true]); // only the new secret
    expect(String(after.headers['webhook-signature']).split(' ')).toHaveLength(1);
    expect(new Set(rx.received.map((r) => r.eventId)).size).toBe(3);

    const { rows: audit } = await api.pool.query('SELECT actor, action, reason, outcome, detail FROM staff_audit_log WHERE target = $1 ORDER BY id', [`outbox-endpoint:${id}`]);
    expect(audit).toMatchObject([
      { actor: 'staff:erin', action: 'outbox:endpoint_put', reason: 'new ledger consumer, ticket OPS-1', outcome: 'applied' },
      { actor: 'staff:erin', action: 'outbox:rotate_secret', reason: 'yearly rotation', outcome: 'applied' },
    ]);
    expect(JSON.stringify(audit)).not.toContain(first.slice(6));
    expect(JSON.stringify(audit)).not.toContain(second.slice(6));
  });

  it('an endpoint gets only the event types its filter takes', async () => {
    const { players, clearing } = await createPlayers(ledger, 2, 1_000);
    await Promise.all(players.map((p) => sagaLikeRun(ledger, p, clearing, 4)));
    const events = await outboxEventsOf(api.pool, players);
    const [payouts, credits, everything] = [await receiver([OUTBOX_SECRET]), await receiver([OUTBOX_SECRET]), await receiver([OUTBOX_SECRET])];
    started(
      testPublisher(
        api.pool,
        [endpointEntry(payouts.url, { event_types: ['payout.*'] }), endpointEntry(credits.url, { event_types: ['deposit.credited', 'ledger.transfer_posted'] }), endpointEntry(everything.url)],
        players,
      ),
    );
    const want = (pred: (type: string) => boolean) => events.filter((e) => pred(e.event_type)).map((e) => e.event_id);
    const payoutIds = want((t) => t.startsWith('payout.'));
    const creditIds = want((t) => t === 'deposit.credited' || t === 'ledger.transfer_posted');
    await waitUntil(
      'every endpoint served',
      async () => payouts.accepted().length === payoutIds.length && credits.accepted().length === creditIds.length && everything.accepted().length === events.length,
      15_000,
      20,
    );
    await sleep(200); // nothing more comes
    expect(new Set(events.map((e) => e.event_type))).toEqual(new Set(['ledger.transfer_posted', 'payout.held', 'payout.settled', 'payout.released', 'payout.refunded', 'deposit.credited']));
    expect(payouts.received.map((r) => r.eventId).sort()).toEqual([...payoutIds].sort());
    expect(credits.received.map((r) => r.eventId).sort()).toEqual([...creditIds].sort());
    expect(everything.received).toHaveLength(events.length);
    expect([...payouts.received, ...credits.received, ...everything.received].every((r) => r.signatureOk)).toBe(true);
  });

  it('OUTBOX_ENDPOINTS: applied at start; an unchanged entry keeps what staff changed; a new secret in it rotates', async () => {
    const { players, funding } = await createPlayers(ledger, 1, 100);
    const player = players[0]!;
    const rx = await receiver([OUTBOX_SECRET]);
    const id = uniqueId('cfg').slice(0, 40);
    const entry = endpointEntry(rx.url, { id });
    const p1 = testPublisher(api.pool, [entry], players);
    await p1.runOnce();
    await waitUntil('funding event delivered', async () => {
      await p1.runOnce();
      return rx.accepted().length === 1;
    }, 10_000, 20);
    await p1.stop();
    expect((await ops('GET', `/endpoints/${id}`)).json.endpoint).toMatchObject({ source: 'config', enabled: true, changed_by: 'config:OUTBOX_ENDPOINTS' });

    // Staff switch it off; a publisher starting with the same entry leaves it off.
    expect((await ops('PUT', `/endpoints/${id}`, { url: rx.url, enabled: false, reason: 'receiver in maintenance' })).status).toBe(200);
    await ledger.transfer({ idempotencyKey: uniqueId('t'), debitAccountId: funding, creditAccountId: player, amount: 1, currency: 'EUR' });
    const p2 = testPublisher(api.pool, [entry], players);
    await p2.runOnce();
    await p2.runOnce();
    await p2.stop();
    expect(rx.received).toHaveLength(1);
    expect((await ops('GET', `/endpoints/${id}`)).json.endpoint).toMatchObject({ enabled: false, changed_by: 'staff:erin', pending: 0 });

    // The entry changes (a new secret, the former one dropped at once): applied, enabled again, the event written while off goes out.
    const next = generateSigningSecret();
    rx.verifyWith([OUTBOX_SECRET, next]);
    const p3 = testPublisher(api.pool, [{ ...entry, secret: next, keep_previous_until: new Date(Date.now() - 1_000).toISOString() }], players);
    await waitUntil('the event written while off', async () => {
      await p3.runOnce();
      return rx.accepted().length === 2;
    }, 10_000, 20);
    await p3.stop();
    expect(rx.received.at(-1)!.verifiedWith).toEqual([false, true]);
    expect((await ops('GET', `/endpoints/${id}`)).json.endpoint).toMatchObject({ enabled: true, changed_by: 'config:OUTBOX_ENDPOINTS', secret: { previous: { active: false } } });
  });

  it('parses OUTBOX_ENDPOINTS as JSON or bare URLs, naming the bad entry and never echoing a secret', () => {
    const secret = generateSigningSecret();
    const parsed = loadConfig({ OUTBOX_ENDPOINTS: JSON.stringify([{ id: 'ledger', url: 'https://hooks.example/l', secret, event_types: ['payout.*'] }]) }).OUTBOX_ENDPOINTS;
    expect(parsed).toEqual([{ id: 'ledger', url: 'https://hooks.example/l', secret, event_types: ['payout.*'], enabled: true, from: 'beginning' }]);
    expect(loadConfig({ OUTBOX_ENDPOINTS: 'https://a.example/x, https://b.example/y' }).OUTBOX_ENDPOINTS.map((e) => e.id)).toEqual([
      expect.stringMatching(/^url-[0-9a-f]{12}$/),
      expect.stringMatching(/^url-[0-9a-f]{12}$/),
    ]);
    expect(loadConfig({}).OUTBOX_ENDPOINTS).toEqual([]);
    const problems = (text: string) => ('problems' in parseConfiguredEndpoints(text) ? (parseConfiguredEndpoints(text) as { problems: string[] }).problems : []);
    expect(problems('https://a.example/x,ftp://b')).toEqual(['entry 2 is not an http(s) URL (give comma-separated URLs, or a JSON array of endpoints)']);
    expect(problems(JSON.stringify([{ id: 'Bad Id', url: 'https://a.example' }]))[0]).toMatch(/^entry 1 id: an endpoint id is/);
    expect(problems(JSON.stringify([{ id: 'a', url: 'https://a.example', event_types: ['payouts*'] }]))[0]).toMatch(/^entry 1 event_types\.0: an event type filter/);
    expect(problems(JSON.stringify([{ id: 'a', url: 'https://a.example' }, { id: 'a', url: 'https://b.example' }]))).toEqual(['endpoint id a appears twice']);
    expect(problems(`[{"id": "a", "secret": "${secret}" "url": "x"}]`)).toEqual([expect.stringMatching(/^not valid JSON \(at character \d+\)$/)]);
    try {
      loadConfig({ OUTBOX_ENDPOINTS: JSON.stringify([{ id: 'a', url: 'https://a.example', secret: 'whsec_c2hvcnQ=' }]) });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toMatch(/OUTBOX_ENDPOINTS: \(value not shown\) is not valid: entry 1 secret: the key of a whsec_ secret is 16 to 64 bytes/);
    }
    // OUTBOX_WEBHOOK_SECRET: whsec_ as is; an older plain value still works, as the key's bytes.
    expect(loadConfig({ OUTBOX_WEBHOOK_SECRET: secret }).OUTBOX_WEBHOOK_SECRET).toBe(secret);
    expect(loadConfig({ OUTBOX_WEBHOOK_SECRET: 'legacy-plain-secret-123' }).OUTBOX_WEBHOOK_SECRET).toBe(`whsec_${Buffer.from('legacy-plain-secret-123').toString('base64')}`);
    expect(() => loadConfig({ OUTBOX_WEBHOOK_SECRET: 'dev-only-outbox-webhook-secret', NODE_ENV: 'production' })).toThrow(/OUTBOX_WEBHOOK_SECRET: the dev default is refused in production/);
    expect(loadConfig({ OUTBOX_RETRY_WINDOW: '3d' }).OUTBOX_RETRY_WINDOW).toBe(3 * 86_400_000);
    expect(loadConfig({}).OUTBOX_RETRY_WINDOW).toBe(3 * 86_400_000);
    expect(loadConfig({ OUTBOX_RETRY_WINDOW: '1500' }).OUTBOX_RETRY_WINDOW).toBe(1500);
    expect(() => loadConfig({ OUTBOX_RETRY_WINDOW: 'a while' })).toThrow(/OUTBOX_RETRY_WINDOW/);
  });
});
