import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { depositBody, payoutBody, sleep, startReceiver, startSandbox, wallet, type Receiver, type Sandbox } from '../support/sandbox';

const waitOpts = { timeout: 3_000, interval: 10 };
const since = new Date(0).toISOString();

describe('sandbox supported methods and currencies', () => {
  let receiver: Receiver;
  let limited: Sandbox;
  let open: Sandbox;

  beforeAll(async () => {
    receiver = await startReceiver();
    limited = await startSandbox({ webhookUrl: receiver.url, supportedMethods: ['card', 'ewallet'], supportedCurrencies: ['EUR', 'GBP'] });
    open = await startSandbox({ webhookUrl: receiver.url });
  });
  afterAll(async () => {
    await limited?.close();
    await open?.close();
    await receiver?.close();
  });

  it('refuses a payout to a method it does not pay to with 422 unsupported_method, writing nothing (not even the key)', async () => {
    const key = randomUUID();
    const body = payoutBody();
    const refused = await limited.submitPayout(body, key);
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('unsupported_method');
    expect((await limited.get(`/v1/payouts?reference=${body.reference}`)).status).toBe(404);
    await sleep(100);
    expect(await limited.events(body.reference)).toEqual([]);
    expect(receiver.forReference(body.reference)).toHaveLength(0);
    // The key remembered nothing: the same key with a supported destination creates the payout afresh.
    const accepted = await limited.submitPayout({ ...body, destination: wallet('wallet-0001') }, key);
    expect(accepted.status).toBe(201);
    expect(accepted.headers.get('idempotent-replayed')).toBeNull();
    expect(accepted.body).toMatchObject({ reference: body.reference, status: 'pending', destination: { method: 'ewallet' } });
  });

  it('refuses a payout or a deposit in a currency it does not take with 422 unsupported_currency, writing nothing', async () => {
    const payout = payoutBody({ amount: { minor_units: 100, currency: 'USD' }, destination: { method: 'card', token: 'tok_4242' } });
    const refused = await limited.submitPayout(payout);
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('unsupported_currency');
    expect((await limited.get(`/v1/payouts?reference=${payout.reference}`)).status).toBe(404);

    // A payout wrong on both counts is refused for its method first.
    const both = await limited.submitPayout(payoutBody({ amount: { minor_units: 100, currency: 'USD' } }));
    expect([both.status, both.body.error.code]).toEqual([422, 'unsupported_method']);

    const deposit = depositBody({ amount: { minor_units: 100, currency: 'USD' } });
    const refusedDeposit = await limited.submitDeposit(deposit);
    expect(refusedDeposit.status).toBe(422);
    expect(refusedDeposit.body.error.code).toBe('unsupported_currency');
    expect((await limited.get(`/v1/deposits?reference=${deposit.reference}`)).status).toBe(404);
    await sleep(100);
    expect(await limited.events(payout.reference)).toEqual([]);
    expect(await limited.events(deposit.reference)).toEqual([]);

    expect((await limited.submitDeposit(depositBody({ amount: { minor_units: 100, currency: 'GBP' } }))).status).toBe(201);
  });

  it('takes anything when unrestricted, and /health shows what each instance takes', async () => {
    expect((await open.submitPayout(payoutBody({ amount: { minor_units: 100, currency: 'JPY' } }))).status).toBe(201);
    expect((await limited.get('/health')).body).toEqual({ status: 'ok', service: 'sandbox-aggregator', methods: ['card', 'ewallet'], currencies: ['EUR', 'GBP'] });
    expect((await open.get('/health')).body).toEqual({ status: 'ok', service: 'sandbox-aggregator', methods: ['bank_transfer', 'card', 'ewallet'], currencies: '*' });
  });
});

describe('sandbox outage simulation', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setUp(options: Omit<Parameters<typeof startSandbox>[0], 'webhookUrl'> = {}) {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sandbox = await startSandbox({ webhookUrl: receiver.url, ...options });
    cleanups.push(() => sandbox.close());
    const outage = (body: Record<string, unknown>) => sandbox.call('POST', '/sandbox/outage', body);
    return { receiver, sandbox, outage };
  }

  it('error: every provider API call answers 503 outage at once and writes nothing; controls keep working; off restores it', async () => {
    const { sandbox, outage } = await setUp();
    const before = payoutBody({ destination: wallet('sandbox:stay_pending') });
    const existing = await sandbox.submitPayout(before);
    expect(existing.status).toBe(201);

    const on = await outage({ mode: 'error' });
    expect(on.status).toBe(200);
    expect(on.body).toEqual({ mode: 'error', started_at: expect.any(String) });
    expect(await sandbox.get('/sandbox/outage')).toMatchObject({ status: 200, body: on.body });

    const key = randomUUID();
    const body = payoutBody();
    const deposit = depositBody();
    const started = Date.now();
    const answers = [
      await sandbox.submitPayout(body, key),
      await sandbox.get(`/v1/payouts/${existing.body.id}`),
      await sandbox.get(`/v1/payouts?reference=${before.reference}`),
      await sandbox.submitDeposit(deposit),
      await sandbox.get(`/v1/reports/settlements?since=${since}`),
      await sandbox.get('/v1/no-such-route'),
    ];
    expect(Date.now() - started).toBeLessThan(1_000);
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.body.error.code).toBe('outage');
    }
    const health = await sandbox.get('/health');
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'outage', outage: 'error' });
    // The control routes still answer, so a test can script and end the outage.
    expect((await sandbox.setScenario(before.reference, { scenario: 'stay_pending' })).status).toBe(200);
    expect((await sandbox.call('GET', `/sandbox/events?reference=${before.reference}`)).status).toBe(200);

    const off = await outage({ mode: 'off' });
    expect(off.body).toEqual({ mode: 'off' });
    expect((await sandbox.get('/sandbox/outage')).body).toEqual({ mode: 'off' });
    expect((await sandbox.get('/health')).status).toBe(200);
    expect((await sandbox.get(`/v1/payouts?reference=${body.reference}`)).status).toBe(404);
    expect((await sandbox.get(`/v1/deposits?reference=${deposit.reference}`)).status).toBe(404);
    expect((await sandbox.get(`/v1/payouts/${existing.body.id}`)).body.status).toBe('pending');
    // The refused submission left nothing under its key either: the retry is a fresh 201.
    const retry = await sandbox.submitPayout(body, key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
  });

  it('an outage with duration_ms ends by itself', async () => {
    const { sandbox, outage } = await setUp();
    const on = await outage({ mode: 'error', duration_ms: 300 });
    expect(on.body.mode).toBe('error');
    expect(Date.parse(on.body.ends_at) - Date.parse(on.body.started_at)).toBe(300);
    const started = Date.now();
    expect((await sandbox.submitPayout(payoutBody())).status).toBe(503);
    await vi.waitFor(async () => expect((await sandbox.get('/sandbox/outage')).body).toEqual({ mode: 'off' }), waitOpts);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect((await sandbox.submitPayout(payoutBody())).status).toBe(201);
    expect((await sandbox.get('/health')).status).toBe(200);
  });

  it('refuses a malformed outage command with 400', async () => {
    const { outage } = await setUp();
    for (const body of [{ mode: 'down' }, { mode: 'off', duration_ms: 10 }, { mode: 'error', duration_ms: 0 }, { mode: 'error', extra: 1 }, {}]) {
      const res = await outage(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
  });

  it('timeout: a client with a 2 s timeout times out, nothing is written, and the controls answer meanwhile', async () => {
    const { sandbox, outage } = await setUp();
    expect((await outage({ mode: 'timeout' })).body.mode).toBe('timeout');
    const body = payoutBody();
    const started = Date.now();
    const submission = sandbox.submitPayout(body, randomUUID(), AbortSignal.timeout(2_000)).catch((err: unknown) => err);
    const state = await sandbox.get('/sandbox/outage');
    expect(state.body.mode).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(1_000);
    const failure = await submission;
    expect(failure).toBeInstanceOf(DOMException);
    expect((failure as DOMException).name).toBe('TimeoutError');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_990);
    expect((await outage({ mode: 'off' })).body).toEqual({ mode: 'off' });
    expect((await sandbox.get(`/v1/payouts?reference=${body.reference}`)).status).toBe(404);
  });

  it('timeout: a held request is answered 503 outage once the hold is over', async () => {
    const { sandbox, outage } = await setUp({ outageHoldMs: 300 });
    await outage({ mode: 'timeout' });
    const started = Date.now();
    const res = await sandbox.get('/v1/payouts?reference=anything');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('outage');
  });

  it('webhooks of a payout accepted before the outage are held back while it lasts and sent once it is off', async () => {
    const { receiver, sandbox, outage } = await setUp();
    const body = payoutBody();
    await sandbox.setScenario(body.reference, { scenario: 'settle', callback_delay_ms: 150 });
    const created = await sandbox.submitPayout(body);
    expect(created.status).toBe(201);
    await outage({ mode: 'error' });
    await sleep(400);
    expect(receiver.forReference(body.reference)).toHaveLength(0);
    // The payout settled inside the provider; its delivery is due but not attempted.
    const held = await sandbox.events(body.reference);
    expect(held.map((d) => [d.type, d.state, d.attempts.length])).toEqual([['payout.settled', 'scheduled', 0]]);

    const offAt = Date.now();
    await outage({ mode: 'off' });
    await vi.waitFor(() => expect(receiver.forReference(body.reference)).toHaveLength(1), waitOpts);
    expect(receiver.forReference(body.reference)[0]!.event).toMatchObject({ type: 'payout.settled', data: { object: { id: created.body.id, status: 'settled' } } });
    const [delivery] = await sandbox.events(body.reference);
    expect(delivery.state).toBe('delivered');
    expect(delivery.attempts).toHaveLength(1);
    expect(Date.parse(delivery.attempts[0].at)).toBeGreaterThanOrEqual(offAt - 5);
  });

  it('webhooks held back by an outage with duration_ms go out when it runs out, with no request to wake it', async () => {
    const { receiver, sandbox, outage } = await setUp();
    const body = payoutBody();
    await sandbox.setScenario(body.reference, { scenario: 'settle', callback_delay_ms: 150 });
    expect((await sandbox.submitPayout(body)).status).toBe(201);
    const on = await outage({ mode: 'timeout', duration_ms: 400 });
    await vi.waitFor(() => expect(receiver.forReference(body.reference)).toHaveLength(1), waitOpts);
    const [delivery] = await sandbox.events(body.reference);
    expect(delivery.attempts).toHaveLength(1);
    expect(Date.parse(delivery.attempts[0].at)).toBeGreaterThanOrEqual(Date.parse(on.body.ends_at) - 5);
  });
});

describe('sandbox accept_then_error scenario', () => {
  let receiver: Receiver;
  let sandbox: Sandbox;

  beforeAll(async () => {
    receiver = await startReceiver();
    sandbox = await startSandbox({ webhookUrl: receiver.url });
  });
  afterAll(async () => {
    await sandbox?.close();
    await receiver?.close();
  });

  const byReference = (reference: string) => sandbox.get(`/v1/payouts?reference=${reference}`);

  it('answers 500 internal_error on every submission, while the payout exists, settles and is announced', async () => {
    const key = randomUUID();
    const body = payoutBody({ destination: { method: 'card', token: 'sandbox:accept_then_error' } });
    const first = await sandbox.submitPayout(body, key);
    expect(first.status).toBe(500);
    expect(first.body.error.code).toBe('internal_error');
    const record = await byReference(body.reference);
    expect(record.status).toBe(200);
    expect(record.body).toMatchObject({ reference: body.reference, amount: body.amount });

    for (let i = 0; i < 3; i += 1) {
      const repeat = await sandbox.submitPayout(body, key);
      expect(repeat.status).toBe(500);
      expect(repeat.body.error.code).toBe('internal_error');
      expect(repeat.headers.get('idempotent-replayed')).toBeNull();
    }
    // Another key with the same reference too.
    expect((await sandbox.submitPayout(body)).status).toBe(500);

    await vi.waitFor(() => expect(receiver.forReference(body.reference)).toHaveLength(1), waitOpts);
    expect(receiver.forReference(body.reference)[0]!.event).toMatchObject({ type: 'payout.settled', data: { object: { id: record.body.id, status: 'settled' } } });
    expect((await byReference(body.reference)).body).toMatchObject({ id: record.body.id, status: 'settled' });
    expect((await sandbox.submitPayout(body, key)).status).toBe(500);
    expect((await sandbox.events(body.reference)).map((d) => d.type)).toEqual(['payout.settled']);
  });

  it('sandbox:accept_then_error:422 answers 422 invalid_request, and the payout settles all the same', async () => {
    const key = randomUUID();
    const body = payoutBody({ destination: wallet('sandbox:accept_then_error:422') });
    const first = await sandbox.submitPayout(body, key);
    const second = await sandbox.submitPayout(body, key);
    expect([first.status, second.status]).toEqual([422, 422]);
    expect(first.body.error.code).toBe('invalid_request');
    expect(second.body.error.code).toBe('invalid_request');
    const record = await byReference(body.reference);
    expect(record.status).toBe(200);
    await vi.waitFor(async () => expect((await byReference(body.reference)).body.status).toBe('settled'), waitOpts);
    await vi.waitFor(() => expect(receiver.forReference(body.reference).map((h) => h.event.type)).toEqual(['payout.settled']), waitOpts);
  });

  it('error_attempts: 1 (registered for a bank_transfer reference): the error once, then the idempotent replay', async () => {
    const key = randomUUID();
    const body = payoutBody();
    const put = await sandbox.setScenario(body.reference, { scenario: 'accept_then_error', error_attempts: 1 });
    expect(put.status).toBe(200);
    expect(put.body.applied_to).toEqual([]);
    const first = await sandbox.submitPayout(body, key);
    expect(first.status).toBe(500);
    expect(first.body.error.code).toBe('internal_error');
    const record = await byReference(body.reference);
    expect(record.status).toBe(200);

    const second = await sandbox.submitPayout(body, key);
    expect(second.status).toBe(201);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(second.body).toMatchObject({ id: record.body.id, reference: body.reference, status: 'pending' });
    const third = await sandbox.submitPayout(body, key);
    expect([third.status, third.body.id, third.headers.get('idempotent-replayed')]).toEqual([201, record.body.id, 'true']);
    // Another key: the usual duplicate reference.
    const other = await sandbox.submitPayout(body);
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({ code: 'duplicate_reference', existing_id: record.body.id });
    await vi.waitFor(() => expect(receiver.forReference(body.reference).map((h) => h.event.type)).toEqual(['payout.settled']), waitOpts);
  });

  it('status and error_attempts through metadata: 503 twice (two keys counted together), then the usual answers', async () => {
    const key = randomUUID();
    const body = payoutBody({ metadata: { sandbox_scenario: { scenario: 'accept_then_error', status: 503, error_attempts: 2 } } });
    const first = await sandbox.submitPayout(body, key);
    const otherKey = await sandbox.submitPayout(body);
    expect([first.status, otherKey.status]).toEqual([503, 503]);
    expect(first.body.error.code).toBe('internal_error');
    const record = await byReference(body.reference);
    const replay = await sandbox.submitPayout(body, key);
    expect([replay.status, replay.body.id, replay.headers.get('idempotent-replayed')]).toEqual([201, record.body.id, 'true']);
  });

  it('refuses a status outside 4xx/5xx, and deposits', async () => {
    for (const destination of [wallet('sandbox:accept_then_error:200'), wallet('sandbox:accept_then_error:600'), wallet('sandbox:accept_then_error:soon')]) {
      const body = payoutBody({ destination });
      const res = await sandbox.submitPayout(body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_scenario');
      expect((await byReference(body.reference)).status).toBe(404);
    }
    const control = await sandbox.setScenario(`ref-${randomUUID()}`, { scenario: 'accept_then_error', status: 302 });
    expect([control.status, control.body.error.code]).toEqual([400, 'invalid_request']);
    const deposit = await sandbox.submitDeposit(depositBody({ metadata: { sandbox_scenario: 'accept_then_error' } }));
    expect([deposit.status, deposit.body.error.code]).toEqual([400, 'invalid_scenario']);
  });
});
