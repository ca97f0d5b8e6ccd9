/**
 * FROZEN. The payout saga as it ran before payoutSaga (workflows/payout/payout.saga.ts).
 * Every saga started since runs as that type; this code only finishes the payouts started before it, and
 * replays their recorded histories in CI (`*.v1.json` … `*.v4.json`). Its patch branches are the record of
 * how those sagas evolved: change nothing here. Remove it once no execution of its type is open
 * (`WorkflowType = 'payoutWorkflow' AND ExecutionStatus = 'Running'` finds none) and its histories are retired.
 */
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
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { ProviderPayout } from '../../activities/provider';
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS, PROVIDER_LOOKUP_OPTIONS, PROVIDER_POLL_OPTIONS, historyIsLong } from '../shared';
import { SA, startSearchAttributes } from '../../contracts/search-attributes';
import { differingTerms, unconfirmedClaim, type ProviderIncident, type RequestedTerms } from '../../contracts/provider-records';
import {
  authorizationUpdate,
  cancelUpdate,
  FINAL_PAYOUT_STATUSES,
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
  type PayoutStateRecord,
  type PayoutStatus,
  type PayoutView,
  type ProviderPayoutEvent,
  type StaffResolution,
  type TimelineEntry,
} from '../../contracts/payout';
import { IDEMPOTENCY_MISMATCH } from '../../contracts/common';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
const provider = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);
const poller = proxyActivities<Activities>(PROVIDER_POLL_OPTIONS);
const lookups = proxyLocalActivities<Activities>(PROVIDER_LOOKUP_OPTIONS);


/** Provider states in the order they can happen; an event that is not ahead of what we know is stale. */
const PROVIDER_RANK = { pending: 0, settled: 1, failed: 1, returned: 2 } as const;

/** First re-ask of a provider that could not be asked to confirm a webhook's claim; doubles up to pollMaxMs. */
const CLAIM_RECHECK_MS = 1_000;

/**
 * A player's withdrawal: authorize → hold → (reversal window) → submit → await provider → settle,
 * with each money step's compensation beside it: a failed or cancelled payout voids its hold, money
 * returned after settlement is refunded to the player.
 */
export async function payoutWorkflow(input: PayoutInput): Promise<PayoutView> {
  const { payoutId, timings } = input;
  const scheduledPolls = input.pollTaskQueue ? proxyActivities<Activities>({ ...PROVIDER_POLL_OPTIONS, taskQueue: input.pollTaskQueue }) : undefined;
  // Patch decisions are taken here, in the first activation, before any local activity result. A
  // patched() call right after a local activity can run one workflow task earlier on replay than it did
  // live (when a task completion carried the activity's marker but not the code after it), and there
  // it answers false: the nondeterminism error of issue 9. Sagas started before this change have no
  // such marker here and take their decisions where they always did.
  const patchedAtStart = patched('patch-decisions-at-start');
  /** A change to what the saga does: on for sagas started with it; older sagas decide where they always did. */
  const patchedSince = (patchId: string) => patchedAtStart || patched(patchId);
  // Later changes are decided here too, each by its own marker (patchedSince would answer true for every
  // saga started since the line above, including those recorded before the change).
  /** Fewer round trips per saga: authorize and hold in one local step, each ledger step writing the state it
   *  leads to, the provider's record read by a local activity, search attributes set by the API at start. */
  const leanSteps = patched('lean-saga-steps');
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
  /** A webhook not yet confirmed by the provider's own record: a claim, never acted on by itself. */
  let claim: ProviderPayoutEvent | undefined;
  const terms: RequestedTerms = { amount: input.amount, destination: maskDestination(input.destination) };
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
  setHandler(providerEventSignal, (event) => {
    // A webhook is a claim: the saga asks the provider, and acts on its record (see checkProvider).
    if (event.source === 'webhook' && patchedSince('webhooks-confirmed-with-provider')) claim = event;
    else learn(event);
  });
  setHandler(pollProviderNowSignal, () => {
    pollRequested = true;
  });
  setHandler(
    staffResolveUpdate,
    async (request) => {
      resolving = true;
      // Staff may fail a payout only if the provider has not paid it: a settled payout is settled, not failed.
      if (request.outcome === 'fail' && patchedSince('staff-fail-checks-provider')) {
        const seen = await providerRecord();
        if (seen === 'unknown') {
          resolving = false;
          throw ApplicationFailure.nonRetryable('The provider cannot be asked right now; a payout it may have paid is not failed blind. Retry shortly.', PAYOUT_NOT_RESOLVABLE);
        }
        if (seen !== 'none' && (seen.status === 'settled' || seen.status === 'returned') && agrees(seen)) {
          learn(eventFrom(seen));
          throw ApplicationFailure.nonRetryable(`The provider reports this payout ${seen.status}; it is settled, not failed`, PAYOUT_NOT_RESOLVABLE);
        }
        // The provider may have answered while we asked: news that arrived meanwhile wins over staff.
        if (status !== 'SUBMITTED' || (providerView && providerView.providerStatus !== 'pending')) {
          throw ApplicationFailure.nonRetryable(`Payout is ${status}${providerView ? ` (provider: ${providerView.providerStatus})` : ''}; it was decided while staff resolved it`, PAYOUT_NOT_RESOLVABLE);
        }
      }
      resolution = request;
      claim = undefined;
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

  if (!leanSteps || workflowInfo().typedSearchAttributes.get(SA.AccountId) === undefined) upsertSearchAttributes(startSearchAttributes(input));

  /** The read-model row of the state `next`, once entered (its version is its place in the timeline). */
  const stateRecord = (next: PayoutStatus): PayoutStateRecord => ({ payoutId, version: timeline.length + 1, status: next, ...details, stuck });

  /** Enters a state in memory. `note` is a stable code a player may see; `staffNote` is free text for staff views only. */
  function enter(next: PayoutStatus, note?: string, staffNote?: string): void {
    status = next;
    timeline.push({ at: new Date().toISOString(), status: next, ...(note ? { note } : {}), ...(staffNote ? { staffNote } : {}) });
    upsertSearchAttributes([{ key: SA.Status, value: next }]);
  }

  /** Enters a state and mirrors it into the read model. */
  async function moveTo(next: PayoutStatus, note?: string, staffNote?: string): Promise<void> {
    const record = stateRecord(next);
    enter(next, note, staffNote);
    await steps.recordPayoutState(record);
  }

  /**
   * A ledger step and the state it leads to: mirrored by the step's own activity once the money moved.
   * Sagas started before lean-saga-steps run the step, then a separate mirroring step, as they always did.
   */
  async function moveWith<T>(next: PayoutStatus, step: (record?: PayoutStateRecord) => Promise<T>, note?: string, staffNote?: string): Promise<T> {
    if (!leanSteps) {
      const result = await step();
      await moveTo(next, note, staffNote);
      return result;
    }
    const result = await step(stateRecord(next));
    enter(next, note, staffNote);
    return result;
  }

  async function finish(): Promise<PayoutView> {
    await condition(allHandlersFinished);
    return view();
  }

  /** What authorization looks at: the account, the amount and the destination's method. */
  const authorizationRequest = () => ({
    payoutId,
    accountId: input.accountId,
    amountMinor: input.amount.minor_units,
    currency: input.amount.currency,
    destinationMethod: input.destination.method,
    destinationLast4: maskDestination(input.destination).last4,
    provider: input.provider,
    requestedAt: input.requestedAt,
  });

  let holdTransferId = input.resume?.holdTransferId ?? 0;
  const voidHold = (record?: PayoutStateRecord) => steps.voidPayoutHold({ idempotencyKey: `${payoutId}:void`, payoutId, holdTransferId, ...(record ? { record } : {}) });
  /** Releases the hold and ends in `next` (FAILED, CANCELLED). */
  const releaseHold = (next: PayoutStatus, note?: string, staffNote?: string) => moveWith(next, voidHold, note, staffNote);

  if (input.resume) {
    // A later run of a saga that was awaiting its provider: pick up where the previous run stopped.
    timeline.splice(0, timeline.length, ...input.resume.timeline);
    status = 'SUBMITTED';
    submissionStarted = true;
    stuck = input.resume.stuck;
    details.providerPayoutId = input.resume.providerPayoutId;
    decision = { outcome: 'held', status: 'HELD', holdTransferId };
    upsertSearchAttributes([
      { key: SA.Status, value: status },
      { key: SA.Stuck, value: stuck },
    ]);
  } else if (leanSteps) {
    // 1-2. Authorize (account, currency, limits) and hold the money, in one step. Compensation: void the hold.
    const admission = await steps.admitPayout({ ...authorizationRequest(), holdIdempotencyKey: `${payoutId}:hold`, version: timeline.length + 2 });
    if (admission.outcome === 'declined') {
      if (admission.stage === 'hold') timeline.push({ at: new Date().toISOString(), status: 'AUTHORIZED' });
      details.declineCode = admission.code;
      decision = { outcome: 'declined', status: 'DECLINED', code: admission.code, detail: admission.detail };
      enter('DECLINED', admission.code);
      return finish();
    }
    holdTransferId = admission.holdTransferId;
    timeline.push({ at: new Date().toISOString(), status: 'AUTHORIZED' });
    enter('HELD');
    decision = { outcome: 'held', status: 'HELD', holdTransferId };
    const ended = await submitAfterReversalWindow();
    if (ended) return ended;
  } else {
    // 1. Authorize: account, currency, limits.
    const authorization = await steps.authorizePayout(authorizationRequest());
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

    const ended = await submitAfterReversalWindow();
    if (ended) return ended;
  }

  // 5. Await the provider: its callback, or our status polls with backoff. Never assumed failed.
  await awaitProviderOutcome();
  const outcome = providerView!;
  details.providerPayoutId ??= outcome.providerPayoutId;

  // 6a. Failed: void the hold, the player's money is available again.
  const resolvedBy = resolution ? `resolved by ${resolution.actor}: ${resolution.reason}` : undefined;
  if (outcome.providerStatus === 'failed') {
    details.failureCode = outcome.failureCode ?? 'provider_failed';
    await releaseHold('FAILED', resolution ? 'resolved_by_staff' : details.failureCode, resolvedBy);
    return finish();
  }

  // 6b. Settled: post the hold. Compensation on a later return: refund with a new transfer.
  const postHold = (record?: PayoutStateRecord) => steps.postPayoutHold({ idempotencyKey: `${payoutId}:post`, payoutId, holdTransferId, ...(record ? { record } : {}) });
  const post = await moveWith('SETTLED', postHold, resolution ? 'resolved_by_staff' : undefined, resolvedBy);
  // Return window: a return claimed by webhook is refunded once the provider's record says returned.
  const returned = () => providerView!.providerStatus === 'returned';
  for (const closesAt = Date.now() + timings.returnWindowMs; !returned(); ) {
    if (!(await condition(() => returned() || claim !== undefined, Math.max(1, closesAt - Date.now())))) break;
    if (claim) await checkProvider(returned);
  }
  if (returned()) {
    details.returnReason = providerView!.returnReason ?? 'returned';
    if (!post.ok) throw ApplicationFailure.nonRetryable('settled payout has no posted transfer', 'LedgerInconsistency');
    const postTransferId = post.transferId;
    const refund = (record?: PayoutStateRecord) => steps.refundReturnedPayout({ idempotencyKey: `${payoutId}:refund`, payoutId, postTransferId, ...(record ? { record } : {}) });
    await moveWith('RETURNED', refund, details.returnReason);
  }
  return finish();

  /** Steps 3 and 4: the reversal window, then the submission. Returns the final view if the saga ended there. */
  async function submitAfterReversalWindow(): Promise<PayoutView | undefined> {
    // 3. Reversal window: the player may still cancel. Compensation on cancel: void.
    // Without a window no timer is set (a zero timer still costs the server's timer granularity, ~1 s);
    // sagas started before this change replay their timer (`patched` is false for them).
    if (timings.submitDelayMs > 0 || !patchedSince('no-timer-for-empty-reversal-window')) {
      await condition(() => cancelRequest !== undefined, timings.submitDelayMs);
    }
    if (cancelRequest) {
      await releaseHold('CANCELLED', 'cancelled', `cancelled by ${cancelRequest.requestedBy}${cancelRequest.reason ? `: ${cancelRequest.reason}` : ''}`);
      return finish();
    }

    // 4. Submit to the provider. Compensation on refusal: void.
    submissionStarted = true;
    /** The provider's record as it answered the submission: acted on only if it agrees with the request. */
    let submittedRecord: ProviderPayout | undefined;
    /** Whether the submission's activity already wrote SUBMITTED into the read model. */
    let mirrored = false;
    try {
      submittedRecord = await provider.submitPayoutToProvider({
        payoutId,
        amount: input.amount,
        ...('last4' in input.destination ? {} : { destination: input.destination }),
        ...(leanSteps ? { record: stateRecord('SUBMITTED') } : {}),
      });
      mirrored = leanSteps;
      if (!patchedSince('provider-records-verified')) details.providerPayoutId = submittedRecord.providerPayoutId;
    } catch (err) {
      if (!(err instanceof ActivityFailure && err.cause instanceof ApplicationFailure)) throw err;
      // A destination that cannot be read (missing, or its encrypted row does not authenticate) is never
      // sent; like a refusal, the hold is released once the provider confirms it has no such payout.
      const unreadable = (err.cause.type === 'DestinationUndecryptable' || err.cause.type === 'DestinationMissing') && patchedSince('unreadable-destination-released');
      if (err.cause.type !== 'ProviderRejected' && !unreadable) throw err;
      const refusal = unreadable ? 'destination_unreadable' : String((err.cause.details?.[0] as { code?: string } | undefined)?.code ?? 'provider_rejected');
      // A refusal of a retried submission can hide an accepted first attempt: the money is released only
      // when the provider's own record says it has no such payout, or that it failed.
      let known = patchedSince('confirm-refusal-with-provider') ? await providerRecord() : 'none';
      // Unreachable now: keep asking (with the poll backoff) rather than guess either way.
      for (let delay = timings.pollInitialMs; known === 'unknown'; delay = Math.min(delay * 2, timings.pollMaxMs)) {
        await sleep(delay);
        known = await providerRecord();
      }
      if (known === 'none' || known.status === 'failed') {
        details.failureCode = refusal;
        await releaseHold('FAILED', details.failureCode);
        return finish();
      }
      // The provider has it after all: wait for its outcome like any submitted payout.
      submittedRecord = known;
      if (!patchedSince('provider-records-verified')) {
        details.providerPayoutId = known.providerPayoutId;
        learn(eventFrom(known));
      }
    }
    if (mirrored) enter('SUBMITTED');
    else await moveTo('SUBMITTED');
    // Adopted only if it is the payout we asked for: a record with our reference but another amount,
    // currency or destination is an incident for staff, and the saga waits, stuck, for one that agrees.
    if (patchedSince('provider-records-verified')) await judge(submittedRecord);
    return undefined;
  }

  async function awaitProviderOutcome(): Promise<void> {
    const waitingSince = input.resume ? Date.parse(input.resume.waitingSince) : Date.now();
    const stuckAt = waitingSince + timings.stuckAfterMs;
    let pollDelay = input.resume?.pollDelayMs ?? timings.pollInitialMs;
    let nextPollAt = Date.now() + pollDelay;
    const decided = () => providerView !== undefined && providerView.providerStatus !== 'pending';
    while (!decided()) {
      const wakeAt = stuck ? nextPollAt : Math.min(nextPollAt, stuckAt);
      await condition(() => decided() || pollRequested || claim !== undefined, Math.max(1, wakeAt - Date.now()));
      if (decided()) break;
      if (!stuck && Date.now() >= stuckAt) {
        stuck = true;
        upsertSearchAttributes([{ key: SA.Stuck, value: true }]);
        await moveTo(status, 'awaiting_provider', `no provider outcome after ${Math.round(timings.stuckAfterMs / 1000)}s`);
      }
      const onRequest = pollRequested || claim !== undefined;
      if (!onRequest && Date.now() < nextPollAt) continue; // woke only to mark the saga stuck
      pollRequested = false;
      await checkProvider(decided, !onRequest);
      if (!onRequest) pollDelay = Math.min(pollDelay * 2, timings.pollMaxMs);
      nextPollAt = Date.now() + pollDelay;
      if (!decided() && historyIsLong(timings.continueAsNewAfterEvents) && patchedSince('continue-as-new-while-waiting')) await continueWaitingInNewRun(waitingSince, pollDelay);
      // (returns only if the provider or staff decided while handlers were finishing: the loop then ends)
    }
    if (stuck) {
      stuck = false;
      upsertSearchAttributes([{ key: SA.Stuck, value: false }]);
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

  /**
   * Asks the provider for its record (a poll, or a webhook's claim to confirm) and acts on what it says.
   * A claim is re-asked, with backoff, until the provider can be asked or `settled()` (e.g. staff decided).
   * A `scheduled` poll (no claim, no request) is background work: it goes to the background task queue.
   */
  async function checkProvider(settled: () => boolean, scheduled = false): Promise<void> {
    const claimed = claim;
    claim = undefined;
    let seen = await providerRecord(scheduled && !claimed);
    for (let delay = CLAIM_RECHECK_MS; claimed && seen === 'unknown' && !settled(); delay = Math.min(delay * 2, timings.pollMaxMs)) {
      if (await condition(settled, delay)) return;
      seen = await providerRecord();
    }
    if (seen !== 'unknown') await judge(seen, claimed);
  }

  /**
   * What the provider's record means for the saga: its status is learned only when it agrees with the
   * request (amount, currency, destination); a webhook claim it does not bear out is written for staff.
   */
  async function judge(seen: ProviderPayout | 'none' | undefined, claimed?: ProviderPayoutEvent): Promise<void> {
    if (seen === undefined) return;
    const verify = patchedSince('provider-records-verified');
    const fields = verify && seen !== 'none' ? differingTerms(terms, seen) : [];
    if (seen !== 'none' && fields.length > 0) {
      await reportIncident({ kind: 'record_mismatch', fields, observed: observedOf(seen), ...(claimed ? { eventId: claimed.eventId } : {}) });
      if (!stuck) {
        stuck = true;
        upsertSearchAttributes([{ key: SA.Stuck, value: true }]);
        await moveTo(status, 'awaiting_provider', `the provider's record differs from the payout (${fields.join(', ')}); not acted on`);
      }
      return;
    }
    if (seen !== 'none') {
      details.providerPayoutId = seen.providerPayoutId;
      if (seen.status !== 'pending') learn(eventFrom(seen, claimed?.providerStatus === seen.status ? claimed : undefined));
    }
    const unconfirmed = claimed && unconfirmedClaim(claimed, seen === 'none' ? { status: 'none' } : observedOf(seen));
    if (unconfirmed) await reportIncident(unconfirmed);
  }

  async function reportIncident(incident: Pick<ProviderIncident, 'kind' | 'fields' | 'observed' | 'eventId'> & { claimedStatus?: string }): Promise<void> {
    const { claimedStatus, ...rest } = incident;
    await steps.recordProviderIncident({ sagaKind: 'payout', reference: payoutId, expected: { ...terms, ...(claimedStatus ? { status: claimedStatus } : {}) }, ...rest });
  }

  function agrees(seen: ProviderPayout): boolean {
    return !patchedSince('provider-records-verified') || differingTerms(terms, seen).length === 0;
  }

  function observedOf(seen: ProviderPayout): Record<string, unknown> & { status: string } {
    return { status: seen.status, providerPayoutId: seen.providerPayoutId, amount: seen.amount ?? null, destination: seen.destination ?? null };
  }

  function eventFrom(seen: ProviderPayout, confirmedClaim?: ProviderPayoutEvent): ProviderPayoutEvent {
    return {
      eventId: confirmedClaim?.eventId ?? `poll:${Date.now()}`,
      source: confirmedClaim ? 'webhook' : 'poll',
      providerStatus: seen.status,
      providerPayoutId: seen.providerPayoutId,
      failureCode: seen.failureCode,
      returnReason: seen.returnReason,
      occurredAt: new Date().toISOString(),
    };
  }

  /** The provider's record of this payout: 'none' when it has never seen it, 'unknown' when it cannot be asked. */
  async function providerRecord(scheduled = false): Promise<ProviderPayout | 'none' | 'unknown'> {
    try {
      const via = scheduled && scheduledPolls ? scheduledPolls : leanSteps ? lookups : poller;
      return (await via.fetchProviderPayout({ payoutId })) ?? 'none';
    } catch {
      return 'unknown'; // the aggregator is unreachable: keep waiting, ask again later
    }
  }
}
