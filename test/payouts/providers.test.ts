import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { reconciliationWorkflow } from '../../workflows';
import { SA } from '../../contracts/search-attributes';
import { settings } from '../../lib/config';
import { readRun } from '../../lib/reconciliation-runs';
import { signToken } from '../../lib/tokens';
import { sleep } from '../../lib/wait';
import { signWebhook } from '../../lib/webhook-signature';
import { providerRegistry, uniqueId } from '../support';
import { createProviderActivities } from '../../activities/provider';
import { createDestinationVault } from '../../lib/destination-vault';
import { recordHistory } from '../replay/histories';
import { spawnWorkerProcess, startSagaStack, type SagaStack } from '../support/saga-stack';

/**
 * Several providers, on the running stack: two sandbox aggregators over HTTP (`sandbox`, `sandbox-b`), the
 * default routes (cards and e-wallets to sandbox-b, bank transfers to sandbox), and a real worker whose
 * breakers watch both.
 */
const PROVIDER_SETTINGS: Record<string, string> = {
  PAYOUT_ROUTES: settings.PAYOUT_ROUTES.default!,
  PROVIDER_FAILOVER_AFTER_MS: '3000',
  PROVIDER_BREAKER_MIN_CALLS: '3',
  PROVIDER_BREAKER_WINDOW_MS: '10000',
  PROVIDER_BREAKER_RESET_MS: '2000',
};

const IBAN = 'DE89370400440532013000';
type Provider = 'sandbox' | 'sandbox-b';

function helpers(stack: SagaStack) {
  const urlOf = (provider: Provider) => (provider === 'sandbox' ? stack.sandboxUrl : stack.sandboxBUrl);
  return {
    /** The provider's own record of a reference (404: it has none). */
    async recordAt(provider: Provider, reference: string): Promise<{ status: number; body: any }> {
      const res = await fetch(`${urlOf(provider)}/v1/payouts?reference=${encodeURIComponent(reference)}`);
      return { status: res.status, body: res.status === 200 ? await res.json() : undefined };
    },
    async outage(provider: Provider, mode: 'error' | 'timeout' | 'off') {
      const res = await fetch(`${urlOf(provider)}/sandbox/outage`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode }) });
      expect(res.status).toBe(200);
    },
    async payout(accountId: string, destination: Record<string, string>, minor = 1_000, currency = 'EUR') {
      const res = await stack.postPayout({ account_id: accountId, amount: { minor_units: minor, currency }, destination }, uniqueId('key'));
      expect([201, 202], res.text).toContain(res.status);
      return res.json.payout_id as string;
    },
    async providerAttribute(payoutId: string) {
      const description = await stack.temporal.workflow.getHandle(payoutId).describe();
      return description.typedSearchAttributes.get(SA.Provider);
    },
    /** A reconciliation run scoped to these payouts, as the schedule's workflow runs it. */
    reconcile(references: string[], name: string) {
      return stack.temporal.workflow.execute<typeof reconciliationWorkflow>('reconciliationWorkflow', {
        taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
        workflowId: uniqueId(name),
        args: [{ graceSeconds: 0, references }],
      });
    },
    /** Every record any provider holds of the payout, under any of its attempts' references. */
    async recordsEverywhere(payoutId: string) {
      const found: { provider: Provider; reference: string; status: string }[] = [];
      for (const provider of ['sandbox', 'sandbox-b'] as const) {
        for (const reference of [payoutId, `${payoutId}:a2`, `${payoutId}:a3`]) {
          const record = await this.recordAt(provider, reference);
          if (record.status === 200) found.push({ provider, reference, status: record.body.status });
        }
      }
      return found;
    },
  };
}

const attemptsOf = (view: any) => view.timeline.filter((e: any) => e.attempt !== undefined).map((e: any) => ({ status: e.status, provider: e.provider, attempt: e.attempt }));

describe('routing, failover and per-provider webhooks and reconciliation', () => {
  let stack: SagaStack;
  let h: ReturnType<typeof helpers>;
  let staff: string;
  beforeAll(async () => {
    // A reversal window, so a test can script a provider's answer for the payout's reference before it is submitted.
    stack = await startSagaStack({ ...PROVIDER_SETTINGS, PAYOUT_SUBMIT_DELAY_MS: '1500' });
    h = helpers(stack);
    staff = `Bearer ${await signToken({ sub: 'ops-1', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('routes as the rules say: e-wallets and cards to sandbox-b, bank transfers and currencies sandbox-b does not take to sandbox; reconciliation per provider is clean', async () => {
    const accountId = await stack.fundedAccount(100_000);
    const jpyAccount = await stack.fundedAccount(1_000_000, 'JPY');
    const wallet = await h.payout(accountId, { method: 'ewallet', wallet_id: 'wallet-0001' });
    const card = await h.payout(accountId, { method: 'card', token: 'tok_visa_4242' });
    const bank = await h.payout(accountId, { method: 'bank_transfer', iban: IBAN });
    const cardInYen = await h.payout(jpyAccount, { method: 'card', token: 'tok_visa_4242' }, 5_000, 'JPY');
    const expected: [string, Provider][] = [
      [wallet, 'sandbox-b'],
      [card, 'sandbox-b'],
      [bank, 'sandbox'],
      [cardInYen, 'sandbox'],
    ];
    for (const [payoutId, provider] of expected) {
      const view = await stack.waitForStatus(payoutId, ['SETTLED'], 30_000);
      expect(view.provider, payoutId).toBe(provider);
      expect(attemptsOf(view)).toEqual([{ status: 'SUBMITTED', provider, attempt: 1 }]);
      expect(await h.providerAttribute(payoutId)).toBe(provider);
      // At the chosen provider only, under the payout's own id.
      expect(await h.recordsEverywhere(payoutId)).toEqual([{ provider, reference: payoutId, status: 'settled' }]);
      const { rows } = await stack.pool.query('SELECT provider, provider_reference FROM payouts WHERE payout_id = $1', [payoutId]);
      expect(rows[0]).toEqual({ provider, provider_reference: payoutId });
      expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    }

    const result = await h.reconcile(expected.map(([id]) => id), 'reconciliation-providers');
    expect(result).toMatchObject({ status: 'clean', mismatches: 0 });
    const run = await readRun(stack.pool, result.runId);
    // Each provider's own report held the payouts it paid.
    expect(run.by_provider).toEqual({
      sandbox: { provider_items: 2, looked_up: 0, mismatches: 0 },
      'sandbox-b': { provider_items: 2, looked_up: 0, mismatches: 0 },
    });
  });

  it('a submission sandbox-b accepted but answered 500 to is never sent to sandbox: the payout waits on sandbox-b and settles there', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const payoutId = await h.payout(accountId, { method: 'ewallet', wallet_id: 'sandbox:accept_then_error' });
    // Unanswered past the failover time (3 s), sandbox-b is asked for its record: it has the payout.
    const view = await stack.waitForStatus(payoutId, ['SETTLED'], 60_000);
    expect(view.provider).toBe('sandbox-b');
    expect(attemptsOf(view)).toEqual([{ status: 'SUBMITTED', provider: 'sandbox-b', attempt: 1 }]);
    expect(await h.recordsEverywhere(payoutId)).toEqual([{ provider: 'sandbox-b', reference: payoutId, status: 'settled' }]);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    const { rows } = await stack.pool.query('SELECT attempt, provider, superseded FROM payout_attempts WHERE payout_id = $1', [payoutId]);
    expect(rows).toEqual([{ attempt: 1, provider: 'sandbox-b', superseded: null }]);
    await recordHistory(stack.temporal, 'payout-kept-at-provider-after-error-answer', payoutId);
  });

  it('a submission sandbox-b accepted but refused (422) is never sent to sandbox either', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const payoutId = await h.payout(accountId, { method: 'ewallet', wallet_id: 'sandbox:accept_then_error:422' });
    const view = await stack.waitForStatus(payoutId, ['SETTLED'], 30_000);
    expect(view.provider).toBe('sandbox-b');
    expect(await h.recordsEverywhere(payoutId)).toEqual([{ provider: 'sandbox-b', reference: payoutId, status: 'settled' }]);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
  });

  it('a payout sandbox-b refused without keeping it moves to sandbox under a new key, and settles once', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const payoutId = await h.payout(accountId, { method: 'ewallet', wallet_id: 'wallet-0002' });
    await stack.scriptSandbox(payoutId, { scenario: 'reject' }, 'sandbox-b');
    await stack.waitForStatus(payoutId, ['SETTLED'], 30_000);
    const view = await stack.getPayout(payoutId, staff);
    expect(view.provider).toBe('sandbox');
    expect(attemptsOf(view)).toEqual([{ status: 'SUBMITTED', provider: 'sandbox', attempt: 2 }]);
    const failover = view.timeline.find((e: any) => e.note === 'provider_failover');
    expect(failover.staff_note).toMatch(/sandbox-b refused it .* and has no such payout: moving to sandbox/);
    expect(await h.recordsEverywhere(payoutId)).toEqual([{ provider: 'sandbox', reference: `${payoutId}:a2`, status: 'settled' }]);
    expect(await h.providerAttribute(payoutId)).toBe('sandbox');
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    const { rows } = await stack.pool.query('SELECT attempt, provider, reference, superseded IS NOT NULL AS superseded FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt', [payoutId]);
    expect(rows).toEqual([
      { attempt: 1, provider: 'sandbox-b', reference: payoutId, superseded: true },
      { attempt: 2, provider: 'sandbox', reference: `${payoutId}:a2`, superseded: false },
    ]);
    // The player sees the attempts and a stable code, not the staff note.
    const player = await stack.getPayout(payoutId, await stack.playerAuth(accountId));
    expect(player.timeline.find((e: any) => e.note === 'provider_failover')).not.toHaveProperty('staff_note');

    // Reconciled per provider: the settled attempt at sandbox is the payout's; sandbox-b has nothing.
    const result = await h.reconcile([payoutId], 'reconciliation-failover');
    expect(result).toMatchObject({ status: 'clean', mismatches: 0 });
    await recordHistory(stack.temporal, 'payout-failover-after-refusal', payoutId);

    // Should sandbox-b pay the first attempt after all (it had said it had none), the payout is paid twice:
    // reconciliation holds each provider's report against the attempts and says so.
    await stack.scriptSandbox(payoutId, { scenario: 'settle' }, 'sandbox-b');
    const late = await fetch(`${stack.sandboxBUrl}/v1/payouts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `${payoutId}:late` },
      body: JSON.stringify({ reference: payoutId, amount: { minor_units: 1_000, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-0002' } }),
    });
    expect(late.status).toBe(201);
    const deadline = Date.now() + 10_000;
    while ((await h.recordAt('sandbox-b', payoutId)).body?.status !== 'settled' && Date.now() < deadline) await sleep(100);
    const flagged = await h.reconcile([payoutId], 'reconciliation-paid-twice');
    expect(flagged).toMatchObject({ status: 'mismatches', mismatches: 1 });
    const findings = (await readRun(stack.pool, flagged.runId)).mismatches.map((m) => ({ kind: m.kind, reference: m.reference, provider: m.provider }));
    expect(findings).toEqual([{ kind: 'status_mismatch', reference: `${payoutId}@sandbox-b`, provider: 'sandbox-b' }]);
  });

  it('a payout sandbox-b never received (503 to every submission, nothing kept) fails over after the failover time and settles once', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const payoutId = await h.payout(accountId, { method: 'card', token: 'tok_visa_4242' });
    await stack.scriptSandbox(payoutId, { scenario: 'error_then_ok', fail_attempts: 100 }, 'sandbox-b');
    await stack.waitForStatus(payoutId, ['SETTLED'], 60_000);
    const view = await stack.getPayout(payoutId, staff);
    expect(view.provider).toBe('sandbox');
    expect(view.timeline.find((e: any) => e.note === 'provider_failover').staff_note).toMatch(/sandbox-b left the submission unanswered for 3s and has no such payout/);
    expect(await h.recordsEverywhere(payoutId)).toEqual([{ provider: 'sandbox', reference: `${payoutId}:a2`, status: 'settled' }]);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    await recordHistory(stack.temporal, 'payout-failover-after-silence', payoutId);
  });

  it("a provider's webhook is refused on the other's route (wrong signature); an unknown provider is 404", async () => {
    const body = JSON.stringify({ id: uniqueId('evt'), type: 'payout.settled', created_at: new Date().toISOString(), data: { object: { id: 'po_x', reference: 'po_unknown', status: 'settled' } } });
    const post = async (route: string, secret: string) => {
      const res = await fetch(`${stack.apiUrl}/v1/webhooks/${route}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-signature': signWebhook(secret, body, Math.floor(Date.now() / 1000)) }, body });
      return { status: res.status, json: (await res.json()) as any };
    };
    const a = stack.config.SANDBOX_WEBHOOK_SECRET;
    const b = stack.config.SANDBOX_B_WEBHOOK_SECRET;
    expect(await post('sandbox', b)).toMatchObject({ status: 401, json: { code: 'WEBHOOK_SIGNATURE_INVALID' } });
    expect(await post('sandbox-b', a)).toMatchObject({ status: 401, json: { code: 'WEBHOOK_SIGNATURE_INVALID' } });
    expect(await post('sandbox-b', b)).toMatchObject({ status: 200, json: { delivered: 'unknown_reference' } });
    expect((await post('sandbox-c', b)).status).toBe(404);
  });

  it('staff switch a provider off for new payouts (audited) and on again; players cannot', async () => {
    const put = async (authorization: string, body: unknown) => {
      const res = await fetch(`${stack.apiUrl}/v1/ops/providers/sandbox-b`, { method: 'PUT', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, json: (await res.json()) as any };
    };
    const accountId = await stack.fundedAccount(10_000);
    expect((await put(await stack.playerAuth(accountId), { enabled: false, reason: 'maintenance' })).status).toBe(403);
    expect((await put(staff, { enabled: false })).status).toBe(400);
    try {
      expect(await put(staff, { enabled: false, reason: 'maintenance window' })).toMatchObject({ status: 200, json: { name: 'sandbox-b', enabled: false, reason: 'maintenance window', changed_by: 'staff:ops-1' } });
      await sleep(1_200); // each worker reads the switches at most once a second
      const off = await h.payout(accountId, { method: 'ewallet', wallet_id: 'wallet-0003' });
      const view = await stack.waitForStatus(off, ['SETTLED'], 30_000);
      expect(view.provider).toBe('sandbox');
      expect(view.timeline.find((e: any) => e.note === 'provider_passed_over')).toBeDefined();
      expect(await h.recordsEverywhere(off)).toEqual([{ provider: 'sandbox', reference: off, status: 'settled' }]);
      await recordHistory(stack.temporal, 'payout-routed-past-disabled-provider', off);
    } finally {
      expect((await put(staff, { enabled: true, reason: 'maintenance over' })).status).toBe(200);
    }
    await sleep(1_200);
    const on = await h.payout(accountId, { method: 'ewallet', wallet_id: 'wallet-0003' });
    expect((await stack.waitForStatus(on, ['SETTLED'], 30_000)).provider).toBe('sandbox-b');
    const { rows } = await stack.pool.query("SELECT action, actor, outcome FROM staff_audit_log WHERE target = 'provider:sandbox-b' ORDER BY id DESC LIMIT 2");
    expect(rows).toEqual([
      { action: 'provider:enable', actor: 'staff:ops-1', outcome: 'applied' },
      { action: 'provider:disable', actor: 'staff:ops-1', outcome: 'applied' },
    ]);
    const listed = await fetch(`${stack.apiUrl}/v1/ops/providers`, { headers: { authorization: staff } });
    expect(((await listed.json()) as any).providers.map((p: any) => [p.name, p.enabled])).toEqual([
      ['sandbox', true],
      ['sandbox-b', true],
    ]);
  });

  it('while staff have disabled every provider of its route, a payout waits (marked stuck) instead of failing, and goes on once one is enabled', async () => {
    const put = (enabled: boolean, reason: string) =>
      fetch(`${stack.apiUrl}/v1/ops/providers/sandbox`, { method: 'PUT', headers: { authorization: staff, 'content-type': 'application/json' }, body: JSON.stringify({ enabled, reason }) });
    const accountId = await stack.fundedAccount(10_000);
    expect((await put(false, 'incident at sandbox')).status).toBe(200);
    let payoutId: string;
    try {
      await sleep(1_200);
      // Bank transfers go to sandbox only (sandbox-b takes none).
      payoutId = await h.payout(accountId, { method: 'bank_transfer', iban: IBAN });
      const waiting = await stack.waitForStatus(payoutId, ['HELD'], 10_000);
      await sleep(3_500); // past PROVIDER_STUCK_AFTER_MS (2 s)
      expect(await stack.getPayout(payoutId)).toMatchObject({ status: 'HELD', stuck: true });
      expect(waiting.timeline.some((e: any) => e.attempt !== undefined)).toBe(false);
      expect(await h.recordsEverywhere(payoutId)).toEqual([]);
    } finally {
      expect((await put(true, 'incident over')).status).toBe(200);
    }
    const view = await stack.waitForStatus(payoutId, ['SETTLED'], 30_000);
    expect(view).toMatchObject({ provider: 'sandbox', stuck: false });
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    await recordHistory(stack.temporal, 'payout-waits-for-an-enabled-provider', payoutId);
  });

  it('never records one attempt for two providers: a second provider is refused (AttemptConflict) and sent nothing', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const payoutId = await h.payout(accountId, { method: 'bank_transfer', iban: IBAN });
    await stack.waitForStatus(payoutId, ['SETTLED'], 30_000);
    const activities = createProviderActivities({ providers: providerRegistry(stack.pool, { sandbox: stack.sandboxUrl, sandboxB: stack.sandboxBUrl }), pool: stack.pool, destinations: createDestinationVault(stack.config.DESTINATION_KEYS) });
    // As a saga reset to before its routing would: attempt 1 again, now for sandbox-b.
    await expect(activities.submitPayoutToProvider({ payoutId, amount: { minor_units: 1_000, currency: 'EUR' }, provider: 'sandbox-b', reference: payoutId, attempt: 1 })).rejects.toMatchObject({ type: 'AttemptConflict' });
    expect(await h.recordsEverywhere(payoutId)).toEqual([{ provider: 'sandbox', reference: payoutId, status: 'settled' }]);
    const { rows } = await stack.pool.query('SELECT provider, provider_reference FROM payouts WHERE payout_id = $1', [payoutId]);
    expect(rows[0]).toEqual({ provider: 'sandbox', provider_reference: payoutId });
  });
});

describe('one provider in outage', () => {
  let stack: SagaStack;
  let h: ReturnType<typeof helpers>;
  beforeAll(async () => {
    stack = await startSagaStack(PROVIDER_SETTINGS);
    h = helpers(stack);
  });
  afterAll(async () => {
    await h?.outage('sandbox-b', 'off').catch(() => undefined);
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('new payouts go to sandbox within the breaker window, none fails; once sandbox-b recovers, traffic returns; every payout is paid once', async () => {
    const accountId = await stack.fundedAccount(1_000_000);
    await h.outage('sandbox-b', 'error');
    // Open loop: one e-wallet payout every 400 ms for 8 s, whatever the earlier ones do.
    const during: string[] = [];
    const sent = Array.from({ length: 20 }, (_, i) =>
      sleep(i * 400).then(async () => {
        during[i] = await h.payout(accountId, { method: 'ewallet', wallet_id: `wallet-${1000 + i}` });
      }),
    );
    await Promise.all(sent);
    // The breaker opens after a few failed calls: the later payouts were routed to sandbox at once.
    const views = await Promise.all(during.map(async (id) => (await stack.getPayout(id)) as any));
    const passedOver = views.filter((v) => v.timeline.some((e: any) => e.note === 'provider_passed_over'));
    expect(passedOver.length).toBeGreaterThanOrEqual(12);
    for (const v of passedOver) expect(attemptsOf(await stack.waitForStatus(v.payout_id, ['SETTLED'], 30_000))).toEqual([{ status: 'SUBMITTED', provider: 'sandbox', attempt: 1 }]);

    await h.outage('sandbox-b', 'off');
    // Those sent before the breaker opened waited on sandbox-b (it could not say it lacked them): now they settle, once.
    for (const id of during) {
      const view = await stack.waitForStatus(id, ['SETTLED'], 90_000);
      expect(['sandbox', 'sandbox-b']).toContain(view.provider);
      const records = await h.recordsEverywhere(id);
      expect(records.filter((r) => r.status !== 'failed'), id).toHaveLength(1);
      expect((await stack.transfersOf(id)).map((t) => t.kind)).toEqual(['hold', 'post']);
    }

    // Past the breaker's reset (2 s) its trial read succeeds, and new payouts go to sandbox-b again.
    await sleep(2_500);
    const after: string[] = [];
    for (let i = 0; i < 3; i++) after.push(await h.payout(accountId, { method: 'ewallet', wallet_id: `wallet-${2000 + i}` }));
    for (const id of after) expect((await stack.waitForStatus(id, ['SETTLED'], 30_000)).provider).toBe('sandbox-b');
  });
});

describe('what no provider takes, and provider health as the worker process exports it', () => {
  let stack: SagaStack;
  let worker: Awaited<ReturnType<typeof spawnWorkerProcess>> | undefined;
  beforeAll(async () => {
    stack = await startSagaStack({ ...PROVIDER_SETTINGS, SANDBOX_METHODS: 'bank_transfer,ewallet', SANDBOX_B_METHODS: 'ewallet' }, { worker: false });
    worker = await spawnWorkerProcess(stack, { ...PROVIDER_SETTINGS, SANDBOX_METHODS: 'bank_transfer,ewallet', SANDBOX_B_METHODS: 'ewallet', SANDBOX_B_URL: stack.sandboxBUrl });
    await worker.ready;
  });
  afterAll(async () => {
    worker?.child.kill('SIGTERM');
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('a card payout no provider takes is refused with DESTINATION_NOT_SUPPORTED and writes nothing', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const key = uniqueId('key');
    const res = await stack.postPayout({ account_id: accountId, amount: { minor_units: 1_000, currency: 'EUR' }, destination: { method: 'card', token: 'tok_visa_4242' } }, key);
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.json).toMatchObject({ code: 'DESTINATION_NOT_SUPPORTED' });
    const { rows } = await stack.pool.query('SELECT (SELECT count(*)::int FROM payouts WHERE account_id = $1) AS payouts, (SELECT count(*)::int FROM idempotency_records WHERE idempotency_key = $2) AS keys', [accountId, key]);
    expect(rows[0]).toEqual({ payouts: 0, keys: 0 });
  });

  it("exports each provider's calls, latency and breaker state at the worker's metrics endpoint", async () => {
    const accountId = await stack.fundedAccount(10_000);
    const h = helpers(stack);
    const wallet = await h.payout(accountId, { method: 'ewallet', wallet_id: 'wallet-0009' });
    const bank = await h.payout(accountId, { method: 'bank_transfer', iban: IBAN });
    expect((await stack.waitForStatus(wallet, ['SETTLED'], 30_000)).provider).toBe('sandbox-b');
    expect((await stack.waitForStatus(bank, ['SETTLED'], 30_000)).provider).toBe('sandbox');
    const text = await (await fetch(worker!.metricsUrl)).text();
    const sample = (name: string, labels: Record<string, string>) =>
      text.split('\n').find((line) => line.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)));
    for (const provider of ['sandbox', 'sandbox-b']) {
      expect(sample('payout_provider_calls', { provider, operation: 'submit', outcome: 'ok' }), provider).toMatch(/ 1$/);
      expect(sample('payout_provider_call_latency_count', { provider, operation: 'submit' }), provider).toMatch(/ 1$/);
      expect(sample('payout_provider_breaker_state', { provider }), provider).toMatch(/ 0$/);
    }
  });
});
