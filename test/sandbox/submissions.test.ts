import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { depositBody, payoutBody, startReceiver, startSandbox, VALID_IBAN, wallet, type Receiver, type Sandbox } from '../support/sandbox';

describe('sandbox submissions: validation and idempotency', () => {
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

  it('creates a pending payout with a masked destination', async () => {
    const body = payoutBody({ metadata: { player: 'p-1' } });
    const res = await sandbox.submitPayout(body);
    expect(res.status).toBe(201);
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    expect(res.body).toMatchObject({
      object: 'payout',
      reference: body.reference,
      status: 'pending',
      amount: body.amount,
      destination: { method: 'bank_transfer', last4: '3000' },
      metadata: { player: 'p-1' },
    });
    expect(res.body.id).toMatch(/^po_[0-9a-f]+$/);
    expect(res.body.created_at).toBe(res.body.updated_at);
    expect(JSON.stringify(res.body)).not.toContain(VALID_IBAN);

    const byId = await sandbox.get(`/v1/payouts/${res.body.id}`);
    const byReference = await sandbox.get(`/v1/payouts?reference=${encodeURIComponent(body.reference)}`);
    expect(byId.body.id).toBe(res.body.id);
    expect(byReference.body.id).toBe(res.body.id);
  });

  it('replays the same answer for the same key and body, with Idempotent-Replayed', async () => {
    const key = randomUUID();
    const body = payoutBody();
    const first = await sandbox.submitPayout(body, key);
    // Same content, different key order: still the same request.
    const reordered = { destination: body.destination, amount: { currency: 'EUR', minor_units: 12_50 }, reference: body.reference };
    const second = await sandbox.submitPayout(reordered, key);
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body).toEqual(first.body);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
  });

  it('refuses the same key with a different body and changes nothing', async () => {
    const key = randomUUID();
    const body = payoutBody();
    const first = await sandbox.submitPayout(body, key);
    const other = await sandbox.submitPayout({ ...body, amount: { minor_units: 99_99, currency: 'EUR' } }, key);
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_mismatch');
    const stored = await sandbox.get(`/v1/payouts/${first.body.id}`);
    expect(stored.body.amount).toEqual(body.amount);
  });

  it('creates exactly one payout for 20 concurrent duplicates', async () => {
    const key = randomUUID();
    const body = payoutBody();
    const answers = await Promise.all(Array.from({ length: 20 }, () => sandbox.submitPayout(body, key)));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(201));
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') !== 'true')).toHaveLength(1);
    // One payout means one settlement and one webhook.
    await vi.waitFor(() => expect(receiver.forReference(body.reference)).toHaveLength(1), { timeout: 2_000, interval: 10 });
  });

  it('makes concurrent duplicates of a slow submission wait for the first answer', async () => {
    const key = randomUUID();
    const body = payoutBody({ destination: wallet('sandbox:slow:150') });
    const answers = await Promise.all(Array.from({ length: 10 }, () => sandbox.submitPayout(body, key)));
    expect(new Set(answers.map((a) => `${a.status}:${a.body.id}`))).toEqual(new Set([`201:${answers[0]!.body.id}`]));
  });

  it('dedupes on merchant reference across keys: 409 with the existing payout', async () => {
    const body = payoutBody();
    const first = await sandbox.submitPayout(body);
    const second = await sandbox.submitPayout(body);
    expect(second.status).toBe(409);
    expect(second.body.error).toMatchObject({ code: 'duplicate_reference', existing_id: first.body.id });
    expect(second.body.payout.id).toBe(first.body.id);
  });

  it('scopes keys per resource kind: a payout key does not collide with a deposit key', async () => {
    const key = randomUUID();
    const payout = await sandbox.submitPayout(payoutBody(), key);
    const deposit = await sandbox.submitDeposit(depositBody(), key);
    expect(payout.status).toBe(201);
    expect(deposit.status).toBe(201);
    expect(deposit.body.id).toMatch(/^dp_/);
  });

  it('requires a valid Idempotency-Key', async () => {
    const missing = await sandbox.call('POST', '/v1/payouts', payoutBody());
    expect(missing.status).toBe(400);
    expect(missing.body.error.code).toBe('missing_idempotency_key');
    for (const key of ['x'.repeat(256), 'naïve-key']) {
      const bad = await sandbox.call('POST', '/v1/payouts', payoutBody(), { 'idempotency-key': key });
      expect(bad.status).toBe(400);
      expect(bad.body.error.code).toBe('invalid_idempotency_key');
    }
  });

  it.each([
    ['negative amount', { amount: { minor_units: -1, currency: 'EUR' } }],
    ['zero amount', { amount: { minor_units: 0, currency: 'EUR' } }],
    ['fractional amount', { amount: { minor_units: 1.5, currency: 'EUR' } }],
    ['unsafe integer', { amount: { minor_units: 2 ** 53, currency: 'EUR' } }],
    ['lowercase currency', { amount: { minor_units: 100, currency: 'eur' } }],
    ['unknown method', { destination: { method: 'cash', to: 'x' } }],
    ['missing iban', { destination: { method: 'bank_transfer' } }],
    ['unknown field', { surprise: true }],
    ['empty reference', { reference: '' }],
  ])('refuses %s with 400 and creates nothing', async (_name, override) => {
    const body = payoutBody(override);
    const res = await sandbox.submitPayout(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(typeof res.body.error.message).toBe('string');
  });

  it('answers malformed JSON with 400, other content types with 415', async () => {
    const malformed = await sandbox.call('POST', '/v1/payouts', '{"reference":', { 'idempotency-key': randomUUID() });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe('invalid_json');
    const text = await sandbox.call('POST', '/v1/payouts', 'hello', { 'idempotency-key': randomUUID(), 'content-type': 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.body.error.code).toBe('unsupported_media_type');
  });

  it('refuses an IBAN with a bad checksum with 422 invalid_destination', async () => {
    const body = payoutBody({ destination: { method: 'bank_transfer', iban: 'DE89370400440532013001' } });
    const res = await sandbox.submitPayout(body);
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('invalid_destination');
    expect((await sandbox.get(`/v1/payouts?reference=${body.reference}`)).status).toBe(404);
  });

  it('answers 404 not_found for unknown payouts, deposits and routes', async () => {
    for (const path of ['/v1/payouts/po_nope', '/v1/payouts?reference=nope', '/v1/deposits/dp_nope', '/v1/deposits?reference=nope', '/v1/nothing']) {
      const res = await sandbox.get(path);
      expect(res.status, path).toBe(404);
      expect(res.body.error.code, path).toBe('not_found');
    }
  });

  it('creates deposits idempotently with a checkout url', async () => {
    const key = randomUUID();
    const body = depositBody({ metadata: { channel: 'app' } });
    const first = await sandbox.submitDeposit(body, key);
    const replay = await sandbox.submitDeposit(body, key);
    const mismatch = await sandbox.submitDeposit({ ...body, amount: { minor_units: 1, currency: 'EUR' } }, key);
    const otherKey = await sandbox.submitDeposit(body);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ object: 'deposit', reference: body.reference, status: 'pending', amount: body.amount, metadata: { channel: 'app' } });
    expect(first.body.checkout_url).toMatch(new RegExp(`^${sandbox.baseUrl}/sandbox/checkout/${first.body.id}\\?secret=[0-9a-f]{32}$`));
    expect(replay.body).toEqual(first.body);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(mismatch.status).toBe(422);
    expect(otherKey.status).toBe(409);
    expect(otherKey.body.deposit.id).toBe(first.body.id);
  });
});
