import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { signToken } from '../../lib/tokens';
import { sleep } from '../../lib/wait';
import { SIGNATURE_HEADER, signWebhook } from '../../lib/webhook-signature';
import { recordHistory } from '../replay/histories';
import { startTestWorker, uniqueId } from '../support';
import { workflowBundleBefore } from '../support/earlier-version';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('finance staff: stuck payouts, resolution with audit, poll now', () => {
  let stack: SagaStack;
  let staff: string;
  beforeAll(async () => {
    // Polls far apart, so only staff (or the provider) can move a stuck payout in this suite.
    // Staff act alone here (four eyes off): the two-person flow is test/ops/four-eyes.test.ts.
    stack = await startSagaStack({ PROVIDER_STUCK_AFTER_MS: '1500', PROVIDER_POLL_INITIAL_MS: '60000', PROVIDER_POLL_MAX_MS: '60000', FOUR_EYES_ACTIONS: 'none' });
    staff = `Bearer ${await (await import('../../lib/tokens')).signToken({ sub: 'alice', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const ops = async (method: 'GET' | 'POST', path: string, body?: unknown, authorization = staff) => {
    const res = await fetch(`${stack.apiUrl}/v1/ops${path}`, { method, headers: { authorization, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return { status: res.status, json: (await res.json()) as any };
  };
  const stuckPayout = async (amount: number) => {
    const accountId = await stack.fundedAccount(amount * 2);
    const res = await stack.postPayout(payoutRequest(accountId, amount, 'sandbox:stay_pending'), uniqueId('key'));
    expect(res.status).toBe(201);
    const payoutId: string = res.json.payout_id;
    for (let i = 0; i < 100; i++) {
      const view = await stack.getPayout(payoutId);
      if (view.stuck) return { accountId, payoutId, view };
      await sleep(100);
    }
    throw new Error(`payout ${payoutId} never marked stuck`);
  };

  it('a payout whose provider never answers is marked stuck and listed for staff; other roles are refused', async () => {
    const { payoutId, view } = await stuckPayout(500);
    expect(view).toMatchObject({ status: 'SUBMITTED', stuck: true });
    // Players and services see the code; the wording is for staff.
    expect(view.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'SUBMITTED', note: 'awaiting_provider' });

    let listed: any[] = [];
    for (let i = 0; i < 50 && !listed.some((p) => p.payout_id === payoutId); i++) {
      listed = (await ops('GET', '/payouts?stuck=true')).json.items;
      if (!listed.some((p) => p.payout_id === payoutId)) await sleep(200); // visibility is eventually consistent
    }
    expect(listed.find((p) => p.payout_id === payoutId)).toMatchObject({ status: 'SUBMITTED', stuck: true, amount_minor: 500, currency: 'EUR', provider: 'sandbox' });

    const player = await stack.playerAuth(view.account_id);
    for (const authorization of [player, stack.service]) {
      const refused = await ops('GET', '/payouts?stuck=true', undefined, authorization);
      expect(refused.status).toBe(403);
      expect(refused.json).toMatchObject({ code: 'FORBIDDEN' });
      expect((await ops('POST', `/payouts/${payoutId}/resolve`, { outcome: 'settle', reason: 'try' }, authorization)).status).toBe(403);
    }
    await ops('POST', `/payouts/${payoutId}/resolve`, { outcome: 'fail', reason: 'cleanup: provider confirmed no payment' });
    await stack.waitForStatus(payoutId, ['FAILED']);
  });

  it('staff settle a stuck payout exactly once, with an audit record; a second resolution is refused and audited', async () => {
    const { accountId, payoutId } = await stuckPayout(700);
    const settled = await ops('POST', `/payouts/${payoutId}/resolve`, { outcome: 'settle', reason: 'provider confirmed by phone, ticket FIN-123' });
    expect(settled.status).toBe(200);
    expect(settled.json).toMatchObject({ status: 'SETTLED', stuck: false });
    expect(settled.json.timeline.at(-1)).toMatchObject({ note: 'resolved_by_staff', staff_note: 'resolved by staff:alice: provider confirmed by phone, ticket FIN-123' });

    const again = await ops('POST', `/payouts/${payoutId}/resolve`, { outcome: 'fail', reason: 'second thoughts' });
    expect(again.status).toBe(409);
    expect(again.json).toMatchObject({ code: 'PAYOUT_NOT_RESOLVABLE' });

    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 700, held: 0 });

    const trail = await ops('GET', `/payouts/${payoutId}/audit`);
    expect(trail.json.items).toMatchObject([
      { actor: 'staff:alice', action: 'resolve:settle', reason: 'provider confirmed by phone, ticket FIN-123', outcome: 'applied' },
      { actor: 'staff:alice', action: 'resolve:fail', reason: 'second thoughts', outcome: 'refused' },
    ]);
    await expect(stack.pool.query('DELETE FROM staff_audit_log WHERE target = $1', [payoutId])).rejects.toThrow(/append-only/);
    await recordHistory(stack.temporal, 'payout-resolved-by-staff', payoutId);
  });

  it('staff fail a stuck payout: the hold is voided', async () => {
    const { accountId, payoutId } = await stuckPayout(300);
    const failed = await ops('POST', `/payouts/${payoutId}/resolve`, { outcome: 'fail', reason: 'provider lost the instruction' });
    expect(failed.json).toMatchObject({ status: 'FAILED', failure_code: 'resolved_by_staff' });
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 600, held: 0 });
  });

  it('poll now: the saga asks its provider at once and settles', async () => {
    const { payoutId } = await stuckPayout(200);
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    // The provider settles without calling back; with polls a minute apart, only "poll now" can notice.
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle', send_webhook: false }) });
    const poll = await ops('POST', `/payouts/${payoutId}/poll`, { reason: 'customer chasing' });
    expect(poll.status).toBe(202);
    await stack.waitForStatus(payoutId, ['SETTLED'], 10_000);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    const trail = await ops('GET', `/payouts/${payoutId}/audit`);
    expect(trail.json.items).toMatchObject([{ action: 'poll', reason: 'customer chasing', outcome: 'applied' }]);
  });

  it('a frozen account\'s new payouts are declined (ACCOUNT_NOT_ACTIVE) until staff unfreeze it; both audited', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const player = await stack.playerAuth(accountId);
    expect((await ops('POST', `/accounts/${accountId}/freeze`, { reason: 'chargeback investigation' }, player)).status).toBe(403);
    const frozen = await ops('POST', `/accounts/${accountId}/freeze`, { reason: 'chargeback investigation' });
    expect(frozen.json).toMatchObject({ account_id: accountId, status: 'frozen', changed_by: 'staff:alice' });

    const declined = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'), player);
    expect(declined.status).toBe(422);
    expect(declined.json).toMatchObject({ code: 'ACCOUNT_NOT_ACTIVE', payout_status: 'DECLINED' });
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0 });

    await ops('POST', `/accounts/${accountId}/unfreeze`, { reason: 'investigation closed' });
    const allowed = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'), player);
    expect(allowed.status).toBe(201);
    await stack.waitForStatus(allowed.json.payout_id, ['SETTLED']);

    const { rows } = await stack.pool.query('SELECT action, reason, actor FROM staff_audit_log WHERE target = $1 ORDER BY id', [accountId]);
    expect(rows).toEqual([
      { action: 'account:freeze', reason: 'chargeback investigation', actor: 'staff:alice' },
      { action: 'account:unfreeze', reason: 'investigation closed', actor: 'staff:alice' },
    ]);
  });

  it('staff cannot fail a payout the provider has paid: refused, and the saga settles it', async () => {
    const { accountId, payoutId } = await stuckPayout(250);
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle', send_webhook: false }) });
    const refused = await ops('POST', `/payouts/${payoutId}/resolve`, { outcome: 'fail', reason: 'customer says never received' });
    expect(refused.status).toBe(409);
    expect(refused.json).toMatchObject({ code: 'PAYOUT_NOT_RESOLVABLE', detail: expect.stringMatching(/provider reports this payout settled/) });
    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 250, held: 0 });
  });

  it('a resolution needs a reason and a known outcome', async () => {
    const id = `po_${'0'.repeat(32)}`;
    expect((await ops('POST', `/payouts/${id}/resolve`, { outcome: 'settle' })).json).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    expect((await ops('POST', `/payouts/${id}/resolve`, { outcome: 'refund', reason: 'because' })).status).toBe(400);
    expect((await ops('POST', `/payouts/${id}/resolve`, { outcome: 'settle', reason: 'no such payout' })).json).toMatchObject({ status: 404, code: 'PAYOUT_NOT_FOUND' });
  });
});

describe('staff fail while the provider cannot be asked', () => {
  let stack: SagaStack;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let proxy: http.Server;
  let providerDown = false;
  beforeAll(async () => {
    stack = await startSagaStack({ PROVIDER_STUCK_AFTER_MS: '500', PROVIDER_POLL_INITIAL_MS: '60000', PROVIDER_POLL_MAX_MS: '60000', FOUR_EYES_ACTIONS: 'none' }, { worker: false });
    // In front of the sandbox: status look-ups can be made to fail (503), as during a provider outage.
    proxy = http.createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      if (providerDown && req.method === 'GET') {
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"unavailable"}}');
        return;
      }
      const upstream = await fetch(`${stack.sandboxUrl}${req.url}`, { method: req.method, headers: req.headers as Record<string, string>, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined });
      res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(await upstream.text());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    worker = await startTestWorker(stack.pool, stack.config.TEMPORAL_TASK_QUEUE, { ...stack.config, SANDBOX_URL: `http://127.0.0.1:${(proxy.address() as { port: number }).port}` });
  });
  afterAll(async () => {
    await worker?.stop();
    proxy?.close();
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('is refused (the provider may have paid), and applied once the provider answers again', async () => {
    const staffAuth = `Bearer ${await signToken({ sub: 'bob', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
    const resolve = async (body: unknown) => {
      const res = await fetch(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/resolve`, { method: 'POST', headers: { authorization: staffAuth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, json: (await res.json()) as any };
    };
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 400, 'sandbox:stay_pending'), uniqueId('key'));
    const payoutId: string = res.json.payout_id;
    await stack.waitForStatus(payoutId, ['SUBMITTED']);

    providerDown = true;
    const refused = await resolve({ outcome: 'fail', reason: 'provider silent for days' });
    expect(refused.status).toBe(409);
    expect(refused.json.detail).toMatch(/cannot be asked/);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 400 });

    providerDown = false;
    const failed = await resolve({ outcome: 'fail', reason: 'provider confirms it never paid' });
    expect(failed.status).toBe(200);
    expect(failed.json).toMatchObject({ status: 'FAILED' });
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'void']);
  });
});

describe('finance staff: poll now in the return window', () => {
  let stack: SagaStack;
  let staff: string;
  beforeAll(async () => {
    // A return window long enough for staff to act in (the suites' default closes it after 1.5 s).
    stack = await startSagaStack({ PAYOUT_RETURN_WINDOW_MS: '120000', FOUR_EYES_ACTIONS: 'none' });
    staff = `Bearer ${await signToken({ sub: 'alice', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('poll now in the return window: a return the provider made without calling back (its webhook lost, as in a failover) is found and refunded', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 300), uniqueId('key'));
    const payoutId: string = res.json.payout_id;
    await stack.waitForStatus(payoutId, ['SETTLED'], 15_000);
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    const returned = await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'return', return_reason: 'account_closed', send_webhook: false }) });
    expect(returned.status).toBe(200);
    // Nothing tells the saga: it waits out its 7-day return window, the money paid.
    await sleep(1_500);
    expect((await stack.getPayout(payoutId)).status).toBe('SETTLED');
    const poll = await fetch(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/poll`, { method: 'POST', headers: { authorization: staff, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'reconciliation: provider returned it, ledger has no refund' }) });
    expect(poll.status).toBe(202);
    const view = await stack.waitForStatus(payoutId, ['RETURNED'], 10_000);
    expect(view.return_reason).toBe('account_closed');
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post', 'refund']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0, posted: 1_000 });
    await recordHistory(stack.temporal, 'payout-returned-after-staff-poll', payoutId);
  });
});

describe('finance staff: poll now on a saga started before polls were answered in the return window', () => {
  let stack: SagaStack;
  let staff: string;
  let earlier: Awaited<ReturnType<typeof workflowBundleBefore>>;
  beforeAll(async () => {
    stack = await startSagaStack({ PAYOUT_RETURN_WINDOW_MS: '120000', FOUR_EYES_ACTIONS: 'none' }, { worker: false });
    staff = `Bearer ${await signToken({ sub: 'alice', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
    earlier = await workflowBundleBefore('return-window-staff-poll');
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
    earlier?.remove();
  });

  it('is refused with 409 PAYOUT_POLL_IGNORED (not a 202 that does nothing), audited; the provider sending its notification again refunds the return; a finished saga is 404', async () => {
    const { pool, config } = stack;
    const before = await startTestWorker(pool, config.TEMPORAL_TASK_QUEUE, config, { workflowBundlePath: earlier.path });
    const accountId = await stack.fundedAccount(1_000);
    const payoutId: string = (await stack.postPayout(payoutRequest(accountId, 300), uniqueId('key'))).json.payout_id;
    await stack.waitForStatus(payoutId, ['SETTLED'], 15_000);
    // Deployed: today's workers take over the saga, settled and in its return window.
    await before.stop();
    const today = await startTestWorker(pool, config.TEMPORAL_TASK_QUEUE, config);
    try {
      const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
      const returned = await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'return', return_reason: 'account_closed', send_webhook: false }) });
      expect(returned.status).toBe(200);

      const poll = () => fetch(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/poll`, { method: 'POST', headers: { authorization: staff, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'reconciliation: provider returned it, ledger has no refund' }) });
      const refused = await poll();
      expect(refused.status).toBe(409);
      expect(refused.headers.get('content-type')).toContain('application/problem+json');
      expect(await refused.json()).toMatchObject({ code: 'PAYOUT_POLL_IGNORED', status: 409 });
      await sleep(1_500);
      expect((await stack.getPayout(payoutId)).status).toBe('SETTLED');
      const audit = await fetch(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/audit`, { headers: { authorization: staff } });
      expect(((await audit.json()) as { items: { action: string; outcome: string; detail: string }[] }).items).toEqual(expect.arrayContaining([expect.objectContaining({ action: 'poll', outcome: 'refused', detail: 'PAYOUT_POLL_IGNORED' })]));

      // The runbook's fallback: the provider sends its return notification again; the saga checks it against the provider's record.
      const record = await (await fetch(`${stack.sandboxUrl}/v1/payouts/${provider.id}`)).json();
      const body = JSON.stringify({ id: uniqueId('evt'), type: 'payout.returned', created_at: new Date().toISOString(), data: { object: record } });
      const webhook = await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, { method: 'POST', headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(config.SANDBOX_WEBHOOK_SECRET, body, Math.floor(Date.now() / 1000)) }, body });
      expect(webhook.status).toBeLessThan(300);
      expect((await stack.waitForStatus(payoutId, ['RETURNED'], 15_000)).return_reason).toBe('account_closed');
      expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post', 'refund']);
      expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0, posted: 1_000 });

      // The saga has ended: nothing left to poll.
      await vi.waitFor(async () => expect((await poll()).status).toBe(404), { timeout: 10_000, interval: 300 });
    } finally {
      await today.stop();
    }
  });
});
