import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../lib/tokens';
import { sleep } from '../../lib/wait';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('four eyes on manual money actions (the default): one staff member requests, another approves', () => {
  let stack: SagaStack;
  const staff: Record<string, string> = {};
  beforeAll(async () => {
    // Polls far apart, so only staff (or the provider) can move a stuck payout in this suite.
    stack = await startSagaStack({ PROVIDER_STUCK_AFTER_MS: '1000', PROVIDER_POLL_INITIAL_MS: '60000', PROVIDER_POLL_MAX_MS: '60000' });
    expect(stack.config.FOUR_EYES_ACTIONS).toEqual(['payout_resolve', 'payout_review', 'account_unfreeze', 'chargeback']);
    for (const name of ['alice', 'bob', 'carol', 'dan', 'eve', 'fay', 'gus', 'hal', 'ivy']) {
      staff[name] = `Bearer ${await signToken({ sub: name, role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
    }
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const ops = async (method: 'GET' | 'POST', path: string, who: string, body?: unknown) => {
    const res = await fetch(`${stack.apiUrl}/v1/ops${path}`, { method, headers: { authorization: staff[who]!, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return { status: res.status, json: (await res.json()) as any };
  };
  const decide = (approvalId: number, who: string, decision: 'approve' | 'reject', reason = 'checked the provider statement') => ops('POST', `/approvals/${approvalId}`, who, { decision, reason });
  const submittedPayout = async (amount: number) => {
    const accountId = await stack.fundedAccount(amount * 2);
    const res = await stack.postPayout(payoutRequest(accountId, amount, 'sandbox:stay_pending'), uniqueId('key'));
    expect(res.status).toBe(201);
    await stack.waitForStatus(res.json.payout_id, ['SUBMITTED'], 15_000);
    return { accountId, payoutId: res.json.payout_id as string };
  };
  const auditOf = async (target: string) =>
    (await stack.pool.query<{ actor: string; action: string; outcome: string; detail: string }>('SELECT actor, action, outcome, detail FROM staff_audit_log WHERE target = $1 ORDER BY id', [target])).rows.map((r) => [r.actor, r.action, r.outcome]);

  it('a resolve is a request (202) until a different staff member approves it; the requester cannot approve it; both are audited', async () => {
    const { accountId, payoutId } = await submittedPayout(700);
    const requested = await ops('POST', `/payouts/${payoutId}/resolve`, 'alice', { outcome: 'settle', reason: 'provider confirmed by phone, ticket FIN-7' });
    expect(requested.status).toBe(202);
    expect(requested.json).toMatchObject({ action: 'payout_resolve', target: payoutId, status: 'pending', requested_by: 'staff:alice', payload: { outcome: 'settle' } });
    const approvalId: number = requested.json.approval_id;
    expect((await ops('GET', '/approvals', 'carol')).json.items.map((a: any) => a.approval_id)).toContain(approvalId);

    // Nothing moved yet; the requester alone cannot make it move.
    const own = await decide(approvalId, 'alice', 'approve');
    expect([own.status, own.json.code]).toEqual([403, 'APPROVER_IS_REQUESTER']);
    expect((await stack.getPayout(payoutId)).status).toBe('SUBMITTED');
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 700, posted: 1_400 });

    const approved = await decide(approvalId, 'bob', 'approve');
    expect(approved.status).toBe(200);
    expect(approved.json).toMatchObject({ approval_id: approvalId, status: 'approved', decided_by: 'staff:bob', outcome_detail: 'now SETTLED', result: { status: 'SETTLED' } });
    expect(approved.json.result.timeline.at(-1)).toMatchObject({ note: 'resolved_by_staff', staff_note: 'resolved by staff:alice, approved by staff:bob: provider confirmed by phone, ticket FIN-7' });
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 0, posted: 700 });

    const late = await decide(approvalId, 'carol', 'approve');
    expect([late.status, late.json.code]).toEqual([409, 'APPROVAL_DECIDED']);
    expect(await auditOf(payoutId)).toEqual([
      ['staff:alice', 'resolve:settle', 'requested'],
      ['staff:alice', 'approval:approve', 'refused'],
      ['staff:bob', 'approval:approve', 'applied'],
    ]);
    const { rows } = await stack.pool.query('SELECT requested_by, decided_by, status FROM approval_requests WHERE id = $1', [approvalId]);
    expect(rows).toEqual([{ requested_by: 'staff:alice', decided_by: 'staff:bob', status: 'approved' }]);
  });

  it('a rejected request changes nothing; one request is open at a time; the approval of a fail the provider contradicts ends failed', async () => {
    const { accountId, payoutId } = await submittedPayout(300);
    const first = await ops('POST', `/payouts/${payoutId}/resolve`, 'alice', { outcome: 'fail', reason: 'provider lost the instruction' });
    expect(first.status).toBe(202);
    // The same request again is the same approval; anything else while it is open is refused.
    expect((await ops('POST', `/payouts/${payoutId}/resolve`, 'alice', { outcome: 'fail', reason: 'provider lost the instruction' })).json.approval_id).toBe(first.json.approval_id);
    const other = await ops('POST', `/payouts/${payoutId}/resolve`, 'carol', { outcome: 'settle', reason: 'I think it was paid' });
    expect([other.status, other.json.code]).toEqual([409, 'APPROVAL_PENDING']);

    const rejected = await decide(first.json.approval_id, 'bob', 'reject', 'ask the provider first');
    expect(rejected.json).toMatchObject({ status: 'rejected', decided_by: 'staff:bob', decision_reason: 'ask the provider first' });
    expect((await stack.getPayout(payoutId)).status).toBe('SUBMITTED');
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 300 });

    // Asked again; meanwhile the provider pays it (no callback): the approved fail is refused by the saga.
    const again = await ops('POST', `/payouts/${payoutId}/resolve`, 'alice', { outcome: 'fail', reason: 'provider still silent' });
    expect(again.status).toBe(202);
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle', send_webhook: false }) });
    const refused = await decide(again.json.approval_id, 'bob', 'approve');
    expect([refused.status, refused.json.code]).toEqual([409, 'PAYOUT_NOT_RESOLVABLE']);
    expect((await ops('GET', '/approvals?status=failed', 'bob')).json.items.find((a: any) => a.approval_id === again.json.approval_id)).toMatchObject({ status: 'failed', outcome_detail: expect.stringMatching(/^PAYOUT_NOT_RESOLVABLE/) });
    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);

    // Nothing is opened for a payout that cannot be resolved, or does not exist.
    const settled = await ops('POST', `/payouts/${payoutId}/resolve`, 'alice', { outcome: 'fail', reason: 'too late' });
    expect([settled.status, settled.json.code]).toEqual([409, 'PAYOUT_NOT_RESOLVABLE']);
    expect((await ops('POST', `/payouts/po_${'0'.repeat(32)}/resolve`, 'alice', { outcome: 'fail', reason: 'nobody' })).status).toBe(404);
    expect((await stack.pool.query("SELECT count(*)::int AS n FROM approval_requests WHERE target = $1", [payoutId])).rows[0].n).toBe(2);
    expect((await decide(999_999_999, 'bob', 'approve')).json.code).toBe('APPROVAL_NOT_FOUND');
  });

  it('many approvers at once, many rounds: exactly one approval applies, the rest are APPROVAL_DECIDED, the payout settles once', async () => {
    const approvers = ['bob', 'carol', 'dan', 'eve', 'fay', 'gus', 'hal', 'ivy'];
    for (let round = 0; round < 5; round++) {
      const { accountId, payoutId } = await submittedPayout(100 + round);
      const requested = await ops('POST', `/payouts/${payoutId}/resolve`, 'alice', { outcome: 'settle', reason: `round ${round}: provider statement` });
      const answers = await Promise.all(approvers.map((who) => decide(requested.json.approval_id, who, 'approve')));
      const tally = answers.map((a) => `${a.status} ${a.json.code ?? a.json.status}`).sort();
      expect(tally).toEqual(['200 approved', ...Array.from({ length: approvers.length - 1 }, () => '409 APPROVAL_DECIDED')]);
      expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
      expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 0, posted: 100 + round });
    }
  });

  it('an approval left applying by an approver whose apply failed is taken over by another after its lease, and applies once', async () => {
    const { accountId, payoutId } = await submittedPayout(400);
    const requested = await ops('POST', `/payouts/${payoutId}/resolve`, 'alice', { outcome: 'settle', reason: 'provider statement FIN-9' });
    // As after bob's apply failed with an unknown outcome (a timeout): claimed by him, never finished.
    await stack.pool.query("UPDATE approval_requests SET status = 'approving', decided_by = 'staff:bob', decided_at = now() - interval '1 minute' WHERE id = $1", [requested.json.approval_id]);
    expect((await decide(requested.json.approval_id, 'carol', 'approve')).json.code).toBe('APPROVAL_DECIDED'); // within bob's lease
    expect((await decide(requested.json.approval_id, 'carol', 'reject')).json.code).toBe('APPROVAL_DECIDED'); // it may have applied: never rejected
    await stack.pool.query("UPDATE approval_requests SET decided_at = now() - interval '10 minutes' WHERE id = $1", [requested.json.approval_id]);
    const taken = await decide(requested.json.approval_id, 'carol', 'approve');
    expect(taken.json).toMatchObject({ status: 'approved', decided_by: 'staff:carol', result: { status: 'SETTLED' } });
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 0, posted: 400 });
  });

  it('releasing a freeze waits for a second staff member; until then payouts stay declined', async () => {
    const accountId = await stack.fundedAccount(1_000);
    expect((await ops('POST', `/accounts/${accountId}/freeze`, 'alice', { reason: 'chargeback investigation' })).json).toMatchObject({ status: 'frozen' });
    const requested = await ops('POST', `/accounts/${accountId}/unfreeze`, 'alice', { reason: 'investigation closed' });
    expect(requested.status).toBe(202);
    expect((await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'))).json.code).toBe('ACCOUNT_NOT_ACTIVE');
    expect((await decide(requested.json.approval_id, 'alice', 'approve')).json.code).toBe('APPROVER_IS_REQUESTER');
    const approved = await decide(requested.json.approval_id, 'carol', 'approve');
    expect(approved.json).toMatchObject({ status: 'approved', result: { account_id: accountId, status: 'active', changed_by: 'staff:alice' } });
    const allowed = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'));
    expect(allowed.status).toBe(201);
    await stack.waitForStatus(allowed.json.payout_id, ['SETTLED']);
    expect(await auditOf(accountId)).toEqual([
      ['staff:alice', 'account:freeze', 'applied'],
      ['staff:alice', 'account:unfreeze', 'requested'],
      ['staff:alice', 'approval:approve', 'refused'],
      ['staff:carol', 'approval:approve', 'applied'],
    ]);
    // A request made for one freeze does not lift the next one.
    await ops('POST', `/accounts/${accountId}/freeze`, 'alice', { reason: 'first freeze' });
    const stale = await ops('POST', `/accounts/${accountId}/unfreeze`, 'alice', { reason: 'first one cleared' });
    await sleep(5);
    await ops('POST', `/accounts/${accountId}/freeze`, 'dan', { reason: 'new fraud signal' });
    const refused = await decide(stale.json.approval_id, 'carol', 'approve');
    expect([refused.status, refused.json.code]).toEqual([409, 'APPROVAL_STALE']);
    expect((await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'))).json.code).toBe('ACCOUNT_NOT_ACTIVE');
    expect((await stack.pool.query('SELECT status, reason FROM account_status WHERE account_id = $1', [accountId])).rows[0]).toEqual({ status: 'frozen', reason: 'new fraud signal' });
    // Unfreezing an account that is not frozen opens nothing.
    const other = await stack.fundedAccount(10);
    expect((await ops('POST', `/accounts/${other}/unfreeze`, 'alice', { reason: 'never frozen' })).status).toBe(200);
  });
});
