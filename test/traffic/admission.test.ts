import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdmissionGate } from '../../apps/api/traffic/admission-gate';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';
import { startTestWorker, uniqueId } from '../support';
import { bearer, countBy, send, sendSignedWebhook } from './support';

describe('admission gate (the adaptive limit)', () => {
  function gateAt(targetMs = 250, maxInFlight = 64) {
    let now = 0;
    const gate = new AdmissionGate({ targetMs, maxInFlight, windowMs: 500, now: () => now });
    return { gate, advance: (ms: number) => (now += ms) };
  }

  it('starts at 16, refuses beyond its limit, and frees a slot when a decision comes', () => {
    const { gate } = gateAt();
    const tickets = Array.from({ length: 20 }, () => gate.tryEnter());
    expect(tickets.filter(Boolean)).toHaveLength(16);
    tickets[0]!.leave();
    tickets[0]!.leave(); // leaving twice frees one slot only
    expect(gate.tryEnter()).toBeDefined();
    expect(gate.tryEnter()).toBeUndefined();
  });

  it('shrinks by 30 % when a window p90 is above the target (more, in proportion, far above), never below 2', () => {
    const { gate, advance } = gateAt(400);
    for (const [ms, expected] of [[600, 10], [600, 6], [2_000, 3], [600, 2], [600, 2]] as const) {
      const tickets = Array.from({ length: gate.state().limit }, () => gate.tryEnter()!);
      advance(ms); // every decision took `ms` > 400 ms: × 400/ms, at most × 0.7, at least × 0.5
      for (const ticket of tickets) ticket.leave();
      expect(gate.state().limit).toBe(expected);
    }
  });

  it('grows by one per window that ran at its limit under the target, up to the ceiling', () => {
    const { gate, advance } = gateAt(250, 18);
    for (const expected of [17, 18, 18]) {
      const tickets = Array.from({ length: gate.state().limit }, () => gate.tryEnter()!);
      expect(gate.tryEnter()).toBeUndefined(); // at the limit, one shed
      advance(100);
      for (const ticket of tickets) ticket.leave();
      advance(450);
      gate.state();
      expect(gate.state().limit).toBe(expected);
    }
  });

  it('stays put when traffic is light and fast (no reason to grow or shrink)', () => {
    const { gate, advance } = gateAt();
    for (let i = 0; i < 10; i++) {
      const ticket = gate.tryEnter()!;
      advance(50);
      ticket.leave();
      advance(500);
    }
    expect(gate.state()).toMatchObject({ limit: 16, inFlight: 0 });
  });

  it('after trouble, healthy or idle windows double it back to where it started', () => {
    const { gate, advance } = gateAt();
    for (let i = 0; i < 4; i++) {
      const tickets = Array.from({ length: gate.state().limit }, () => gate.tryEnter()!);
      advance(600);
      for (const ticket of tickets) ticket.leave();
    }
    expect(gate.state().limit).toBe(2);
    const ticket = gate.tryEnter()!;
    advance(50);
    ticket.leave();
    advance(500);
    expect(gate.state().limit).toBe(4); // a quiet window since the last decision
    advance(600);
    expect(gate.state().limit).toBe(8); // an idle one
    advance(1_100);
    expect(gate.state().limit).toBe(16); // two idle windows, seen at once
    advance(600);
    expect(gate.state().limit).toBe(16);
  });

  it('slow decisions followed by a long quiet spell: cut for the slowness, then restored for the quiet', () => {
    const { gate, advance } = gateAt();
    advance(600);
    const tickets = Array.from({ length: 6 }, () => gate.tryEnter()!);
    advance(400);
    for (const ticket of tickets) ticket.leave(); // slow (400 ms), and nothing else for 30 s
    advance(30_000);
    expect(gate.tryEnter()).toBeDefined();
    expect(gate.state().limit).toBe(16);
  });

  it('shrinks when full for a whole window without a single decision (worker or Temporal down)', () => {
    const { gate, advance } = gateAt(8_000); // a target beyond the window: the pending ones are not yet slow
    const tickets = Array.from({ length: 16 }, () => gate.tryEnter()!);
    advance(600);
    expect(gate.state().limit).toBe(11);
    expect(gate.state().inFlight).toBe(16);
    for (const ticket of tickets) ticket.leave();
  });

  it('a decision slower than twice the target closes the window early, at most once per target interval', () => {
    const { gate, advance } = gateAt(100);
    const tickets = Array.from({ length: 4 }, () => gate.tryEnter()!);
    advance(250); // pending for 250 ms > 2 × 100 ms, half-way through the 500 ms window
    expect(gate.state()).toMatchObject({ limit: 8, p90Ms: 250 });
    expect(gate.state().limit).toBe(8); // a new window has just begun: no second cut at once
    advance(100);
    expect(gate.state()).toMatchObject({ limit: 4, p90Ms: 350 });
    for (const ticket of tickets) ticket.leave();
  });

  it('counts decisions still pending and already older than the target, without waiting for them', () => {
    const { gate, advance } = gateAt(250);
    const slow = Array.from({ length: 4 }, () => gate.tryEnter()!);
    advance(400);
    const fast = Array.from({ length: 6 }, () => gate.tryEnter()!);
    advance(50);
    for (const ticket of fast) ticket.leave(); // six quick decisions (50 ms) and four pending for 450 ms
    advance(100);
    // p90 of [50 × 6, 550 × 4] is 550 ms: × max(0.5, 250/550) = × 0.5
    expect(gate.state()).toMatchObject({ limit: 8, inFlight: 4, p90Ms: 550 });
    for (const ticket of slow) ticket.leave();
  });
});

describe('admission control on the running stack (no worker: decisions cannot come)', () => {
  let stack: SagaStack;
  const LIMIT = 4;

  beforeAll(async () => {
    // The gate's ceiling at 4 and a short sync deadline; without a worker nothing is decided, so the
    // first four requests hold the four slots until the deadline (202), as a stalled platform would.
    stack = await startSagaStack({ ADMISSION_MAX_IN_FLIGHT: String(LIMIT), SAGA_SYNC_DEADLINE_MS: '2000' }, { worker: false });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('beyond what it can decide: 429 OVERLOADED at once with Retry-After, nothing written; webhooks, staff and reads still served; the retry with the same key is a fresh attempt', async () => {
    const n = 24;
    const accounts = await Promise.all(Array.from({ length: n }, () => stack.fundedAccount(5_000)));
    const keys = accounts.map(() => uniqueId('burst'));
    const staff = await bearer(uniqueId('staff'), 'staff', stack.config);
    const burst = Promise.all(accounts.map((accountId, i) => send(`${stack.apiUrl}/v1/payouts`, 'POST', stack.service, payoutRequest(accountId, 1_000), keys[i])));
    // While the four slots are held: a provider webhook, a staff listing and the health check go through.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const [webhook, staffList, health] = await Promise.all([
      sendSignedWebhook(stack.apiUrl, stack.config, uniqueId('evt')),
      send(`${stack.apiUrl}/v1/ops/payouts`, 'GET', staff),
      send(`${stack.apiUrl}/health`, 'GET', undefined),
    ]);
    const answers = await burst;

    expect(webhook.status).toBe(200);
    expect(staffList.status).toBe(200);
    // Four held, and the limit already shrinking: a full window without a decision is a stalled platform.
    expect(health.json.admission.in_flight).toBe(LIMIT);
    expect(health.json.admission.limit).toBeLessThanOrEqual(LIMIT);
    expect(countBy(answers, (a) => `${a.status} ${a.code ?? ''}`.trim())).toEqual({ '202': LIMIT, '429 OVERLOADED': n - LIMIT });
    const shed = answers.flatMap((a, i) => (a.status === 429 ? [{ answer: a, accountId: accounts[i]!, key: keys[i]! }] : []));
    for (const { answer } of shed) {
      expect(answer.retryAfter).toBe('1');
      expect(answer.ms).toBeLessThan(2000); // answered without waiting for the sync deadline
    }

    // Nothing written for the shed requests: no idempotency record, no saga, no read-model row, no ledger movement.
    const shedAccounts = shed.map((s) => s.accountId);
    const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE account_id = ANY($1)', [shedAccounts]);
    expect(records.rows[0].n).toBe(0);
    const rows = await stack.pool.query('SELECT count(*)::int AS n FROM payouts WHERE account_id = ANY($1)', [shedAccounts]);
    expect(rows.rows[0].n).toBe(0);
    const moves = await stack.pool.query('SELECT count(*)::int AS n FROM ledger_transfers WHERE debit_account_id = ANY($1) OR credit_account_id = ANY($1)', [shedAccounts]);
    expect(moves.rows[0].n).toBe(shedAccounts.length); // only each account's funding
    for (const { accountId, key } of shed) {
      await expect(stack.temporal.workflow.getHandle(resourceIdFor('po', accountId, key)).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
    }

    // The platform recovers (a worker comes): the admitted four are decided and settle, and each shed
    // request retried with its own key is a fresh, valid attempt.
    const worker = await startTestWorker(stack.pool, stack.config.TEMPORAL_TASK_QUEUE, stack.config);
    try {
      const admitted = answers.filter((a) => a.status === 202);
      for (const a of admitted) await stack.waitForStatus(a.json.payout_id, ['SETTLED']);
      for (const { accountId, key } of shed) {
        const retry = await send(`${stack.apiUrl}/v1/payouts`, 'POST', stack.service, payoutRequest(accountId, 1_000), key);
        expect([retry.status, retry.json.status]).toEqual([201, 'HELD']);
        await stack.waitForStatus(retry.json.payout_id, ['SETTLED']);
      }
      const settled = await stack.pool.query("SELECT count(*)::int AS n FROM payouts WHERE account_id = ANY($1) AND status = 'SETTLED'", [accounts]);
      expect(settled.rows[0].n).toBe(n);
      await stack.assertLedgerClean();
    } finally {
      await worker.stop();
    }
  });
});
