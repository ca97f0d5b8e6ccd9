import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { recordHistory } from '../replay/histories';
import { startTestWorker, uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('payout saga end to end (API → Temporal → worker → ledger → sandbox aggregator → webhook)', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack();
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const balance = async (accountId: string) => (await stack.ledger.getBalance(accountId))!;

  it('happy path: 201 HELD, then SETTLED with one posted hold', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const res = await stack.postPayout(payoutRequest(accountId, 2_500), uniqueId('key'));
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ account_id: accountId, status: 'HELD', amount: { minor_units: 2_500, currency: 'EUR' }, destination: { method: 'ewallet', last4: '0001' } });
    expect(res.headers.get('location')).toBe(`/v1/payouts/${res.json.payout_id}`);
    expect(await balance(accountId)).toMatchObject({ available: 7_500, held: 2_500, posted: 10_000 });

    const settled = await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    expect(settled.timeline.map((t: { status: string }) => t.status)).toEqual(['REQUESTED', 'AUTHORIZED', 'HELD', 'SUBMITTED', 'SETTLED']);
    expect(settled.provider_payout_id).toMatch(/^po_/);
    expect(await stack.transfersOf(res.json.payout_id)).toEqual([
      { kind: 'hold', amount: 2_500 },
      { kind: 'post', amount: 2_500 },
    ]);
    expect(await balance(accountId)).toMatchObject({ available: 7_500, held: 0, posted: 7_500 });
    await recordHistory(stack.temporal, 'payout-settled', res.json.payout_id);
  });

  it('an IBAN payout pays the full IBAN to the provider but never puts it in the workflow history', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const iban = 'GB82WEST12345698765432';
    const res = await stack.postPayout({ account_id: accountId, amount: { minor_units: 300, currency: 'EUR' }, destination: { method: 'bank_transfer', iban } }, uniqueId('key'));
    expect(res.json).toMatchObject({ destination: { method: 'bank_transfer', last4: '5432' } });
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    const history = await stack.temporal.workflow.getHandle(res.json.payout_id).fetchHistory();
    // Payload bytes appear base64-encoded in the history's JSON form: decode them to search their text.
    const text = JSON.stringify(history, (key, value) => (key === 'data' && typeof value === 'string' ? Buffer.from(value, 'base64').toString('utf8') : value));
    expect(text).toContain('5432');
    expect(text).not.toContain(iban);
    expect(text).not.toContain('WEST1234');
  });

  it('provider failure: FAILED, hold voided, balance restored', async () => {
    const accountId = await stack.fundedAccount(5_000);
    const res = await stack.postPayout(payoutRequest(accountId, 5_000, 'sandbox:fail'), uniqueId('key'));
    expect(res.status).toBe(201);
    const failed = await stack.waitForStatus(res.json.payout_id, ['FAILED']);
    expect(failed.failure_code).toBe('account_closed');
    expect(await stack.transfersOf(res.json.payout_id)).toEqual([
      { kind: 'hold', amount: 5_000 },
      { kind: 'void', amount: 5_000 },
    ]);
    expect(await balance(accountId)).toMatchObject({ available: 5_000, held: 0, posted: 5_000 });
    await recordHistory(stack.temporal, 'payout-failed', res.json.payout_id);
  });

  it('provider refusal at submission: FAILED with its code, hold voided', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 400, 'sandbox:reject'), uniqueId('key'));
    const failed = await stack.waitForStatus(res.json.payout_id, ['FAILED']);
    expect(failed.failure_code).toBe('invalid_destination');
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect(await balance(accountId)).toMatchObject({ available: 1_000, held: 0 });
    await recordHistory(stack.temporal, 'payout-rejected-at-submission', res.json.payout_id);
  });

  it('return after settlement: RETURNED, the player is refunded with a new transfer', async () => {
    const accountId = await stack.fundedAccount(3_000);
    const res = await stack.postPayout(payoutRequest(accountId, 3_000, 'sandbox:return_after_settlement'), uniqueId('key'));
    const returned = await stack.waitForStatus(res.json.payout_id, ['RETURNED']);
    expect(returned.return_reason).toBe('account_closed');
    expect(returned.timeline.map((t: { status: string }) => t.status)).toEqual(['REQUESTED', 'AUTHORIZED', 'HELD', 'SUBMITTED', 'SETTLED', 'RETURNED']);
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post', 'refund']);
    expect(await balance(accountId)).toMatchObject({ available: 3_000, held: 0, posted: 3_000 });
    await recordHistory(stack.temporal, 'payout-returned', res.json.payout_id);
  });

  it('callback never arrives: status polling resolves it', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const res = await stack.postPayout(payoutRequest(accountId, 1_200, 'sandbox:never_callback'), uniqueId('key'));
    const settled = await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    const hooks = await stack.pool.query('SELECT count(*)::int AS n FROM webhook_events WHERE reference = $1', [res.json.payout_id]);
    expect(hooks.rows[0].n).toBe(0);
    expect(settled.status).toBe('SETTLED');
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post']);
    // Scheduled polls are background work: activities on the background task queue, not local activities
    // in the money path's workflow tasks.
    const history = await stack.temporal.workflow.getHandle(res.json.payout_id).fetchHistory();
    const polls = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'fetchProviderPayout');
    expect(polls.length).toBeGreaterThan(0);
    expect(new Set(polls.map((e) => e.activityTaskScheduledEventAttributes!.taskQueue!.name))).toEqual(new Set([`${stack.config.TEMPORAL_TASK_QUEUE}-background`]));
    await recordHistory(stack.temporal, 'payout-settled-by-polling', res.json.payout_id);
  });

  it('duplicate webhooks change nothing after the first', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const res = await stack.postPayout(payoutRequest(accountId, 700, 'sandbox:duplicate_callback:distinct'), uniqueId('key'));
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    await stack.waitForStatus(res.json.payout_id, ['SETTLED', 'RETURNED'], 5_000);
    const events = await stack.pool.query('SELECT event_id, signalled_at IS NOT NULL AS signalled FROM webhook_events WHERE reference = $1', [res.json.payout_id]);
    expect(events.rows.length).toBeGreaterThanOrEqual(2); // the redelivered id is stored once, the distinct copy once
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await balance(accountId)).toMatchObject({ available: 1_300, held: 0, posted: 1_300 });
  });

  it('out-of-order webhooks (returned before settled): RETURNED once, the late settled is ignored', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const res = await stack.postPayout(payoutRequest(accountId, 900, 'sandbox:out_of_order'), uniqueId('key'));
    await stack.waitForStatus(res.json.payout_id, ['RETURNED']);
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post', 'refund']);
    expect(await balance(accountId)).toMatchObject({ available: 2_000, held: 0, posted: 2_000 });
    await recordHistory(stack.temporal, 'payout-out-of-order', res.json.payout_id);
  });

  it('a webhook with a bad signature gets 401 and changes nothing', async () => {
    const body = JSON.stringify({ id: uniqueId('evt'), type: 'payout.settled', created_at: new Date().toISOString(), data: { object: { id: 'po_x', reference: 'po_x', status: 'settled' } } });
    const t = Math.floor(Date.now() / 1000);
    for (const signature of [undefined, `t=${t},v1=${'0'.repeat(64)}`, `t=${t - 3600},v1=abc`]) {
      const res = await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature ? { 'x-signature': signature } : {}) }, body });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ code: 'WEBHOOK_SIGNATURE_INVALID' });
    }
    const stored = await stack.pool.query("SELECT count(*)::int AS n FROM webhook_events WHERE payload->>'id' = $1", [JSON.parse(body).id]);
    expect(stored.rows[0].n).toBe(0);
  });
});

describe('a provider refusal that hides an accepted submission', () => {
  let stack: SagaStack;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let proxy: http.Server;
  beforeAll(async () => {
    stack = await startSagaStack({}, { worker: false });
    // In front of the sandbox: a submission is passed on (the provider accepts it) but answered 422, as an
    // aggregator may answer a retried request; everything else passes through.
    proxy = http.createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const upstream = await fetch(`${stack.sandboxUrl}${req.url}`, { method: req.method, headers: req.headers as Record<string, string>, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined });
      if (req.method === 'POST' && req.url === '/v1/payouts') {
        res.writeHead(422, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'invalid_destination', message: 'refused on retry' } }));
        return;
      }
      res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(await upstream.text());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    worker = await startTestWorker(stack.pool, stack.config.TEMPORAL_TASK_QUEUE, { ...stack.config, SANDBOX_URL: proxyUrl });
  });
  afterAll(async () => {
    await worker?.stop();
    proxy?.close();
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('is checked against the provider\'s record: the hold is kept and the payout settles once', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 500, 'sandbox:stay_pending'), uniqueId('key'));
    expect(res.status).toBe(201);
    const payoutId: string = res.json.payout_id;
    const waiting = await stack.waitForStatus(payoutId, ['SUBMITTED', 'FAILED']);
    expect(waiting.status).toBe('SUBMITTED');
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 500 });

    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle' }) });
    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
  });

  it('with no record at the provider, the refusal releases the hold', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 300, 'sandbox:reject'), uniqueId('key'));
    const failed = await stack.waitForStatus(res.json.payout_id, ['FAILED']);
    expect(failed.failure_code).toBe('invalid_destination');
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
  });
});
