/**
 * The fast tier: the payout and deposit sagas alone, on the shared Temporal dev server, with its activities replaced by
 * in-memory fakes that record each call. No API, PostgreSQL or sandbox: each branch runs in a second or two,
 * where the end-to-end suites need the whole stack and shrunken timings.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, type QueryDefinition } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ProviderDeposit } from '../../activities/deposits';
import type { ProviderPayout } from '../../activities/provider';
import { DEPOSIT_SAGA_TYPE, depositEventSignal, depositStatusQuery, intentUpdate, type DepositInput, type DepositView } from '../../contracts/deposit';
import {
  authorizationUpdate,
  cancelUpdate,
  PAYOUT_SAGA_TYPE,
  payoutStatusQuery,
  providerEventSignal,
  pollProviderNowSignal,
  reviewUpdate,
  staffResolveUpdate,
  type PayoutInput,
  type PayoutTimings,
  type PayoutView,
} from '../../contracts/payout';

/** What the fake provider holds for one payout or deposit, and every activity call its saga made, in order. */
interface Fake {
  /** The provider's record as fetchProviderPayout answers it (undefined: it has none). */
  record?: ProviderPayout;
  /** The provider's record of a deposit (fetchProviderDeposit, and the intent's answer). */
  depositRecord?: ProviderDeposit;
  /** What the submission (or the intent) does: answer the record (default) or refuse. */
  submission?: 'accept' | 'refuse';
  calls: { name: string; input: Record<string, unknown> }[];
}

const fakes = new Map<string, Fake>();
const fakeOf = (id: string) => fakes.get(id)!;
const called = (id: string, name: string) => fakeOf(id).calls.filter((call) => call.name === name);

type Keyed = { payoutId?: string; depositId?: string; reference?: string };

function recorded<I extends Keyed, R>(name: string, body: (input: I, fake: Fake) => R | Promise<R>) {
  return async (input: I): Promise<R> => {
    const fake = fakeOf((input.payoutId ?? input.depositId ?? input.reference)!);
    fake.calls.push({ name, input: input as unknown as Record<string, unknown> });
    return body(input, fake);
  };
}

const record = (payoutId: string, status: ProviderPayout['status'], overrides: Partial<ProviderPayout> = {}): ProviderPayout => ({
  providerPayoutId: `prov_${payoutId}`,
  status,
  amount: { minor_units: 1_000, currency: 'EUR' },
  destination: { method: 'ewallet', last4: '0042' },
  ...overrides,
});

const activities = {
  admitPayout: recorded('admitPayout', () => ({ outcome: 'held' as const, holdTransferId: 7 })),
  voidPayoutHold: recorded('voidPayoutHold', () => ({ ok: true, transferId: 8 })),
  postPayoutHold: recorded('postPayoutHold', () => ({ ok: true as const, transferId: 9 })),
  refundReturnedPayout: recorded('refundReturnedPayout', () => ({ ok: true, transferId: 10 })),
  recordPayoutState: recorded('recordPayoutState', () => undefined),
  recheckPayoutAccount: recorded('recheckPayoutAccount', () => ({})),
  recordProviderIncident: recorded('recordProviderIncident', () => undefined),
  submitPayoutToProvider: recorded('submitPayoutToProvider', (input: { payoutId: string }, fake) => {
    if (fake.submission === 'refuse') throw ApplicationFailure.nonRetryable('refused', 'ProviderRejected', { code: 'destination_closed' });
    fake.record ??= record(input.payoutId, 'pending');
    return fake.record;
  }),
  fetchProviderPayout: recorded('fetchProviderPayout', (_input: { payoutId: string }, fake) => fake.record),
  admitDeposit: recorded('admitDeposit', () => ({ approved: true as const })),
  createDepositIntent: recorded('createDepositIntent', (input: { depositId: string }, fake) => {
    if (fake.submission === 'refuse') throw ApplicationFailure.nonRetryable('refused', 'ProviderRejected', { code: 'currency_not_supported' });
    fake.depositRecord ??= depositRecord(input.depositId, 'pending');
    return fake.depositRecord;
  }),
  creditDeposit: recorded('creditDeposit', () => ({ transferId: 11 })),
  recordDepositState: recorded('recordDepositState', () => undefined),
  fetchProviderDeposit: recorded('fetchProviderDeposit', (_input: { depositId: string }, fake) => fake.depositRecord),
};

const depositRecord = (depositId: string, status: ProviderDeposit['status'], overrides: Partial<ProviderDeposit> = {}): ProviderDeposit => ({
  providerDepositId: `prov_${depositId}`,
  status,
  checkoutUrl: `https://checkout.example/${depositId}`,
  amount: { minor_units: 2_500, currency: 'EUR' },
  ...overrides,
});

const TIMINGS: PayoutTimings = { submitDelayMs: 0, pollInitialMs: 60_000, pollMaxMs: 60_000, stuckAfterMs: 60_000, returnWindowMs: 1_500, continueAsNewAfterEvents: 10_000 };

let worker: Worker;
let running: Promise<void>;
let client: Client;
let clientConnection: Connection;
const taskQueue = `saga-tier-${randomUUID()}`;

beforeAll(async () => {
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  worker = await Worker.create({ connection, namespace: inject('temporalNamespace'), taskQueue, workflowBundle: { codePath: inject('workflowBundlePath') }, activities });
  running = worker.run();
  clientConnection = await Connection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection: clientConnection, namespace: inject('temporalNamespace') });
});

afterAll(async () => {
  worker?.shutdown();
  await running;
  await clientConnection?.close();
});

/** Starts a saga on the fake provider `fake` (given the payout id, for records that name it). */
async function startPayout(fake: (id: string) => Omit<Fake, 'calls'> = () => ({}), timings: Partial<PayoutTimings> = {}, extra: Partial<PayoutInput> = {}): Promise<{ id: string; handle: WorkflowHandle }> {
  const id = `po_${randomUUID().replaceAll('-', '')}`;
  fakes.set(id, { ...fake(id), calls: [] });
  const input: PayoutInput = {
    payoutId: id,
    accountId: 'player-1',
    amount: { minor_units: 1_000, currency: 'EUR' },
    destination: { method: 'ewallet', last4: '0042' },
    provider: 'sandbox',
    fingerprint: 'fp',
    requestedAt: new Date().toISOString(),
    timings: { ...TIMINGS, ...timings },
    ...extra,
  };
  const handle = await client.workflow.start(PAYOUT_SAGA_TYPE, { taskQueue, workflowId: id, args: [input] });
  return { id, handle };
}

/** An update the saga refused: the SDK's WorkflowUpdateFailedError, the saga's reason in its cause. */
const refusal = (message: RegExp, type?: string) => ({ cause: expect.objectContaining({ message: expect.stringMatching(message), ...(type ? { type } : {}) }) });

const webhook = (status: 'settled' | 'failed' | 'returned') => ({ eventId: `evt_${randomUUID()}`, source: 'webhook' as const, providerStatus: status, occurredAt: new Date().toISOString() });

/** Polls a saga's view query until `wanted` holds (15 s at most). */
async function viewBecomes<View>(handle: WorkflowHandle, query: QueryDefinition<View>, wanted: (view: View) => boolean): Promise<View> {
  for (const giveUpAt = Date.now() + 15_000; ; await new Promise((resolve) => setTimeout(resolve, 50))) {
    const view = await handle.query(query);
    if (wanted(view)) return view;
    if (Date.now() > giveUpAt) throw new Error(`not reached; last view ${JSON.stringify(view)}`);
  }
}

const statusBecomes = (handle: WorkflowHandle, wanted: (view: PayoutView) => boolean) => viewBecomes(handle, payoutStatusQuery, wanted);

describe('payout saga review (fast tier)', () => {
  const reviewed = { review: { aboveMinor: 500, dualApproval: true, slaMs: 60_000, onLimitBreach: 'decline' as const } };

  it('above the threshold it waits in PENDING_REVIEW; dual approval refuses the reviewer alone or approving itself; approved by another, it is paid once', async () => {
    const { id, handle } = await startPayout(() => ({}), {}, reviewed);
    await expect(handle.executeUpdate(authorizationUpdate, { args: ['fp'] })).resolves.toMatchObject({ outcome: 'held', status: 'PENDING_REVIEW' });
    await statusBecomes(handle, (view) => view.status === 'PENDING_REVIEW');
    const approve = { decision: 'approve' as const, reviewer: 'staff:alice', reason: 'documented' };
    await expect(handle.executeUpdate(reviewUpdate, { args: [approve] })).rejects.toMatchObject(refusal(/second staff member/, 'PAYOUT_NOT_REVIEWABLE'));
    await expect(handle.executeUpdate(reviewUpdate, { args: [{ ...approve, approvedBy: 'staff:alice' }] })).rejects.toMatchObject(refusal(/second staff member/, 'PAYOUT_NOT_REVIEWABLE'));
    expect(called(id, 'submitPayoutToProvider')).toHaveLength(0);
    const after = await handle.executeUpdate(reviewUpdate, { args: [{ ...approve, approvedBy: 'staff:bob' }] });
    expect(after.timeline.at(-1)).toMatchObject({ status: 'HELD', note: 'review_approved', staffNote: 'approved at review by staff:alice, approved by staff:bob: documented' });
    await expect(handle.executeUpdate(reviewUpdate, { args: [{ ...approve, approvedBy: 'staff:carol' }] })).rejects.toMatchObject(refusal(/only a payout pending review/, 'PAYOUT_NOT_REVIEWABLE'));
    await statusBecomes(handle, (view) => view.status === 'SUBMITTED');
    fakeOf(id).record = record(id, 'settled');
    await handle.signal(pollProviderNowSignal);
    await statusBecomes(handle, (view) => view.status === 'SETTLED');
    expect(called(id, 'recheckPayoutAccount')).toHaveLength(1);
    expect(called(id, 'submitPayoutToProvider')).toHaveLength(1);
    expect(called(id, 'postPayoutHold')).toHaveLength(1);
    expect(called(id, 'recordPayoutState').map((call) => call.input.status)).toEqual(['PENDING_REVIEW', 'HELD']);
  });

  it('a review past its SLA is marked stuck and still waits; rejected, the hold is voided once and it ends DECLINED with the code', async () => {
    const { id, handle } = await startPayout(() => ({}), {}, { review: { ...reviewed.review, dualApproval: false, slaMs: 300 } });
    await statusBecomes(handle, (view) => view.stuck && view.status === 'PENDING_REVIEW');
    const rejected = await handle.executeUpdate(reviewUpdate, { args: [{ decision: 'reject', reviewer: 'staff:alice', reason: 'third-party card', reasonCode: 'source_of_funds' }] });
    expect(rejected).toMatchObject({ status: 'DECLINED', declineCode: 'source_of_funds', stuck: false });
    expect(called(id, 'voidPayoutHold')).toHaveLength(1);
    expect(called(id, 'submitPayoutToProvider')).toHaveLength(0);
    expect(await handle.result()).toMatchObject({ status: 'DECLINED' });
  });

  it('at or below the threshold it is not reviewed', async () => {
    const { handle } = await startPayout(() => ({}), {}, { review: { ...reviewed.review, aboveMinor: 1_000 } });
    await expect(handle.executeUpdate(authorizationUpdate, { args: ['fp'] })).resolves.toMatchObject({ outcome: 'held', status: 'HELD' });
    await statusBecomes(handle, (view) => view.status === 'SUBMITTED');
    await handle.terminate('test done');
  });
});

describe('payout saga (fast tier: mocked activities, real Temporal)', () => {
  it('answers held, submits once, and settles once on a webhook the provider record bears out', async () => {
    const { id, handle } = await startPayout();
    await expect(handle.executeUpdate(authorizationUpdate, { args: ['fp'] })).resolves.toEqual({ outcome: 'held', status: 'HELD', holdTransferId: 7 });
    await statusBecomes(handle, (view) => view.status === 'SUBMITTED');
    fakeOf(id).record = record(id, 'settled');
    await handle.signal(providerEventSignal, webhook('settled'));
    await statusBecomes(handle, (view) => view.status === 'SETTLED');
    expect(called(id, 'submitPayoutToProvider')).toHaveLength(1);
    expect(called(id, 'postPayoutHold')).toEqual([{ name: 'postPayoutHold', input: expect.objectContaining({ idempotencyKey: `${id}:post`, holdTransferId: 7 }) }]);
    expect(called(id, 'voidPayoutHold')).toHaveLength(0);
    const done: PayoutView = await handle.result();
    expect(done.timeline.map((entry) => entry.status)).toEqual(['REQUESTED', 'AUTHORIZED', 'HELD', 'SUBMITTED', 'SETTLED']);
  });

  it('refuses a reused key with another request at the update validator, before anything is recorded', async () => {
    const { handle } = await startPayout();
    await expect(handle.executeUpdate(authorizationUpdate, { args: ['another'] })).rejects.toMatchObject(refusal(/Idempotency-Key reused/, 'IDEMPOTENCY_MISMATCH'));
    await handle.terminate('test over');
  });

  it('a cancel inside the reversal window voids the hold and never submits', async () => {
    const { id, handle } = await startPayout(undefined, { submitDelayMs: 30_000 });
    await handle.executeUpdate(authorizationUpdate, { args: ['fp'] });
    const view = await handle.executeUpdate(cancelUpdate, { args: [{ requestedBy: 'player-1', reason: 'changed my mind' }] });
    expect(view).toMatchObject({ status: 'CANCELLED', cancellable: false });
    expect(view.timeline.at(-1)).toMatchObject({ status: 'CANCELLED', note: 'cancelled', staffNote: 'cancelled by player-1: changed my mind' });
    await handle.result();
    expect(called(id, 'voidPayoutHold')).toHaveLength(1);
    expect(called(id, 'submitPayoutToProvider')).toHaveLength(0);
  });

  it('a refusal that hides an accepted first attempt is not a failure: the provider has it, so the saga waits for it', async () => {
    // The provider refuses the (retried) submission but its record shows the payout pending.
    const { id, handle } = await startPayout((payoutId) => ({ submission: 'refuse', record: record(payoutId, 'pending') }));
    await statusBecomes(handle, (view) => view.status === 'SUBMITTED');
    expect(called(id, 'voidPayoutHold')).toHaveLength(0);
    fakeOf(id).record = record(id, 'settled');
    await handle.signal(providerEventSignal, webhook('settled'));
    await expect(handle.result()).resolves.toMatchObject({ status: 'SETTLED' });
    expect(called(id, 'postPayoutHold')).toHaveLength(1);
  });

  it('a refusal the provider record confirms (it has no such payout) fails the payout and voids the hold once', async () => {
    const { id, handle } = await startPayout(() => ({ submission: 'refuse' }));
    await expect(handle.result()).resolves.toMatchObject({ status: 'FAILED', failureCode: 'destination_closed' });
    expect(called(id, 'voidPayoutHold')).toHaveLength(1);
    expect(called(id, 'postPayoutHold')).toHaveLength(0);
  });

  it('a webhook claim the provider record does not bear out moves no money and is an incident for staff', async () => {
    const { id, handle } = await startPayout();
    await statusBecomes(handle, (view) => view.status === 'SUBMITTED');
    await handle.signal(providerEventSignal, webhook('settled')); // the record still says pending
    for (const giveUpAt = Date.now() + 10_000; called(id, 'recordProviderIncident').length === 0 && Date.now() < giveUpAt; ) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(called(id, 'recordProviderIncident')).toEqual([{ name: 'recordProviderIncident', input: expect.objectContaining({ kind: 'claim_not_confirmed', reference: id }) }]);
    expect((await handle.query(payoutStatusQuery)).status).toBe('SUBMITTED');
    expect(called(id, 'postPayoutHold')).toHaveLength(0);
    await handle.terminate('test over');
  });

  it('a provider record for another amount is not adopted: incident, stuck for staff, no money moved', async () => {
    const { id, handle } = await startPayout();
    fakeOf(id).record = record(id, 'settled', { amount: { minor_units: 999, currency: 'EUR' } });
    await handle.signal(providerEventSignal, webhook('settled'));
    const view = await statusBecomes(handle, (seen) => seen.stuck);
    expect(view.status).toBe('SUBMITTED');
    expect(called(id, 'recordProviderIncident').map((call) => call.input)).toContainEqual(expect.objectContaining({ kind: 'record_mismatch', fields: ['amount'] }));
    expect(called(id, 'postPayoutHold')).toHaveLength(0);
    await handle.terminate('test over');
  });

  it('a silent provider marks the saga stuck; staff settle it once, and the mark is cleared', async () => {
    const { id, handle } = await startPayout(undefined, { stuckAfterMs: 300 });
    const stuck = await statusBecomes(handle, (view) => view.stuck);
    expect(stuck.timeline.at(-1)).toMatchObject({ status: 'SUBMITTED', note: 'awaiting_provider' });
    expect(called(id, 'recordPayoutState').map((call) => call.input)).toContainEqual(expect.objectContaining({ status: 'SUBMITTED', stuck: true }));
    const resolved = await handle.executeUpdate(staffResolveUpdate, { args: [{ outcome: 'settle', actor: 'finance-1', reason: 'bank statement shows it paid' }] });
    expect(resolved).toMatchObject({ status: 'SETTLED', stuck: false });
    expect(resolved.timeline.at(-1)).toMatchObject({ note: 'resolved_by_staff', staffNote: 'resolved by finance-1: bank statement shows it paid' });
    await expect(handle.executeUpdate(staffResolveUpdate, { args: [{ outcome: 'fail', actor: 'finance-2', reason: 'again' }] })).rejects.toMatchObject(refusal(/only a payout awaiting its provider/, 'PAYOUT_NOT_RESOLVABLE'));
    expect(called(id, 'postPayoutHold')).toHaveLength(1);
    await handle.terminate('test over');
  });

  it('staff cannot fail a payout the provider reports paid', async () => {
    const { id, handle } = await startPayout(undefined, { stuckAfterMs: 300 });
    await statusBecomes(handle, (view) => view.stuck);
    fakeOf(id).record = record(id, 'settled');
    await expect(handle.executeUpdate(staffResolveUpdate, { args: [{ outcome: 'fail', actor: 'finance-1', reason: 'looks lost' }] })).rejects.toMatchObject(refusal(/settled, not failed/, 'PAYOUT_NOT_RESOLVABLE'));
    await statusBecomes(handle, (view) => view.status === 'SETTLED');
    expect(called(id, 'voidPayoutHold')).toHaveLength(0);
    await handle.terminate('test over');
  });

  it('a return inside the window is refunded once the provider record says returned; the saga then closes', async () => {
    const { id, handle } = await startPayout(undefined, { returnWindowMs: 30_000 });
    await statusBecomes(handle, (view) => view.status === 'SUBMITTED');
    fakeOf(id).record = record(id, 'settled');
    await handle.signal(providerEventSignal, webhook('settled'));
    await statusBecomes(handle, (view) => view.status === 'SETTLED');
    fakeOf(id).record = record(id, 'returned', { returnReason: 'account_closed' });
    await handle.signal(providerEventSignal, webhook('returned'));
    await expect(handle.result()).resolves.toMatchObject({ status: 'RETURNED', returnReason: 'account_closed' });
    expect(called(id, 'refundReturnedPayout')).toEqual([{ name: 'refundReturnedPayout', input: expect.objectContaining({ idempotencyKey: `${id}:refund`, postTransferId: 9 }) }]);
  });

  it('a long wait continues as a new run that keeps its timeline and hold, and still settles once', async () => {
    const { id, handle } = await startPayout(undefined, { pollInitialMs: 100, pollMaxMs: 100, continueAsNewAfterEvents: 40 });
    const first = (await handle.describe()).runId;
    for (const giveUpAt = Date.now() + 20_000; (await client.workflow.getHandle(id).describe()).runId === first; ) {
      if (Date.now() > giveUpAt) throw new Error('never continued as new');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const latest = client.workflow.getHandle(id);
    fakeOf(id).record = record(id, 'settled');
    await latest.signal(providerEventSignal, webhook('settled'));
    const done: PayoutView = await latest.result();
    expect(done).toMatchObject({ status: 'SETTLED' });
    expect(done.timeline.map((entry) => entry.status)).toEqual(['REQUESTED', 'AUTHORIZED', 'HELD', 'SUBMITTED', 'SETTLED']);
    expect(called(id, 'submitPayoutToProvider')).toHaveLength(1);
    expect(called(id, 'postPayoutHold')).toEqual([{ name: 'postPayoutHold', input: expect.objectContaining({ holdTransferId: 7 }) }]);
  });
});

async function startDeposit(fake: (id: string) => Omit<Fake, 'calls'> = () => ({})): Promise<{ id: string; handle: WorkflowHandle }> {
  const id = `dp_${randomUUID().replaceAll('-', '')}`;
  fakes.set(id, { ...fake(id), calls: [] });
  const input: DepositInput = {
    depositId: id,
    accountId: 'player-1',
    amount: { minor_units: 2_500, currency: 'EUR' },
    provider: 'sandbox',
    fingerprint: 'fp',
    requestedAt: new Date().toISOString(),
    timings: { pollInitialMs: 60_000, pollMaxMs: 60_000, stuckAfterMs: 60_000 },
  };
  return { id, handle: await client.workflow.start(DEPOSIT_SAGA_TYPE, { taskQueue, workflowId: id, args: [input] }) };
}

const depositWebhook = (status: 'succeeded' | 'failed') => ({ eventId: `evt_${randomUUID()}`, source: 'webhook' as const, providerStatus: status, occurredAt: new Date().toISOString() });

const depositBecomes = (handle: WorkflowHandle, wanted: (view: DepositView) => boolean) => viewBecomes(handle, depositStatusQuery, wanted);

describe('deposit saga (fast tier: mocked activities, real Temporal)', () => {
  it('answers the checkout, and credits once when the provider record bears the webhook out', async () => {
    const { id, handle } = await startDeposit();
    await expect(handle.executeUpdate(intentUpdate, { args: ['fp'] })).resolves.toMatchObject({ outcome: 'created', status: 'PENDING', checkoutUrl: `https://checkout.example/${id}` });
    await handle.signal(depositEventSignal, depositWebhook('succeeded')); // a claim: the record still says pending
    await depositBecomes(handle, () => called(id, 'recordProviderIncident').length > 0);
    expect(called(id, 'creditDeposit')).toHaveLength(0);
    fakeOf(id).depositRecord = depositRecord(id, 'succeeded');
    await handle.signal(depositEventSignal, depositWebhook('succeeded'));
    await expect(handle.result()).resolves.toMatchObject({ status: 'CREDITED', creditTransferId: 11 });
    expect(called(id, 'creditDeposit')).toEqual([{ name: 'creditDeposit', input: expect.objectContaining({ idempotencyKey: `${id}:credit`, amountMinor: 2_500 }) }]);
    expect((await handle.query(depositStatusQuery)).timeline.at(-1)).toMatchObject({ status: 'CREDITED', note: 'confirmed_by_webhook' });
  });

  it('a provider record for another amount is never credited: incident, stuck for staff', async () => {
    const { id, handle } = await startDeposit((depositId) => ({ depositRecord: depositRecord(depositId, 'succeeded', { amount: { minor_units: 250, currency: 'EUR' } }) }));
    const view = await depositBecomes(handle, (seen) => seen.stuck);
    expect(view.status).toBe('PENDING');
    expect(called(id, 'recordProviderIncident').map((call) => call.input)).toContainEqual(expect.objectContaining({ kind: 'record_mismatch', fields: ['amount'] }));
    expect(called(id, 'creditDeposit')).toHaveLength(0);
    await handle.terminate('test over');
  });

  it('an intent the provider refuses is the decision: FAILED, nothing credited', async () => {
    const { id, handle } = await startDeposit(() => ({ submission: 'refuse' }));
    await expect(handle.executeUpdate(intentUpdate, { args: ['fp'] })).resolves.toMatchObject({ outcome: 'refused', status: 'FAILED', code: 'currency_not_supported' });
    await expect(handle.result()).resolves.toMatchObject({ status: 'FAILED', failureCode: 'currency_not_supported' });
    expect(called(id, 'creditDeposit')).toHaveLength(0);
  });
});
