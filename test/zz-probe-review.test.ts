import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signWebhook } from '../lib/webhook-signature';
import { sleep } from '../lib/wait';
import { uniqueId } from './support';
import { payoutRequest, startSagaStack, type SagaStack } from './payouts/stack';

describe('probe', () => {
  let stack: SagaStack;
  beforeAll(async () => { stack = await startSagaStack(); });
  afterAll(async () => { await stack?.close(); });

  const cancel = async (payoutId: string) => {
    const res = await fetch(`${stack.apiUrl}/v1/payouts/${payoutId}/cancel`, { method: 'POST', headers: { authorization: stack.service, 'content-type': 'application/json' }, body: '{}' });
    return { status: res.status, text: await res.text() };
  };
  const hook = async (event: unknown) => {
    const raw = JSON.stringify(event);
    const res = await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-signature': signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, raw, Date.now() / 1000) }, body: raw });
    return { status: res.status, text: await res.text() };
  };

  it('A: cancel of a closed (DECLINED) payout', async () => {
    const acct = await stack.fundedAccount(100);
    const res = await stack.postPayout(payoutRequest(acct, 500), uniqueId('k'));
    console.log('A post', res.status, res.json?.code);
    await sleep(1500);
    const c = await cancel(res.json.payout_id);
    console.log('A cancel of DECLINED:', c.status, c.text.slice(0, 200));
  });

  it('B: signed webhook with a body that fails the schema', async () => {
    const r = await hook({ id: uniqueId('evt'), type: 'payout.settled', created_at: new Date().toISOString(), data: {} });
    console.log('B schema-invalid signed webhook:', r.status, r.text.slice(0, 200));
  });

  it('C: provider return after the return window', async () => {
    const acct = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(acct, 600), uniqueId('k'));
    const id = res.json.payout_id;
    await stack.waitForStatus(id, ['SETTLED']);
    await sleep(3000);
    const r = await hook({ id: uniqueId('evt'), type: 'payout.returned', created_at: new Date().toISOString(), data: { object: { id: 'po_x', reference: id, status: 'returned', return_reason: 'account_closed' } } });
    console.log('C late return webhook:', r.status, r.text);
    await sleep(1000);
    console.log('C transfers:', JSON.stringify(await stack.transfersOf(id)), 'status', (await stack.getPayout(id)).status, 'balance', JSON.stringify(await stack.ledger.getBalance(acct)));
  });

  it('D: full IBAN / token in Temporal history', async () => {
    const acct = await stack.fundedAccount(1_000);
    const iban = 'DE89370400440532013000';
    const body = { account_id: acct, amount: { minor_units: 100, currency: 'EUR' }, destination: { method: 'bank_transfer', iban } };
    const res = await stack.postPayout(body, uniqueId('k'));
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    const hist = await stack.temporal.workflow.getHandle(res.json.payout_id).fetchHistory();
    const s = JSON.stringify(hist, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : v));
    console.log('D full IBAN in history:', s.includes(iban), 'count', s.split(iban).length - 1);
  });

  it('E: JWT without exp', async () => {
    const t = await new SignJWT({ role: 'staff' }).setProtectedHeader({ alg: 'HS256' }).setSubject('x').sign(new TextEncoder().encode(stack.config.AUTH_JWT_SECRET));
    const r = await fetch(`${stack.apiUrl}/v1/me`, { headers: { authorization: `Bearer ${t}` } });
    console.log('E no-exp token:', r.status);
  });
});
