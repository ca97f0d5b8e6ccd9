import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot } from '../../lib/config';
import { signToken } from '../../lib/tokens';
import { sleep } from '../../lib/wait';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, spawnWorkerProcess, startSagaStack, type SagaStack } from '../support/saga-stack';

/** How often the worker under test re-checks its marks (the default is 30 s). */
const RECHECK_MS = 1_000;
// Temporal's enum values (temporal.api.enums.v1), as fetchHistory and the reset request carry them.
const EVENT_TYPE_WORKFLOW_TASK_COMPLETED = 7;
const EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED = 26;
const RESET_REAPPLY_TYPE_NONE = 2;
/** Internal wording a player must never see. */
const INTERNAL = /TypeError|Cannot read|workflow task|workflow_task|stack|bundle|TMPRL/i;

/** The real worker process (apps/worker/main.ts), so the marking is tested as wired and its metrics can be scraped. */
async function spawnWorker(stack: SagaStack) {
  const worker = await spawnWorkerProcess(stack, { WORKFLOW_TASK_FAILURE_RECHECK_MS: String(RECHECK_MS) });
  await worker.ready;
  return worker;
}

async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  for (const giveUpAt = Date.now() + timeoutMs; ; await sleep(200)) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > giveUpAt) throw new Error(`${what}: not within ${timeoutMs} ms`);
  }
}

/** Metric names a PromQL expression reads (not functions, keywords, labels, durations or strings). */
function metricNamesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset']);
  return [...bare.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((name) => !keywords.has(name));
}

describe('a saga whose workflow task keeps failing is marked for staff, and unmarked once healthy (issue 9)', () => {
  let stack: SagaStack;
  let worker: Awaited<ReturnType<typeof spawnWorker>>;
  let staff: string;
  let payoutId: string;
  let accountId: string;

  beforeAll(async () => {
    stack = await startSagaStack({ FOUR_EYES_ACTIONS: 'none' }, { worker: false }); // staff resolve alone here; four eyes: test/ops/four-eyes.test.ts
    worker = await spawnWorker(stack);
    staff = `Bearer ${await signToken({ sub: 'finance-9', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    if (worker?.child.exitCode === null) {
      worker.child.kill('SIGTERM');
      await new Promise((resolve) => worker.child.once('exit', resolve));
    }
    // The real worker process ensured the reconciliation schedule on the shared test server: remove it.
    await stack?.temporal.schedule.getHandle('reconciliation').delete().catch(() => undefined);
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const staffGet = async (url: string) => (await fetch(`${stack.apiUrl}${url}`, { headers: { authorization: staff } })).json() as Promise<any>;
  const listedAsStuck = async (id: string) => ((await staffGet('/v1/ops/payouts?stuck=true&limit=500')).items as any[]).find((item) => item.payout_id === id);

  it('a payout whose task fails is listed as stuck with its failure for staff within seconds; the player sees only what it saw before', async () => {
    accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 700, 'sandbox:stay_pending'), uniqueId('key'));
    payoutId = res.json.payout_id as string;
    await stack.waitForStatus(payoutId, ['SUBMITTED']);
    expect(await listedAsStuck(payoutId)).toBeUndefined();

    // A defect: a signal the saga's code cannot handle (its handler throws), so every later workflow task fails.
    const failedAt = Date.now();
    await stack.temporal.workflow.getHandle(payoutId).signal('providerEvent', null);
    const listed = await eventually('the payout listed with a failing workflow task', 15_000, () => listedAsStuck(payoutId));
    expect(Date.now() - failedAt).toBeLessThan(15_000);
    expect(listed).toMatchObject({
      payout_id: payoutId,
      account_id: accountId,
      status: 'SUBMITTED',
      stuck: true,
      workflow_task_failing: true,
      amount_minor: 700,
      currency: 'EUR',
      workflow_task_failure: { kind: 'workflow_error', run_id: expect.any(String), failing_since: expect.any(String) },
    });
    expect(listed.workflow_task_failure.detail).toMatch(/TypeError: Cannot read properties of null/);
    // Once only: the mark is not also listed from Temporal visibility.
    expect(((await staffGet('/v1/ops/payouts?stuck=true&limit=500')).items as any[]).filter((item) => item.payout_id === payoutId)).toHaveLength(1);
    expect(((await staffGet('/v1/ops/payouts?stuck=false&limit=500')).items as any[]).some((item) => item.payout_id === payoutId)).toBe(false);

    const forStaff = await staffGet(`/v1/payouts/${payoutId}`);
    expect(forStaff).toMatchObject({ status: 'SUBMITTED', stuck: true, workflow_task_failure: { kind: 'workflow_error', detail: expect.stringContaining('TypeError') } });

    for (const reader of [await stack.playerAuth(accountId), stack.service]) {
      const seen = await stack.getPayout(payoutId, reader);
      expect(seen).toMatchObject({ status: 'SUBMITTED', stuck: false });
      expect(seen.workflow_task_failure).toBeUndefined();
      expect(JSON.stringify(seen)).not.toMatch(INTERNAL);
      expect(seen.timeline).toEqual([{ at: expect.any(String), status: 'SUBMITTED', note: 'read_model' }]);
    }

    const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/sagas_workflow_task_failing\{workflow_type="payoutSaga",service="api"\} [1-9]/);
  });

  it('keeps the mark while Temporal keeps retrying the task, with the attempt it saw', async () => {
    const checked = await eventually('a check that saw the retried task', 10_000, async () => {
      const { rows } = await stack.pool.query<{ attempt: number | null }>('SELECT attempt FROM workflow_task_failures WHERE workflow_id = $1', [payoutId]);
      return rows[0]?.attempt != null ? rows[0] : undefined;
    });
    expect(checked.attempt).toBeGreaterThan(1);
    await sleep(3 * RECHECK_MS);
    expect(await listedAsStuck(payoutId)).toMatchObject({ workflow_task_failing: true });
  });

  it('the mark goes once the saga is healthy again (reset past the bad signal), and the saga can be resolved', async () => {
    const handle = stack.temporal.workflow.getHandle(payoutId);
    const { events } = await handle.fetchHistory();
    const signalled = events!.findIndex((e) => e.eventType === EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED);
    const lastGoodTask = events!.slice(0, signalled).findLast((e) => e.eventType === EVENT_TYPE_WORKFLOW_TASK_COMPLETED)!;
    await stack.temporal.workflowService.resetWorkflowExecution({
      namespace: stack.config.TEMPORAL_NAMESPACE,
      workflowExecution: { workflowId: payoutId },
      workflowTaskFinishEventId: lastGoodTask.eventId,
      requestId: randomUUID(),
      reason: 'test: drop the signal the code could not handle',
      resetReapplyType: RESET_REAPPLY_TYPE_NONE,
    });

    await eventually('the mark removed', 15_000, async () => ((await listedAsStuck(payoutId)) ? undefined : true));
    const forStaff = await staffGet(`/v1/payouts/${payoutId}`);
    expect(forStaff.workflow_task_failure).toBeUndefined();
    expect(forStaff.stuck).toBe(false);
    expect(worker.output()).toContain('saga no longer marked: its workflow task is healthy again');

    const resolved = await fetch(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/resolve`, {
      method: 'POST',
      headers: { authorization: staff, 'content-type': 'application/json' },
      body: JSON.stringify({ outcome: 'settle', reason: 'provider confirmed, ticket FIN-9' }),
    });
    expect(resolved.status).toBe(200);
    expect(await stack.transfersOf(payoutId)).toEqual([
      { kind: 'hold', amount: 700 },
      { kind: 'post', amount: 700 },
    ]);
  });

  it('a deposit whose task fails is marked in its staff view only; the mark goes when the saga is closed', async () => {
    const depositAccount = await stack.fundedAccount(0);
    const res = await stack.postDeposit(depositRequest(depositAccount, 2_500), uniqueId('dep'));
    expect(res.status).toBe(201);
    const depositId = res.json.deposit_id as string;
    await stack.temporal.workflow.getHandle(depositId).signal('depositProviderEvent', null);

    const forStaff = await eventually('the deposit marked', 15_000, async () => {
      const view = await staffGet(`/v1/deposits/${depositId}`);
      return view.workflow_task_failure ? view : undefined;
    });
    expect(forStaff).toMatchObject({ status: 'PENDING', stuck: true, workflow_task_failure: { kind: 'workflow_error', detail: expect.stringContaining('TypeError') } });
    const seen = await stack.getDeposit(depositId, await stack.playerAuth(depositAccount));
    expect(seen.workflow_task_failure).toBeUndefined();
    expect(JSON.stringify(seen)).not.toMatch(INTERNAL);

    const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/sagas_workflow_task_failing\{workflow_type="depositSaga",service="api"\} [1-9]/);

    await stack.temporal.workflow.getHandle(depositId).terminate('test over');
    await eventually('the mark of the closed deposit removed', 15_000, async () => ((await staffGet(`/v1/deposits/${depositId}`)).workflow_task_failure ? undefined : true));
    expect(await stack.depositTransfersOf(depositId)).toEqual([]);
  });

  // The whole rule file is checked by test/telemetry/dashboards.test.ts; here, the rules about failing workflow
  // tasks, against the metrics of a worker that has just seen such failures.
  it('the workflow task failure alert rules read only metrics the live worker and API export', async () => {
    const file = parse(fs.readFileSync(path.join(repoRoot, 'deploy/prometheus/alerts.yml'), 'utf8')) as { groups: { name: string; rules: Record<string, unknown>[] }[] };
    const ours = ['WorkflowTaskFailed', 'SagasStoppedByFailingWorkflowTask'];
    const rules = { groups: file.groups.map((g) => ({ ...g, rules: g.rules.filter((r) => ours.includes(r.alert as string)) })).filter((g) => g.rules.length > 0) };
    expect(Array.isArray(rules.groups) && rules.groups.length > 0).toBe(true);
    const scraped = [await (await fetch(worker.metricsUrl)).text(), await (await fetch(`${stack.apiUrl}/metrics`)).text()].join('\n');
    // The failures above were counted by the SDK in the worker.
    expect(scraped).toMatch(/^temporal_workflow_task_execution_failed\{[^}]*workflow_type="payoutSaga"[^}]*\} [1-9]/m);

    const alerts: string[] = [];
    for (const group of rules.groups) {
      expect(group.name).toEqual(expect.any(String));
      expect(group.rules.length).toBeGreaterThan(0);
      for (const rule of group.rules) {
        expect(Object.keys(rule).every((key) => ['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations'].includes(key)), JSON.stringify(rule)).toBe(true);
        expect(rule.alert).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
        expect(rule.expr).toEqual(expect.any(String));
        if (rule.for !== undefined) expect(rule.for).toMatch(/^\d+[smhdwy]$/);
        expect((rule.annotations as Record<string, unknown>).summary).toEqual(expect.any(String));
        const names = metricNamesIn(rule.expr as string);
        expect(names.length, rule.expr as string).toBeGreaterThan(0);
        for (const name of names) expect(scraped, `${rule.alert} reads ${name}`).toMatch(new RegExp(`^(# TYPE )?${name}[ {]`, 'm'));
        alerts.push(rule.alert as string);
      }
    }
    expect(alerts).toEqual(expect.arrayContaining(['WorkflowTaskFailed', 'SagasStoppedByFailingWorkflowTask']));
    expect(rules.groups.flatMap((g) => g.rules).find((r) => r.alert === 'WorkflowTaskFailed')!.expr).toContain('increase(temporal_workflow_task_execution_failed[5m])');
  });
});
