import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { Module } from '@nestjs/common';
import { APP_GUARD, NestFactory, Reflector } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReconciliationActivities } from '../../activities/reconciliation';
import { reconciliationSummary } from '../../lib/reconciliation-runs';
import { AuthGuard } from '../../apps/api/auth/auth';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { ProblemFilter } from '../../apps/api/common/problem.filter';
import { buildOpenApiDocument } from '../../apps/api/docs/openapi';
import { ReconciliationController, reconciliationRoutes } from '../../apps/api/ops/reconciliation.controller';
import { PG_POOL } from '../../apps/api/tokens';
import { signToken } from '../../lib/tokens';
import { recordHistory } from '../replay/histories';
import { sleep } from '../../lib/wait';
import type { ReconciliationInput, ReconciliationResult } from '../../contracts/reconciliation';
import type { reconciliationWorkflow } from '../../workflows/reconciliation/reconciliation.workflow';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';
import { uniqueId, providerRegistry } from '../support';

const fakePayoutId = () => `po_${randomBytes(16).toString('hex')}`;
const fakeDepositId = () => `dp_${randomBytes(16).toString('hex')}`;
const findings = (run: { mismatches: { kind: string; reference: string }[] }) =>
  run.mismatches.map((m) => ({ kind: m.kind, reference: m.reference })).sort((a, b) => a.reference.localeCompare(b.reference));

describe('reconciliation: ledger invariants and the settlement report against the ledger', () => {
  let stack: SagaStack;
  let api: NestFastifyApplication;
  let since: string;
  /** Everything this file created through the platform: a scoped run compares only these. */
  const ours: string[] = [];
  const planted: Record<'providerOnly' | 'amount' | 'status' | 'ledgerOnly' | 'depositOnly', string> = {
    providerOnly: fakePayoutId(),
    amount: fakePayoutId(),
    status: fakePayoutId(),
    ledgerOnly: fakePayoutId(),
    depositOnly: fakeDepositId(),
  };

  beforeAll(async () => {
    since = new Date(Date.now() - 1_000).toISOString();
    stack = await startSagaStack();
    // The controller in a minimal Nest app, guarded as the real API guards it (the lead registers it in app.ts).
    @Module({
      controllers: [ReconciliationController],
      providers: [
        { provide: PG_POOL, useValue: stack.pool },
        { provide: APP_GUARD, useFactory: (reflector: Reflector) => new AuthGuard(reflector, stack.config.AUTH_JWT_SECRET, { maxLifetimeSeconds: stack.config.AUTH_MAX_TOKEN_LIFETIME_SECONDS }), inject: [Reflector] },
      ],
    })
    class ReconciliationTestModule {}
    api = await NestFactory.create<NestFastifyApplication>(ReconciliationTestModule, new FastifyAdapter(), { logger: false });
    api.useGlobalFilters(new ProblemFilter());
    await api.init();
    await api.getHttpAdapter().getInstance().ready();
  });
  afterAll(async () => {
    await api?.close();
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const reconcile = (input: ReconciliationInput): Promise<ReconciliationResult> =>
    stack.temporal.workflow.execute<typeof reconciliationWorkflow>('reconciliationWorkflow', {
      taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
      workflowId: uniqueId('reconciliation-test'),
      args: [input],
    });
  const latest = async (role?: 'staff' | 'player' | 'service') => {
    const headers = role ? { authorization: `Bearer ${await signToken({ sub: `${role}-1`, role }, stack.config.AUTH_JWT_SECRET)}` } : {};
    const res = await api.getHttpAdapter().getInstance().inject({ method: 'GET', url: '/v1/ops/reconciliation/latest', headers });
    return { status: res.statusCode, contentType: res.headers['content-type'], json: res.json() };
  };
  const sandboxPost = async (kind: 'payouts' | 'deposits', body: Record<string, unknown>) => {
    const res = await fetch(`${stack.sandboxUrl}/v1/${kind}`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': String(body.reference) }, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
  };
  const waitAtSandbox = async (kind: 'payouts' | 'deposits', reference: string, statuses: string[]) => {
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${stack.sandboxUrl}/v1/${kind}?reference=${reference}`);
      if (res.ok && statuses.includes(((await res.json()) as { status: string }).status)) return;
      await sleep(50);
    }
    throw new Error(`${reference} did not reach ${statuses.join('|')} at the sandbox`);
  };
  /** A hold and its post in the ledger, as a payout saga would write them, for a payout of our choosing. */
  const ledgerPost = async (payoutId: string, minor: number) => {
    const accountId = await stack.fundedAccount(minor);
    const clearing = await stack.ledger.ensureSystemAccount('provider_clearing', 'EUR');
    const hold = await stack.ledger.hold({ idempotencyKey: `${payoutId}:hold`, debitAccountId: accountId, creditAccountId: clearing.id, amount: minor, currency: 'EUR', metadata: { payout_id: payoutId, step: 'hold' } });
    if (!('transfer' in hold)) throw new Error(`hold refused: ${hold.code}`);
    const post = await stack.ledger.post({ idempotencyKey: `${payoutId}:post`, pendingId: hold.transfer.id, metadata: { payout_id: payoutId, step: 'post' } });
    expect(post.result).toBe('ok');
  };

  it('before any run, the staff endpoint answers RECONCILIATION_NOT_FOUND or an earlier run', async () => {
    const res = await latest('staff');
    // The test database may be shared with an earlier test run.
    if (res.status === 404) expect(res.json).toMatchObject({ code: 'RECONCILIATION_NOT_FOUND', status: 404 });
    else expect(res.status).toBe(200);
  });

  it('a clean run: settled, failed, returned and refused payouts and credited and failed deposits all agree', async () => {
    const accountId = await stack.fundedAccount(100_000);
    const outcomes: [string, string][] = [
      ['wallet-0001', 'SETTLED'],
      ['sandbox:fail', 'FAILED'],
      ['sandbox:return_after_settlement', 'RETURNED'],
      ['sandbox:reject', 'FAILED'],
    ];
    for (const [wallet, status] of outcomes) {
      const res = await stack.postPayout(payoutRequest(accountId, 1_000, wallet), uniqueId('key'));
      expect(res.status).toBe(201);
      await stack.waitForStatus(res.json.payout_id, [status]);
      ours.push(res.json.payout_id);
    }
    const credited = await stack.postDeposit(depositRequest(accountId, 2_000), uniqueId('key'));
    await stack.waitForDepositStatus(credited.json.deposit_id, ['CREDITED']);
    const failedKey = uniqueId('key');
    const failedId = resourceIdFor('dp', accountId, failedKey);
    await stack.scriptSandbox(failedId, { scenario: 'fail' });
    await stack.postDeposit(depositRequest(accountId, 3_000), failedKey);
    await stack.waitForDepositStatus(failedId, ['FAILED']);
    ours.push(credited.json.deposit_id, failedId);

    const result = await reconcile({ since, graceSeconds: 0, references: ours });
    expect(result).toMatchObject({ status: 'clean', mismatches: 0, invariantViolations: 0, since });
    const run = (await latest('staff')).json;
    expect(run).toMatchObject({ run_id: result.runId, status: 'clean', scope: [...ours].sort(), grace_seconds: 0, mismatches: [], invariant_violations: [] });
    // 3 payouts reached the provider (the refused one never did), 2 deposits; post, post+refund and credit in the ledger.
    expect(run.counts).toEqual({ provider_items: 5, ledger_movements: 3, looked_up: 0, carried_over: 0, mismatches: 0 });
  });

  it('planted mismatches are found: a settlement the ledger lacks, an amount, a status, a ledger post the provider lacks', async () => {
    await sandboxPost('payouts', { reference: planted.providerOnly, amount: { minor_units: 1_234, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-9999' } });
    await sandboxPost('payouts', { reference: planted.amount, amount: { minor_units: 700, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-9999' } });
    await sandboxPost('payouts', { reference: planted.status, amount: { minor_units: 300, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'sandbox:fail' } });
    await sandboxPost('deposits', { reference: planted.depositOnly, amount: { minor_units: 900, currency: 'EUR' } });
    await ledgerPost(planted.amount, 600);
    await ledgerPost(planted.status, 300);
    await ledgerPost(planted.ledgerOnly, 450);
    await waitAtSandbox('payouts', planted.providerOnly, ['settled']);
    await waitAtSandbox('payouts', planted.amount, ['settled']);
    await waitAtSandbox('payouts', planted.status, ['failed']);
    await waitAtSandbox('deposits', planted.depositOnly, ['succeeded']);

    const result = await reconcile({ since, graceSeconds: 0, references: [...ours, ...Object.values(planted)] });
    await recordHistory(stack.temporal, 'reconciliation-mismatches', result.runId.split('/')[0]!);
    expect(result).toMatchObject({ status: 'mismatches', mismatches: 5 });
    expect(result.byKind).toEqual({ missing_in_ledger: 2, missing_at_provider: 1, amount_mismatch: 1, status_mismatch: 1, ledger_invariant: 0 });

    const res = await latest('staff');
    expect(res.status).toBe(200);
    expect(res.json.run_id).toBe(result.runId);
    expect(findings(res.json)).toEqual(
      [
        { kind: 'missing_in_ledger', reference: planted.providerOnly },
        { kind: 'amount_mismatch', reference: planted.amount },
        { kind: 'status_mismatch', reference: planted.status },
        { kind: 'missing_at_provider', reference: planted.ledgerOnly },
        { kind: 'missing_in_ledger', reference: planted.depositOnly },
      ].sort((a, b) => a.reference.localeCompare(b.reference)),
    );
    const settlementOnly = res.json.mismatches.find((m: { reference: string }) => m.reference === planted.providerOnly);
    expect(settlementOnly).toMatchObject({
      item_kind: 'payout',
      provider_item: { kind: 'payout', reference: planted.providerOnly, status: 'settled', amount: { minor_units: 1_234, currency: 'EUR' }, source: 'report' },
      ledger_facts: [],
    });
    const ledgerOnly = res.json.mismatches.find((m: { reference: string }) => m.reference === planted.ledgerOnly);
    expect(ledgerOnly).toMatchObject({ provider_item: null, ledger_facts: [{ kind: 'hold', amount: 450 }, { kind: 'post', amount: 450 }] });
    expect(res.json.counts).toMatchObject({ looked_up: 1, mismatches: 5 });
  });

  it('the staff endpoint is for staff only', async () => {
    for (const role of ['player', 'service'] as const) {
      const res = await latest(role);
      expect(res.status).toBe(403);
      expect(res.contentType).toMatch(/^application\/problem\+json/);
      expect(res.json).toMatchObject({ code: 'FORBIDDEN' });
    }
    expect((await latest()).status).toBe(401);
    const doc = buildOpenApiDocument(reconciliationRoutes, 'test') as { paths: Record<string, { get?: { responses: Record<string, unknown> } }> };
    expect(Object.keys(doc.paths['/v1/ops/reconciliation/latest']!.get!.responses)).toEqual(['200', '401', '403', '404']);
  });

  it('settlements within the grace period are left to the next run', async () => {
    const result = await reconcile({ since, graceSeconds: 3_600, references: [planted.providerOnly] });
    expect(result).toMatchObject({ status: 'clean', mismatches: 0, since, until: since });
  });

  it('a retried step records nothing twice (mismatches keyed by run, kind and reference; the run by its id)', async () => {
    const activities = createReconciliationActivities({ pool: stack.pool, providers: providerRegistry(stack.pool, { sandbox: stack.sandboxUrl, sandboxB: stack.sandboxBUrl }) });
    const runId = `${uniqueId('manual')}/run-1`;
    const window = { since, until: new Date().toISOString() };
    const first = await activities.reconcileSettlements({ ...window, runId, references: [planted.providerOnly, planted.ledgerOnly] });
    const again = await activities.reconcileSettlements({ ...window, runId, references: [planted.providerOnly, planted.ledgerOnly] });
    expect(again).toEqual(first);
    const input = { runId, workflowId: 'manual', window, actionTime: window.until, graceSeconds: 0, scope: [planted.ledgerOnly, planted.providerOnly], startedAt: window.until, invariants: { ok: true, violations: [] }, comparison: first };
    const recorded = await activities.recordReconciliationRun(input);
    expect(await activities.recordReconciliationRun(input)).toEqual(recorded);
    expect(recorded).toMatchObject({ status: 'mismatches', mismatches: 2, byKind: { missing_in_ledger: 1, missing_at_provider: 1 } });
    const { rows } = await stack.pool.query('SELECT kind FROM reconciliation_mismatches WHERE run_id = $1', [runId]);
    expect(rows).toHaveLength(2);
    // Append-only.
    await expect(stack.pool.query('DELETE FROM reconciliation_mismatches WHERE run_id = $1', [runId])).rejects.toMatchObject({ code: '23001' });
    await expect(stack.pool.query("UPDATE reconciliation_runs SET status = 'clean' WHERE run_id = $1", [runId])).rejects.toMatchObject({ code: '23001' });
  });

  it('full runs: each starts where the last ended, restates open mismatches, and feeds the metric', async () => {
    // Unscoped, as the schedule runs it. The shared test database holds other files' payouts, whose
    // provider is another sandbox: only this file's planted findings are asserted.
    const first = await reconcile({ graceSeconds: 0 });
    const second = await reconcile({ graceSeconds: 0 });
    expect(second.since).toBe(first.until);

    const run = (await latest('staff')).json;
    expect(run).toMatchObject({ run_id: second.runId, scope: null });
    expect(run.counts.carried_over).toBeGreaterThanOrEqual(5);
    const mine = findings({ mismatches: run.mismatches.filter((m: { reference: string }) => Object.values(planted).includes(m.reference)) });
    expect(mine).toContainEqual({ kind: 'missing_in_ledger', reference: planted.providerOnly });
    expect(mine).toContainEqual({ kind: 'missing_at_provider', reference: planted.ledgerOnly });
    expect(mine).toContainEqual({ kind: 'amount_mismatch', reference: planted.amount });
    const carried = run.mismatches.find((m: { reference: string }) => m.reference === planted.providerOnly);
    expect(carried.provider_item).toMatchObject({ source: 'lookup', status: 'settled' });

    const summary = await reconciliationSummary(stack.pool);
    expect(summary.last_run_at).toBe(run.finished_at);
    expect(summary.last_run_mismatches).toBe(second.mismatches);
    expect(Object.values(summary.open_by_kind).reduce((a, b) => a + b, 0)).toBe(second.mismatches);
    expect(summary.open_by_kind).toEqual(second.byKind);
  });
});
