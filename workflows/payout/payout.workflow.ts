import {
  ApplicationFailure,
  ActivityFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { ProviderPayout } from '../../activities/provider';
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS, PROVIDER_POLL_OPTIONS, historyIsLong, SA } from '../shared';
import {
  authorizationUpdate,
  cancelUpdate,
  FINAL_PAYOUT_STATUSES,
  IDEMPOTENCY_MISMATCH,
  maskDestination,
  PAYOUT_NOT_CANCELLABLE,
  PAYOUT_NOT_RESOLVABLE,
  payoutStatusQuery,
  pollProviderNowSignal,
  providerEventSignal,
  staffResolveUpdate,
  type AuthorizationDecision,
  type CancelRequest,
  type PayoutInput,
  type PayoutResume,
  type PayoutStatus,
  type PayoutView,
  type ProviderPayoutEvent,
  type StaffResolution,
  type TimelineEntry,
} from './definitions';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
const provider = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);
const poller = proxyActivities<Activities>(PROVIDER_POLL_OPTIONS);


/** Provider states in the order they can happen; an event that is not ahead of what we know is stale. */
const PROVIDER_RANK = { pending: 0, settled: 1, failed: 1, returned: 2 } as const;

/**
 * A player's withdrawal: authorize → hold → (reversal window) → submit → await provider → settle,
 * with each money step's compensation beside it: a failed or cancelled payout voids its hold, money
 * returned after settlement is refunded to the player.
 */
export async function payoutWorkflow(input: PayoutInput): Promise<PayoutView> {
  const { payoutId, timings } = input;
  let status: PayoutStatus = 'REQUESTED';
  const timeline: TimelineEntry[] = [{ at: input.requestedAt, status }];
  let decision: AuthorizationDecision | undefined;
  let cancelRequest: CancelRequest | undefined;
  let submissionStarted = false;
  let providerView: ProviderPayoutEvent | undefined;
  let stuck = false;
  let pollRequested = false;
  let resolution: StaffResolution | undefined;
  let resolving = false;
  const details: Pick<PayoutView, 'providerPayoutId' | 'failureCode' | 'returnReason' | 'declineCode'> = {};

  const view = (): PayoutView => ({
    payoutId,
    accountId: input.accountId,
    amount: input.amount,
    destination: maskDestination(input.destination),
    provider: input.provider,
    status,
    ...details,
    cancellable: !submissionStarted && (status === 'REQUESTED' || status === 'AUTHORIZED' || status === 'HELD'),
    stuck,
    requestedAt: input.requestedAt,
    timeline: [...timeline],
  });

  setHandler(payoutStatusQuery, view);
  setHandler(
    authorizationUpdate,
    async () => {
      await condition(() => decision !== undefined);
      return decision!;
    },
    {
      validator: (fingerprint: string) => {
        if (fingerprint !== input.fingerprint) throw ApplicationFailure.nonRetryable('Idempotency-Key reused with a different request', IDEMPOTENCY_MISMATCH);
      },
    },
  );
  setHandler(
    cancelUpdate,
    async (request) => {
      cancelRequest ??= request;
      await condition(() => status === 'CANCELLED' || submissionStarted || FINAL_PAYOUT_STATUSES.includes(status));
      return view();
    },
    {
      validator: (_request: CancelRequest) => {
        if (!view().cancellable) throw ApplicationFailure.nonRetryable(`Payout is ${status}${submissionStarted ? ' and submitted to the provider' : ''}`, PAYOUT_NOT_CANCELLABLE);
      },
    },
  );
  /** What the provider says, by webhook, poll or staff: only news (a state ahead of what we know) counts. */
  function learn(event: ProviderPayoutEvent): void {
    if (PROVIDER_RANK[event.providerStatus] > PROVIDER_RANK[providerView?.providerStatus ?? 'pending']) providerView = event;
  }
  setHandler(providerEventSignal, learn);
  setHandler(pollProviderNowSignal, () => {
    pollRequested = true;
  });
  setHandler(
    staffResolveUpdate,
    async (request) => {
      resolving = true;
      // Staff may fail a payout only if the provider has not paid it: a settled payout is settled, not failed.
      if (request.outcome === 'fail' && patched('staff-fail-checks-provider')) {
        const seen = await providerRecord();
        if (seen === 'unknown') {
          resolving = false;
          throw ApplicationFailure.nonRetryable('The provider cannot be asked right now; a payout it may have paid is not failed blind. Retry shortly.', PAYOUT_NOT_RESOLVABLE);
        }
        if (seen !== 'none' && (seen.status === 'settled' || seen.status === 'returned')) {
          learn({ eventId: `poll:${Date.now()}`, source: 'poll', providerStatus: seen.status, providerPayoutId: seen.providerPayoutId, returnReason: seen.returnReason, occurredAt: new Date().toISOString() });
          throw ApplicationFailure.nonRetryable(`The provider reports this payout ${seen.status}; it is settled, not failed`, PAYOUT_NOT_RESOLVABLE);
        }
        // The provider may have answered while we asked: news that arrived meanwhile wins over staff.
        if (status !== 'SUBMITTED' || (providerView && providerView.providerStatus !== 'pending')) {
          throw ApplicationFailure.nonRetryable(`Payout is ${status}${providerView ? ` (provider: ${providerView.providerStatus})` : ''}; it was decided while staff resolved it`, PAYOUT_NOT_RESOLVABLE);
        }
      }
      resolution = request;
      providerView = {
        eventId: `staff:${request.actor}`,
        source: 'staff',
        providerStatus: request.outcome === 'settle' ? 'settled' : 'failed',
        ...(request.outcome === 'fail' ? { failureCode: 'resolved_by_staff' } : {}),
        occurredAt: new Date().toISOString(),
      };
      await condition(() => status !== 'SUBMITTED');
      return view();
    },
    {
      // Exactly once: only a saga still awaiting its provider, with no outcome known, can be resolved.
      validator: (request: StaffResolution) => {
        if (status !== 'SUBMITTED' || (providerView && providerView.providerStatus !== 'pending') || resolving) {
          throw ApplicationFailure.nonRetryable(`Payout is ${status}${providerView ? ` (provider: ${providerView.providerStatus})` : ''}; only a payout awaiting its provider can be resolved`, PAYOUT_NOT_RESOLVABLE);
        }
        if (!request.reason.trim()) throw ApplicationFailure.nonRetryable('a reason is required', PAYOUT_NOT_RESOLVABLE);
      },
    },
  );

  upsertSearchAttributes([
    { key: SA.AccountId, value: input.accountId },
    { key: SA.Provider, value: input.provider },
    { key: SA.Currency, value: input.amount.currency },
    { key: SA.AmountMinor, value: input.amount.minor_units },
    { key: SA.PayoutStatus, value: status },
    { key: SA.PayoutStuck, value: false },
  ]);

  async function moveTo(next: PayoutStatus, note?: string): Promise<void> {
    status = next;
    timeline.push({ at: new Date().toISOString(), status: next, ...(note ? { note } : {}) });
    upsertSearchAttributes([{ key: SA.PayoutStatus, value: next }]);
    await steps.recordPayoutState({ payoutId, version: timeline.length, status: next, ...details, stuck });
  }

  async function finish(): Promise<PayoutView> {
    await condition(allHandlersFinished);
    return view();
  }

  let holdTransferId = input.resume?.holdTransferId ?? 0;
  const voidHold = () => steps.voidPayoutHold({ idempotencyKey: `${payoutId}:void`, payoutId, holdTransferId });

  if (input.resume) {
    // A later run of a saga that was awaiting its provider: pick up where the previous run stopped.
    timeline.splice(0, timeline.length, ...input.resume.timeline);
    status = 'SUBMITTED';
    submissionStarted = true;
    stuck = input.resume.stuck;
    details.providerPayoutId = input.resume.providerPayoutId;
    decision = { outcome: 'held', status: 'HELD', holdTransferId };
    upsertSearchAttributes([
      { key: SA.PayoutStatus, value: status },
      { key: SA.PayoutStuck, value: stuck },
    ]);
  } else {
    // 1. Authorize: account, currency, limits.
    const authorization = await steps.authorizePayout({
      payoutId,
      accountId: input.accountId,
      amountMinor: input.amount.minor_units,
      currency: input.amount.currency,
      destinationMethod: input.destination.method,
      destinationLast4: maskDestination(input.destination).last4,
      provider: input.provider,
      requestedAt: input.requestedAt,
    });
    if (!authorization.approved) {
      details.declineCode = authorization.code;
      decision = { outcome: 'declined', status: 'DECLINED', code: authorization.code, detail: authorization.detail };
      await moveTo('DECLINED', authorization.code);
      return finish();
    }
    await moveTo('AUTHORIZED');

    // 2. Hold the money. Compensation: void the hold.
    const hold = await steps.holdPayoutFunds({
      idempotencyKey: `${payoutId}:hold`,
      payoutId,
      accountId: input.accountId,
      amountMinor: input.amount.minor_units,
      currency: input.amount.currency,
    });
    if (!hold.ok) {
      details.declineCode = hold.code;
      decision = { outcome: 'declined', status: 'DECLINED', code: hold.code, detail: hold.detail };
      await moveTo('DECLINED', hold.code);
      return finish();
    }
    holdTransferId = hold.transferId;
    await moveTo('HELD');
    decision = { outcome: 'held', status: 'HELD', holdTransferId };

    // 3. Reversal window: the player may still cancel. Compensation on cancel: void.
    // Without a window no timer is set (a zero timer still costs the server's timer granularity, ~1 s);
    // sagas started before this change replay their timer (`patched` is false for them).
    if (timings.submitDelayMs > 0 || !patched('no-timer-for-empty-reversal-window')) {
      await condition(() => cancelRequest !== undefined, timings.submitDelayMs);
    }
    if (cancelRequest) {
      await voidHold();
      await moveTo('CANCELLED', `cancelled by ${cancelRequest.requestedBy}${cancelRequest.reason ? `: ${cancelRequest.reason}` : ''}`);
      return finish();
    }

    // 4. Submit to the provider. Compensation on refusal: void.
    submissionStarted = true;
    try {
      const submitted = await provider.submitPayoutToProvider({ payoutId, amount: input.amount, ...('last4' in input.destination ? {} : { destination: input.destination }) });
      details.providerPayoutId = submitted.providerPayoutId;
    } catch (err) {
      if (!(err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === 'ProviderRejected')) throw err;
      const refusal = String((err.cause.details?.[0] as { code?: string } | undefined)?.code ?? 'provider_rejected');
      // A refusal of a retried submission can hide an accepted first attempt: the money is released only
      // when the provider's own record says it has no such payout, or that it failed.
      let known = patched('confirm-refusal-with-provider') ? await providerRecord() : 'none';
      // Unreachable now: keep asking (with the poll backoff) rather than guess either way.
      for (let delay = timings.pollInitialMs; known === 'unknown'; delay = Math.min(delay * 2, timings.pollMaxMs)) {
        await sleep(delay);
        known = await providerRecord();
      }
      if (known === 'none' || known.status === 'failed') {
        details.failureCode = refusal;
        await voidHold();
        await moveTo('FAILED', details.failureCode);
        return finish();
      }
      // The provider has it after all: wait for its outcome like any submitted payout.
      details.providerPayoutId = known.providerPayoutId;
      learn({ eventId: `poll:${Date.now()}`, source: 'poll', providerStatus: known.status, providerPayoutId: known.providerPayoutId, failureCode: known.failureCode, returnReason: known.returnReason, occurredAt: new Date().toISOString() });
    }
    await moveTo('SUBMITTED');
  }

  // 5. Await the provider: its callback, or our status polls with backoff. Never assumed failed.
  await awaitProviderOutcome();
  const outcome = providerView!;
  details.providerPayoutId ??= outcome.providerPayoutId;

  // 6a. Failed: void the hold, the player's money is available again.
  const resolvedBy = resolution ? `resolved by ${resolution.actor}: ${resolution.reason}` : undefined;
  if (outcome.providerStatus === 'failed') {
    details.failureCode = outcome.failureCode ?? 'provider_failed';
    await voidHold();
    await moveTo('FAILED', resolvedBy ?? details.failureCode);
    return finish();
  }

  // 6b. Settled: post the hold. Compensation on a later return: refund with a new transfer.
  const post = await steps.postPayoutHold({ idempotencyKey: `${payoutId}:post`, payoutId, holdTransferId });
  await moveTo('SETTLED', resolvedBy);
  if (providerView!.providerStatus !== 'returned') {
    await condition(() => providerView!.providerStatus === 'returned', timings.returnWindowMs);
  }
  if (providerView!.providerStatus === 'returned') {
    details.returnReason = providerView!.returnReason ?? 'returned';
    if (!post.ok) throw ApplicationFailure.nonRetryable('settled payout has no posted transfer', 'LedgerInconsistency');
    await steps.refundReturnedPayout({ idempotencyKey: `${payoutId}:refund`, payoutId, postTransferId: post.transferId });
    await moveTo('RETURNED', details.returnReason);
  }
  return finish();

  async function awaitProviderOutcome(): Promise<void> {
    const waitingSince = input.resume ? Date.parse(input.resume.waitingSince) : Date.now();
    const stuckAt = waitingSince + timings.stuckAfterMs;
    let pollDelay = input.resume?.pollDelayMs ?? timings.pollInitialMs;
    let nextPollAt = Date.now() + pollDelay;
    const decided = () => providerView !== undefined && providerView.providerStatus !== 'pending';
    while (!decided()) {
      const wakeAt = stuck ? nextPollAt : Math.min(nextPollAt, stuckAt);
      await condition(() => decided() || pollRequested, Math.max(1, wakeAt - Date.now()));
      if (decided()) break;
      if (!stuck && Date.now() >= stuckAt) {
        stuck = true;
        upsertSearchAttributes([{ key: SA.PayoutStuck, value: true }]);
        await moveTo(status, `no provider outcome after ${Math.round(timings.stuckAfterMs / 1000)}s`);
      }
      const onRequest = pollRequested;
      if (!onRequest && Date.now() < nextPollAt) continue; // woke only to mark the saga stuck
      pollRequested = false;
      await pollProvider();
      if (!onRequest) pollDelay = Math.min(pollDelay * 2, timings.pollMaxMs);
      nextPollAt = Date.now() + pollDelay;
      if (!decided() && historyIsLong(timings.continueAsNewAfterEvents) && patched('continue-as-new-while-waiting')) await continueWaitingInNewRun(waitingSince, pollDelay);
      // (returns only if the provider or staff decided while handlers were finishing: the loop then ends)
    }
    if (stuck) {
      stuck = false;
      upsertSearchAttributes([{ key: SA.PayoutStuck, value: false }]);
    }
  }

  async function continueWaitingInNewRun(since: number, pollDelayMs: number): Promise<void> {
    // A staff resolution in progress waits for this saga to act on it: never wait for it to finish first.
    await condition(() => allHandlersFinished() || (providerView !== undefined && providerView.providerStatus !== 'pending'));
    if (providerView !== undefined && providerView.providerStatus !== 'pending') return;
    const resume: PayoutResume = {
      timeline: [...timeline],
      holdTransferId,
      ...(details.providerPayoutId ? { providerPayoutId: details.providerPayoutId } : {}),
      waitingSince: new Date(since).toISOString(),
      stuck,
      pollDelayMs,
      runs: (input.resume?.runs ?? 1) + 1,
    };
    await continueAsNew<typeof payoutWorkflow>({ ...input, resume });
  }

  async function pollProvider(): Promise<void> {
    const seen = await providerRecord();
    if (seen !== 'none' && seen !== 'unknown' && seen.status !== 'pending') {
      learn({ eventId: `poll:${Date.now()}`, source: 'poll', providerStatus: seen.status, providerPayoutId: seen.providerPayoutId, failureCode: seen.failureCode, returnReason: seen.returnReason, occurredAt: new Date().toISOString() });
    }
  }

  /** The provider's record of this payout: 'none' when it has never seen it, 'unknown' when it cannot be asked. */
  async function providerRecord(): Promise<ProviderPayout | 'none' | 'unknown'> {
    try {
      return (await poller.fetchProviderPayout({ payoutId })) ?? 'none';
    } catch {
      return 'unknown'; // the aggregator is unreachable: keep waiting, ask again later
    }
  }
}
