import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { debtOf, receivableAccountId } from '../../activities/player-debt';
import { depositReversalWorkflowId } from '../../contracts/deposit';
import type { ReconciliationResult } from '../../contracts/reconciliation';
import { signToken } from '../../lib/tokens';
import { sleep } from '../../lib/wait';
import { SIGNATURE_HEADER, signWebhook } from '../../lib/webhook-signature';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe("chargebacks: a reversed deposit is taken back once; what the balance cannot cover is the player's debt", () => {
  let stack: SagaStack;
  const staff: Record<string, string> = {};
  beforeAll(async () => {
    stack = await startSagaStack();
    for (const name of ['alice', 'bob']) staff[name] = `Bearer ${await signToken({ sub: name, role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  /** A credited deposit (the sandbox's default scenario succeeds and calls back). */
  const creditedDeposit = async (accountId: string, minor: number) => {
    const key = uniqueId('dep');
    const res = await stack.postDeposit(depositRequest(accountId, minor), key);
    expect(res.status).toBe(201);
    const view = await stack.waitForDepositStatus(res.json.deposit_id, ['CREDITED']);
    return { depositId: res.json.deposit_id as string, providerDepositId: view.provider_deposit_id as string };
  };
  const paidOut = async (accountId: string, minor: number) => {
    const res = await stack.postPayout(payoutRequest(accountId, minor), uniqueId('key'));
    expect(res.status).toBe(201);
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    return res.json.payout_id as string;
  };
  const reverseAtProvider = async (providerDepositId: string) => {
    const res = await fetch(`${stack.sandboxUrl}/sandbox/deposits/${providerDepositId}/reverse`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'chargeback' }) });
    expect(res.status).toBe(200);
  };
  const reversalOutcome = (depositId: string) => stack.temporal.workflow.getHandle(depositReversalWorkflowId(depositId)).result() as Promise<{ reversed: boolean; detail: string }>;
  const waitForReversalSaga = async (depositId: string) => {
    for (let i = 0; i < 100; i++) {
      try {
        return await reversalOutcome(depositId);
      } catch {
        await sleep(100); // not started yet: the webhook is on its way
      }
    }
    throw new Error(`no reversal saga for ${depositId}`);
  };
  const postWebhook = (body: string) =>
    fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, { method: 'POST', headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, body, Math.floor(Date.now() / 1000)) }, body });
  const steps = async (depositId: string) => (await stack.depositTransfersOf(depositId)).map((t) => [t.idempotency_key.slice(depositId.length + 1), t.amount]);

  it('reversed after the player withdrew everything: the debt is recorded, the next payout declined, a later deposit repays it; 3 replays change nothing; reconciliation clean', async () => {
    const since = new Date(Date.now() - 1_000).toISOString();
    const accountId = await stack.fundedAccount(0);
    const first = await creditedDeposit(accountId, 5_000);
    const payoutId = await paidOut(accountId, 5_000);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 0, posted: 0 });

    await reverseAtProvider(first.providerDepositId);
    expect(await waitForReversalSaga(first.depositId)).toMatchObject({ reversed: true });
    expect(await steps(first.depositId)).toEqual([
      ['credit', 5_000],
      ['chargeback', 5_000],
    ]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 0, held: 0, posted: 0 });
    expect(await debtOf(stack.ledger, accountId)).toBe(5_000);
    expect((await stack.getDeposit(first.depositId)).status).toBe('REVERSED');

    const declined = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'));
    expect([declined.status, declined.json.code]).toEqual([422, 'OUTSTANDING_DEBT']);

    // The provider's webhook, delivered three more times: acknowledged, nothing moves again.
    const { rows } = await stack.pool.query<{ payload: unknown }>("SELECT payload FROM webhook_events WHERE reference = $1 AND event_type = 'deposit.reversed'", [first.depositId]);
    expect(rows).toHaveLength(1);
    const body = typeof rows[0]!.payload === 'string' ? rows[0]!.payload : JSON.stringify(rows[0]!.payload);
    for (let i = 0; i < 3; i++) {
      const replay = await postWebhook(body);
      expect([replay.status, ((await replay.json()) as any).delivered]).toEqual([200, 'already_signalled']);
    }
    expect(await steps(first.depositId)).toEqual([
      ['credit', 5_000],
      ['chargeback', 5_000],
    ]);

    // A later deposit repays the debt first; what is left is the player's.
    const second = await creditedDeposit(accountId, 8_000);
    expect(await steps(second.depositId)).toEqual([
      ['credit', 8_000],
      ['repay', 5_000],
    ]);
    expect(await debtOf(stack.ledger, accountId)).toBe(0);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 3_000, posted: 3_000 });
    const allowed = await paidOut(accountId, 1_000);

    const events = await stack.pool.query<{ event_type: string }>('SELECT event_type FROM outbox_events WHERE account_id = $1 ORDER BY id', [accountId]);
    expect(events.rows.map((e) => e.event_type)).toEqual(['deposit.credited', 'payout.held', 'payout.settled', 'deposit.reversed', 'deposit.credited', 'debt.collected', 'payout.held', 'payout.settled']);

    const result = (await stack.temporal.workflow.execute('reconciliationWorkflow', {
      taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
      workflowId: uniqueId('reconciliation-chargeback'),
      args: [{ since, graceSeconds: 0, references: [first.depositId, second.depositId, payoutId, allowed] }],
    })) as ReconciliationResult;
    expect(result).toMatchObject({ status: 'clean', mismatches: 0, invariantViolations: 0 });
  });

  it('a balance that covers part of the chargeback gives that part; the rest is owed', async () => {
    const accountId = await stack.fundedAccount(0);
    const deposit = await creditedDeposit(accountId, 4_000);
    await paidOut(accountId, 2_500);
    await reverseAtProvider(deposit.providerDepositId);
    expect(await waitForReversalSaga(deposit.depositId)).toMatchObject({ reversed: true });
    expect(await steps(deposit.depositId)).toEqual([
      ['credit', 4_000],
      ['chargeback', 4_000],
      ['chargeback:collect', 1_500],
    ]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 0, posted: 0 });
    expect(await debtOf(stack.ledger, accountId)).toBe(2_500);
    expect((await stack.ledger.getTotals(receivableAccountId(accountId)))?.posted).toBe(-2_500n);
    // Repaid in part by a small deposit: still owing, still declined.
    const small = await creditedDeposit(accountId, 1_000);
    expect(await steps(small.depositId)).toEqual([
      ['credit', 1_000],
      ['repay', 1_000],
    ]);
    expect(await debtOf(stack.ledger, accountId)).toBe(1_500);
    expect((await stack.postPayout(payoutRequest(accountId, 1), uniqueId('key'))).json.code).toBe('OUTSTANDING_DEBT');
  });

  it('a reversal webhook the provider does not bear out moves nothing and is an incident for staff', async () => {
    const accountId = await stack.fundedAccount(0);
    const deposit = await creditedDeposit(accountId, 2_000);
    const forged = JSON.stringify({
      id: uniqueId('evt'),
      type: 'deposit.reversed',
      created_at: new Date().toISOString(),
      data: { object: { id: deposit.providerDepositId, reference: deposit.depositId, status: 'reversed', reversal_reason: 'chargeback' } },
    });
    const delivered = await postWebhook(forged);
    expect(((await delivered.json()) as any).delivered).toBe('reversal_saga_started');
    expect(await waitForReversalSaga(deposit.depositId)).toMatchObject({ reversed: false, detail: expect.stringMatching(/not reversed/) });
    expect(await steps(deposit.depositId)).toEqual([['credit', 2_000]]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 2_000 });
    const incidents = await stack.pool.query<{ kind: string }>('SELECT kind FROM provider_incidents WHERE reference = $1', [deposit.depositId]);
    expect(incidents.rows.map((r) => r.kind)).toEqual(['claim_contradicted']); // its record says succeeded

    // The provider reverses it for real later: its webhook starts a new run, which takes the deposit back once.
    await reverseAtProvider(deposit.providerDepositId);
    let outcome = await reversalOutcome(deposit.depositId);
    for (let i = 0; i < 100 && !outcome.reversed; i++) {
      await sleep(100);
      outcome = await reversalOutcome(deposit.depositId);
    }
    expect(outcome).toMatchObject({ reversed: true });
    expect(await steps(deposit.depositId)).toEqual([
      ['credit', 2_000],
      ['chargeback', 2_000],
      ['chargeback:collect', 2_000],
    ]);
  });

  it('a staff chargeback is a four-eyes request: the requester cannot approve it; approved by another, the deposit is taken back once', async () => {
    const accountId = await stack.fundedAccount(0);
    const deposit = await creditedDeposit(accountId, 3_000);
    const ops = async (path: string, who: string, body: unknown) => {
      const res = await fetch(`${stack.apiUrl}/v1/ops${path}`, { method: 'POST', headers: { authorization: staff[who]!, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, json: (await res.json()) as any };
    };
    const requested = await ops(`/deposits/${deposit.depositId}/chargeback`, 'alice', { reason: 'card scheme notice CB-77' });
    expect([requested.status, requested.json.action]).toEqual([202, 'chargeback']);
    expect((await ops(`/approvals/${requested.json.approval_id}`, 'alice', { decision: 'approve', reason: 'mine' })).json.code).toBe('APPROVER_IS_REQUESTER');
    expect(await steps(deposit.depositId)).toEqual([['credit', 3_000]]);
    const approved = await ops(`/approvals/${requested.json.approval_id}`, 'bob', { decision: 'approve', reason: 'notice verified' });
    expect(approved.json).toMatchObject({ status: 'approved', result: { deposit_id: deposit.depositId, reversed: true } });
    expect(await steps(deposit.depositId)).toEqual([
      ['credit', 3_000],
      ['chargeback', 3_000],
      ['chargeback:collect', 3_000],
    ]);
    expect(await debtOf(stack.ledger, accountId)).toBe(0);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 0, posted: 0 });
    const again = await ops(`/deposits/${deposit.depositId}/chargeback`, 'alice', { reason: 'again' });
    expect([again.status, again.json.code]).toEqual([409, 'DEPOSIT_NOT_REVERSIBLE']);
    const unknown = await ops(`/deposits/${resourceIdFor('dp', accountId, 'nope')}/chargeback`, 'alice', { reason: 'nothing' });
    expect(unknown.status).toBe(404);
  });
});
