import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../lib/wait';
import { uniqueId } from '../support';
import { payoutRequest, spawnWorkerProcess, startSagaStack, type SagaStack } from '../support/saga-stack';

/** The worker as a real separate process, so it can be killed with SIGKILL mid-saga. */
const spawnWorker = (stack: SagaStack) => spawnWorkerProcess(stack);

describe('a worker killed with SIGKILL in the middle of a payout', () => {
  let stack: SagaStack;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    // No in-process worker: the only worker is the process this test kills. A reversal window keeps
    // the saga between its hold and its submission long enough to kill the worker there.
    stack = await startSagaStack({ PAYOUT_SUBMIT_DELAY_MS: '2500' }, { worker: false });
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    // The real worker process ensured the reconciliation schedule on the shared test server: remove it.
    await stack?.temporal.schedule.getHandle('reconciliation').delete().catch(() => undefined);
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('completes after a restart with exactly one hold and one post', async () => {
    const first = await spawnWorker(stack);
    children.push(first.child);
    await first.ready;

    const accountId = await stack.fundedAccount(5_000);
    const res = await stack.postPayout(payoutRequest(accountId, 4_000), uniqueId('key'));
    expect(res.status).toBe(201);
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold']);

    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    await sleep(3_000); // the reversal window passes with no worker alive
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold']);

    const second = await spawnWorker(stack);
    children.push(second.child);
    await second.ready;
    const settled = await stack.waitForStatus(res.json.payout_id, ['SETTLED'], 60_000);
    expect(settled.timeline.map((t: { status: string }) => t.status)).toEqual(['REQUESTED', 'AUTHORIZED', 'HELD', 'SUBMITTED', 'SETTLED']);
    expect(await stack.transfersOf(res.json.payout_id)).toEqual([
      { kind: 'hold', amount: 4_000 },
      { kind: 'post', amount: 4_000 },
    ]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0, posted: 1_000 });
    second.child.kill('SIGTERM');
    await new Promise((resolve) => second.child.once('exit', resolve));
  });
});

describe('a worker killed while its provider submission is in flight', () => {
  let stack: SagaStack;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    stack = await startSagaStack({}, { worker: false });
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await stack?.temporal.schedule.getHandle('reconciliation').delete().catch(() => undefined);
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('resubmits after the activity times out; the provider replays its first answer: one provider payout, one hold, one post', async () => {
    const first = await spawnWorker(stack);
    children.push(first.child);
    await first.ready;

    const accountId = await stack.fundedAccount(2_000);
    // The provider accepts the submission at once but answers only after 4 s: the worker dies waiting.
    const res = await stack.postPayout(payoutRequest(accountId, 1_500, 'sandbox:slow:4000'), uniqueId('key'));
    expect(res.status).toBe(201);
    const payoutId: string = res.json.payout_id;
    for (let i = 0; (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).status !== 200; i++) {
      if (i > 100) throw new Error('the submission never reached the provider');
      await sleep(50);
    }
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));

    const second = await spawnWorker(stack);
    children.push(second.child);
    await second.ready;
    // The lost attempt is retried once its start-to-close timeout (30 s) has passed.
    await stack.waitForStatus(payoutId, ['SETTLED'], 90_000);
    expect(await stack.transfersOf(payoutId)).toEqual([
      { kind: 'hold', amount: 1_500 },
      { kind: 'post', amount: 1_500 },
    ]);
    const events = (await (await fetch(`${stack.sandboxUrl}/sandbox/events?reference=${payoutId}`)).json()) as { items: { event: { type: string } }[] };
    expect(events.items.map((e) => e.event.type)).toEqual(['payout.settled']); // one provider payout, settled once
    second.child.kill('SIGTERM');
    await new Promise((resolve) => second.child.once('exit', resolve));
  }, 150_000);
});
