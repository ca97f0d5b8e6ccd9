import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../lib/tokens';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

type Answer = { status: number; json: any };

async function post(url: string, authorization: string, body: unknown): Promise<Answer> {
  const res = await fetch(url, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as any };
}

describe('cancelling a payout where reverse withdrawals are forbidden (the default): staff only, audited', () => {
  let stack: SagaStack;
  let staff: string;
  beforeAll(async () => {
    stack = await startSagaStack({ PAYOUT_SUBMIT_DELAY_MS: '3000' });
    expect(stack.config.REVERSE_WITHDRAWALS).toBe('forbidden');
    staff = `Bearer ${await signToken({ sub: 'carol', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const playerCancel = (payoutId: string, authorization = stack.service, body: unknown = { reason: 'changed my mind' }) => post(`${stack.apiUrl}/v1/payouts/${payoutId}/cancel`, authorization, body);
  const staffCancel = (payoutId: string, body: unknown = { reason: 'player asked support; verified by phone' }, authorization = staff) => post(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/cancel`, authorization, body);
  const auditOf = async (payoutId: string) => (await (await fetch(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/audit`, { headers: { authorization: staff } })).json()) as { items: { actor: string; action: string; reason: string; outcome: string; detail: string }[] };

  it("a player's cancel (and its backend's) is 403 REVERSE_WITHDRAWAL_FORBIDDEN and the payout goes on to be paid", async () => {
    const accountId = await stack.fundedAccount(2_000);
    const player = await stack.playerAuth(accountId);
    const res = await stack.postPayout(payoutRequest(accountId, 1_500), uniqueId('key'), player);
    expect(res.status).toBe(201);
    for (const authorization of [player, stack.service]) {
      const refused = await playerCancel(res.json.payout_id, authorization);
      expect([refused.status, refused.json.code]).toEqual([403, 'REVERSE_WITHDRAWAL_FORBIDDEN']);
    }
    // Staff use their own, audited route: the player's is not theirs.
    expect((await playerCancel(res.json.payout_id, staff)).status).toBe(403);
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 500, held: 0, posted: 500 });
  });

  it('staff cancel in the window with a reason: the hold is voided, nothing reaches the provider, and the audit log has it', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const player = await stack.playerAuth(accountId);
    const res = await stack.postPayout(payoutRequest(accountId, 1_500), uniqueId('key'), player);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 500, held: 1_500 });

    const reasonless = await staffCancel(res.json.payout_id, {});
    expect([reasonless.status, reasonless.json.code]).toEqual([400, 'VALIDATION_FAILED']);
    const cancelled = await staffCancel(res.json.payout_id);
    expect(cancelled.status).toBe(200);
    expect(cancelled.json).toMatchObject({ status: 'CANCELLED', cancellable: false });
    expect(cancelled.json.timeline.at(-1)).toMatchObject({ status: 'CANCELLED', note: 'cancelled', staff_note: expect.stringContaining('staff:carol') });
    // The player sees the code, not staff's words.
    const seenByPlayer = (await (await fetch(`${stack.apiUrl}/v1/payouts/${res.json.payout_id}`, { headers: { authorization: player } })).json()) as any;
    expect(seenByPlayer.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'CANCELLED', note: 'cancelled' });
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 2_000, held: 0, posted: 2_000 });

    expect((await staffCancel(res.json.payout_id)).json).toMatchObject({ status: 'CANCELLED' }); // a retried cancel
    expect((await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${res.json.payout_id}`)).status).toBe(404);
    const audit = (await auditOf(res.json.payout_id)).items;
    expect(audit.map((a) => [a.actor, a.action, a.reason, a.outcome])).toEqual([
      ['staff:carol', 'cancel', 'player asked support; verified by phone', 'applied'],
      ['staff:carol', 'cancel', 'player asked support; verified by phone', 'applied'],
    ]);
    await recordHistory(stack.temporal, 'payout-cancelled', res.json.payout_id);
  });

  it('staff cancel after submission is 409 PAYOUT_NOT_CANCELLABLE, audited as refused, and changes nothing', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const res = await stack.postPayout(payoutRequest(accountId, 800, 'sandbox:stay_pending'), uniqueId('key'));
    await stack.waitForStatus(res.json.payout_id, ['SUBMITTED'], 15_000);
    const refused = await staffCancel(res.json.payout_id);
    expect([refused.status, refused.json.code]).toEqual([409, 'PAYOUT_NOT_CANCELLABLE']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_200, held: 800 });
    expect((await auditOf(res.json.payout_id)).items.map((a) => [a.action, a.outcome, a.detail])).toEqual([['cancel', 'refused', expect.stringMatching(/^PAYOUT_NOT_CANCELLABLE: /)]]);

    // Let the provider settle it, so the suite leaves no saga waiting.
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${res.json.payout_id}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle' }) });
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post']);
  });

  it("another player's payout is 404 before any policy (ids reveal nothing), a malformed id is 400", async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'));
    const stranger = await stack.playerAuth(uniqueId('stranger'));
    expect((await playerCancel(res.json.payout_id, stranger)).status).toBe(404);
    expect((await playerCancel('po_nope')).status).toBe(400);
    expect((await staffCancel('po_nope')).status).toBe(400);
    await staffCancel(res.json.payout_id);
    await stack.waitForStatus(res.json.payout_id, ['CANCELLED']);
  });
});

describe('cancelling a payout where reverse withdrawals are allowed (REVERSE_WITHDRAWALS=allowed)', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ PAYOUT_SUBMIT_DELAY_MS: '3000', REVERSE_WITHDRAWALS: 'allowed' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('the player cancels before submission: the hold is voided; a repeated cancel answers the same state; after submission 409', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const player = await stack.playerAuth(accountId);
    const res = await stack.postPayout(payoutRequest(accountId, 1_500), uniqueId('key'), player);
    const cancel = () => post(`${stack.apiUrl}/v1/payouts/${res.json.payout_id}/cancel`, player, { reason: 'changed my mind' });
    const cancelled = await cancel();
    expect(cancelled.status).toBe(200);
    // The requester's words are staff text: the player's view carries the code.
    expect(cancelled.json.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'CANCELLED', note: 'cancelled' });
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 2_000, held: 0, posted: 2_000 });
    expect((await cancel()).json).toMatchObject({ status: 'CANCELLED' });

    const submitted = await stack.postPayout(payoutRequest(accountId, 800), uniqueId('key'), player);
    await stack.waitForStatus(submitted.json.payout_id, ['SETTLED'], 15_000);
    const late = await post(`${stack.apiUrl}/v1/payouts/${submitted.json.payout_id}/cancel`, player, {});
    expect([late.status, late.json.code]).toEqual([409, 'PAYOUT_NOT_CANCELLABLE']);
  });
});
