import { ActivityFailure, ApplicationFailure, TimeoutFailure, allHandlersFinished, condition, continueAsNew, patched, proxyActivities, proxyLocalActivities, setHandler, sleep, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { ProviderPayout } from '../../activities/provider';
import {
  authorizationUpdate,
  cancelUpdate,
  PAYOUT_NOT_RESOLVABLE,
  payoutStatusQuery,
  pollProviderNowSignal,
  providerEventSignal,
  providerPollQuery,
  reviewUpdate,
  staffResolveUpdate,
  attemptReference,
  type PayoutAttempt,
  type PayoutInput,
  type PayoutResume,
  type PayoutStateRecord,
  type PayoutStatus,
  type PayoutView,
  type ProviderPayoutEvent,
  type StaffResolution,
} from '../../contracts/payout';
import { SA, startSearchAttributes } from '../../contracts/search-attributes';
import { awaitProviderOutcome, eventFromRecord, providerRecordChecks, waitingSaga, type WaitingSaga } from '../provider-wait';
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS, PROVIDER_LOOKUP_OPTIONS, PROVIDER_POLL_OPTIONS } from '../shared';
import { PayoutState } from './payout-state';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
const providerCalls = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);
/**
 * A routed submission with a time limit starts no retry within this margin of it (longer than a submission's
 * own 10 s HTTP timeout), so when the limit passes no request of it is still being sent...
 */
const SUBMISSION_DEADLINE_MARGIN_MS = 12_000;
/** ...and the saga waits this long more before asking the provider, so one received at the last moment has been committed or dropped there. */
const SUBMISSION_IN_FLIGHT_MS = 15_000;
const lookups = proxyLocalActivities<Activities>(PROVIDER_LOOKUP_OPTIONS);

/**
 * A player's withdrawal: authorize and hold → reversal window → submit → await the provider → settle or
 * fail → return window. Each money step stands beside what undoes it (`moneySteps`): a failed or cancelled
 * payout voids its hold; money returned after settlement is refunded to the player.
 */
export async function payoutSaga(input: PayoutInput): Promise<PayoutView> {
  // Asked first, before any local activity, so its marker never sits between a local activity's and a task boundary.
  const staffCanPoll = patched('return-window-staff-poll');
  const saga = new PayoutState(input);
  const money = moneySteps(saga);
  const ask = providerChecks(saga);
  setHandler(payoutStatusQuery, () => saga.view());
  setHandler(authorizationUpdate, () => saga.decisionWhenKnown(), { validator: (fingerprint) => saga.checkFingerprint(fingerprint) });
  setHandler(cancelUpdate, (request) => saga.cancel(request), { validator: (_request) => saga.checkCancellable() });
  setHandler(providerEventSignal, (event) => saga.receive(event));
  setHandler(pollProviderNowSignal, () => saga.requestPoll());
  setHandler(providerPollQuery, () => (saga.ended ? 'finished' : !staffCanPoll && saga.status === 'SETTLED' ? 'ignored' : 'acts'));
  setHandler(staffResolveUpdate, (request) => resolveByStaff(saga, ask, request), { validator: (request) => saga.checkResolvable(request) });
  setHandler(reviewUpdate, (review) => saga.applyReview(review), { validator: (review) => saga.checkReviewable(review) });
  // Set by the API when it starts the saga; a saga started another way adds them itself.
  if (workflowInfo().typedSearchAttributes.get(SA.AccountId) === undefined) upsertSearchAttributes(startSearchAttributes(input));

  if (input.resume) {
    resumeWaiting(saga, input.resume);
  } else {
    // 1-2. Authorize (account, currency, limits) and hold the money.
    if (!(await money.authorizeAndHold())) return finish(saga);
    // 2b. Review: a large payout (or one over a limit, where limits send to review) waits for staff; rejected, its hold is voided.
    if (saga.reviewReason && !(await awaitReview(saga, money))) return finish(saga);
    // 3. Reversal window: the player may still cancel.
    if (input.timings.submitDelayMs > 0) await condition(() => saga.cancelRequest !== undefined, input.timings.submitDelayMs);
    if (saga.cancelRequest) {
      const { requestedBy, reason } = saga.cancelRequest;
      await money.voidHold('CANCELLED', 'cancelled', `cancelled by ${requestedBy}${reason ? `: ${reason}` : ''}`);
      return finish(saga);
    }
    // 4. Submit to the provider. A refusal the provider's record bears out voids the hold.
    const refusal = await submit(saga, ask);
    if (refusal) {
      saga.details.failureCode = refusal;
      await money.voidHold('FAILED', refusal);
      return finish(saga);
    }
  }

  // 5. Await the provider: its callback (checked against its record), staff, or our polls. Never assumed failed.
  await awaitProviderOutcome(waiting(saga, ask), input.timings, input.resume);
  const outcome = saga.providerView!;
  saga.details.providerPayoutId ??= outcome.providerPayoutId;
  const { resolution } = saga;
  const resolvedBy = resolution ? `resolved by ${resolution.actor}${resolution.approvedBy ? `, approved by ${resolution.approvedBy}` : ''}: ${resolution.reason}` : undefined;

  // 6a. Failed: the player's money is available again.
  if (outcome.providerStatus === 'failed') {
    saga.details.failureCode = outcome.failureCode ?? 'provider_failed';
    await money.voidHold('FAILED', resolution ? 'resolved_by_staff' : saga.details.failureCode, resolvedBy);
    return finish(saga);
  }

  // 6b. Settled: the hold is posted, the money paid.
  const postTransferId = await money.postHold(resolution ? 'resolved_by_staff' : undefined, resolvedBy);

  // 7. Return window: a return claimed by webhook, or found by a poll staff asked for (a return whose webhook was
  // lost, as after a failover to a standby that never saw it), is refunded once the provider's record says returned.
  const nudged = () => (staffCanPoll ? saga.nudged() : saga.claim !== undefined);
  for (const closesAt = Date.now() + input.timings.returnWindowMs; !saga.returned(); ) {
    if (!(await condition(() => saga.returned() || nudged(), Math.max(1, closesAt - Date.now())))) break;
    if (nudged()) await ask.check(false, () => saga.returned());
  }
  if (saga.returned()) {
    saga.details.returnReason = saga.providerView!.returnReason ?? 'returned';
    await money.refund(postTransferId, saga.details.returnReason);
  }
  return finish(saga);
}

/** Returns the saga's view once every handler in progress has answered. */
async function finish(saga: PayoutState): Promise<PayoutView> {
  await condition(allHandlersFinished);
  saga.ended = true;
  return saga.view();
}

/** Enters a state and mirrors it into the read model (for states no ledger step leads to). */
async function moveTo(saga: PayoutState, next: PayoutStatus, note?: string, staffNote?: string): Promise<void> {
  const record = saga.record(next);
  saga.enter(next, note, staffNote);
  await steps.recordPayoutState(record);
}

/**
 * The saga's money steps, each beside what undoes it (two-phase: a hold is later posted or voided). Every
 * step is a local activity keyed by the payout, and writes the read-model state it leads to in the same step.
 */
function moneySteps(saga: PayoutState) {
  const { payoutId } = saga.input;
  async function moveWith<T>(next: PayoutStatus, step: (record: PayoutStateRecord) => Promise<T>, note?: string, staffNote?: string): Promise<T> {
    const result = await step(saga.record(next));
    saga.enter(next, note, staffNote);
    return result;
  }
  return {
    /** Authorize and hold in one step; false when declined (the decision is then known, nothing held). Undone by `voidHold`. */
    async authorizeAndHold(): Promise<boolean> {
      const { input } = saga;
      const admission = await steps.admitPayout({
        payoutId,
        accountId: input.accountId,
        amountMinor: input.amount.minor_units,
        currency: input.amount.currency,
        destinationMethod: saga.destination.method,
        destinationLast4: saga.destination.last4,
        provider: input.provider,
        requestedAt: input.requestedAt,
        holdIdempotencyKey: `${payoutId}:hold`,
        version: saga.timeline.length + 2,
        ...(input.review?.onLimitBreach === 'review' ? { limitBreach: 'review' as const } : {}),
      });
      if (admission.outcome === 'declined') {
        if (admission.stage === 'hold') saga.timeline.push({ at: new Date().toISOString(), status: 'AUTHORIZED' });
        saga.details.declineCode = admission.code;
        saga.decision = { outcome: 'declined', status: 'DECLINED', code: admission.code, detail: admission.detail };
        saga.enter('DECLINED', admission.code);
        return false;
      }
      saga.holdTransferId = admission.holdTransferId;
      saga.timeline.push({ at: new Date().toISOString(), status: 'AUTHORIZED' });
      saga.enter('HELD');
      const review = input.review;
      saga.reviewReason = admission.review ?? (review && input.amount.minor_units > review.aboveMinor ? 'amount' : undefined);
      if (saga.reviewReason) await moveTo(saga, 'PENDING_REVIEW', 'pending_review');
      saga.decision = { outcome: 'held', status: saga.status, holdTransferId: saga.holdTransferId };
      return true;
    },
    /** Undoes the hold and ends in `next` (FAILED, CANCELLED): the player's money is available again. */
    voidHold: (next: PayoutStatus, note?: string, staffNote?: string) =>
      moveWith(next, (record) => steps.voidPayoutHold({ idempotencyKey: `${payoutId}:void`, payoutId, holdTransferId: saga.holdTransferId, record }), note, staffNote),
    /** Posts the hold (SETTLED) and answers its transfer id. Undone after a return by `refund`. */
    async postHold(note?: string, staffNote?: string): Promise<number> {
      const post = await moveWith('SETTLED', (record) => steps.postPayoutHold({ idempotencyKey: `${payoutId}:post`, payoutId, holdTransferId: saga.holdTransferId, record }), note, staffNote);
      if (!post.ok) throw ApplicationFailure.nonRetryable('settled payout has no posted transfer', 'LedgerInconsistency');
      return post.transferId;
    },
    /** Undoes a post (RETURNED): the player is refunded with a new transfer. */
    refund: (postTransferId: number, note: string) =>
      moveWith('RETURNED', (record) => steps.refundReturnedPayout({ idempotencyKey: `${payoutId}:refund`, payoutId, postTransferId, record }), note),
  };
}

/**
 * Step 2b: waits for staff to review the held payout (marked stuck past its SLA, still waiting). Approved:
 * back to HELD, on to the window and the submission. Rejected: the hold is voided, DECLINED with the
 * reviewer's code. A cancel meanwhile is left to the window's cancel path. False when it ended here.
 */
async function awaitReview(saga: PayoutState, money: ReturnType<typeof moneySteps>): Promise<boolean> {
  const decided = () => saga.review !== undefined || saga.cancelRequest !== undefined;
  const { slaMs } = saga.input.review!;
  if (!(await condition(decided, slaMs))) {
    await stick(saga, `no review after ${Math.round(slaMs / 60_000)} min`, 'awaiting_review');
    await condition(decided);
  }
  if (saga.stuck) saga.markStuck(false);
  const { review } = saga;
  if (!review) return true;
  const by = `${review.reviewer}${review.approvedBy ? `, approved by ${review.approvedBy}` : ''}: ${review.reason}`;
  if (review.decision === 'reject') {
    saga.details.declineCode = review.reasonCode ?? 'review_rejected';
    await money.voidHold('DECLINED', saga.details.declineCode, `rejected at review by ${by}`);
    return false;
  }
  // Approved, perhaps days later: the account must still be allowed to withdraw (not frozen, no chargeback owed since).
  if (patched('review-approval-rechecks-account')) {
    const { refusal } = await steps.recheckPayoutAccount({ payoutId: saga.input.payoutId, accountId: saga.input.accountId });
    if (refusal) {
      saga.details.declineCode = refusal.code;
      await money.voidHold('DECLINED', refusal.code, `approved at review by ${by}; not paid: ${refusal.detail}`);
      return false;
    }
  }
  await moveTo(saga, 'HELD', 'review_approved', `approved at review by ${by}`);
  return true;
}

/**
 * Step 4: submits the payout to the first provider of its route (the submission writes SUBMITTED itself).
 * It moves to the next provider only when the one before refused it, or left it unanswered past
 * `failoverAfterMs`, AND that provider's own record says it has no such payout or failed it: then under a
 * new reference (`<payout id>:a<n>`), so no provider ever sees one payout twice under two keys. Answers the
 * refusal code when the last provider refused it (confirmed by its record); otherwise the payout is
 * SUBMITTED, the record adopted only if it agrees with the request.
 */
async function submit(saga: PayoutState, ask: ProviderChecks): Promise<string | undefined> {
  const { input } = saga;
  saga.submissionStarted = true;
  // Sagas started before routing go to their one provider, with the commands they always issued.
  const order = input.route ? await planRoute(saga) : [input.provider];
  let movedOn: string | undefined;
  for (let i = 0; i < order.length; i++) {
    const last = i === order.length - 1;
    if (input.route) beginAttempt(saga, { attempt: i + 1, provider: order[i]!, reference: attemptReference(input.payoutId, i + 1) });
    const outcome = await submitAttempt(saga, ask, last ? undefined : input.timings.failoverAfterMs, movedOn);
    if ('submitted' in outcome) {
      await ask.judge(outcome.submitted);
      return undefined;
    }
    if (last || outcome.final) return outcome.refusal;
    movedOn = outcome.why;
    await moveTo(saga, saga.status, 'provider_failover', `${outcome.why}: moving to ${order[i + 1]}`);
  }
  return undefined; // not reached: the last attempt answers
}

/**
 * The route's providers in the order to try them now: healthy and enabled first (the timeline says who was
 * passed over). While staff have disabled every one of them, the payout waits (marked stuck past
 * `stuckAfterMs`) and asks again on the poll backoff.
 */
async function planRoute(saga: PayoutState): Promise<string[]> {
  const { payoutId, route, timings } = saga.input;
  const since = Date.now();
  for (let delay = timings.pollInitialMs; ; delay = Math.min(delay * 2, timings.pollMaxMs)) {
    const { order, skipped } = await steps.planPayoutRoute({ payoutId, route: route! });
    if (order.length > 0) {
      if (skipped.length > 0) {
        const why = skipped.map((s) => `${s.provider}: ${s.reason === 'disabled' ? 'disabled by staff' : 'circuit breaker open (kept as a last resort)'}`).join('; ');
        saga.timeline.push({ at: new Date().toISOString(), status: saga.status, note: 'provider_passed_over', staffNote: why });
      }
      if (saga.stuck) saga.markStuck(false);
      return order;
    }
    if (!saga.stuck && Date.now() - since >= timings.stuckAfterMs) await stick(saga, `every provider of its route (${route!.join(', ')}) is disabled by staff`);
    await sleep(delay);
  }
}

/** Makes `attempt` the payout's current one (its submission records it in the read model before the provider can have it). */
function beginAttempt(saga: PayoutState, attempt: PayoutAttempt): void {
  saga.attempt = attempt;
  saga.claim = undefined; // a webhook about the attempt before is not this one's news
  if (attempt.provider !== workflowInfo().typedSearchAttributes.get(SA.Provider)) upsertSearchAttributes([{ key: SA.Provider, value: attempt.provider }]);
}

type AttemptOutcome = { submitted: ProviderPayout } | { refusal: string; why: string; final: boolean };

/**
 * One attempt: submitted, or why not. A refusal (or, with `unansweredAfterMs`, a submission left unanswered
 * that long) is checked with the provider's record, asked on the poll backoff until it answers; only 'none'
 * or 'failed' lets the saga move on (never while a webhook of this attempt claims otherwise). A routed
 * payout whose provider cannot be asked is marked stuck past `stuckAfterMs`, and keeps asking.
 */
async function submitAttempt(saga: PayoutState, ask: ProviderChecks, unansweredAfterMs: number | undefined, supersededWhy: string | undefined): Promise<AttemptOutcome> {
  const { payoutId, amount, timings } = saga.input;
  const routed = saga.attempt !== undefined;
  const provider = saga.attempt?.provider ?? saga.input.provider;
  const submitter = unansweredAfterMs === undefined ? providerCalls : proxyActivities<Activities>({ ...PROVIDER_CALL_OPTIONS, scheduleToCloseTimeout: unansweredAfterMs });
  let refusal: string;
  let why: string;
  let final = false;
  try {
    const attempt = saga.attempt
      ? {
          attempt: saga.attempt.attempt,
          ...(supersededWhy ? { supersededWhy } : {}),
          // No retry starts a POST this close to the limit: by the limit, no request of this attempt is still being sent.
          ...(unansweredAfterMs !== undefined ? { retriesNotAfter: new Date(Date.now() + unansweredAfterMs - SUBMISSION_DEADLINE_MARGIN_MS).toISOString() } : {}),
        }
      : {};
    const submitted = await submitter.submitPayoutToProvider({ payoutId, amount, record: saga.record('SUBMITTED'), ...saga.attemptRef(), ...attempt });
    saga.enter('SUBMITTED');
    return { submitted };
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    const type = err.cause instanceof ApplicationFailure ? err.cause.type : undefined;
    if (!(err.cause instanceof ApplicationFailure) && !(unansweredAfterMs !== undefined && err.cause instanceof TimeoutFailure)) throw err;
    // A destination that cannot be read (missing, or its encrypted row does not authenticate) is never sent, anywhere.
    const unreadable = type === 'DestinationUndecryptable' || type === 'DestinationMissing';
    // With a time limit, whatever ended the retries (the limit itself, the last 5xx or network error) leaves it unanswered.
    const unanswered = !unreadable && unansweredAfterMs !== undefined && type !== 'ProviderRejected' && type !== 'AttemptConflict';
    if (!unreadable && !unanswered && type !== 'ProviderRejected') throw err;
    refusal = unreadable ? 'destination_unreadable' : unanswered ? 'provider_unavailable' : String(((err.cause as ApplicationFailure).details?.[0] as { code?: string } | undefined)?.code ?? 'provider_rejected');
    why = unanswered ? `${provider} left the submission unanswered for ${Math.round(unansweredAfterMs! / 1000)}s` : `${provider} refused it (${refusal})`;
    final = unreadable;
    // A request the provider received just before the limit may still be committing there: let it, before asking.
    if (unanswered) await sleep(SUBMISSION_IN_FLIGHT_MS);
  }
  // A refusal of a retried submission can hide an accepted first attempt: ask the provider, until it answers.
  const claimed = () => routed && saga.claim !== undefined && saga.claim.providerStatus !== 'failed';
  const askingSince = Date.now();
  let known = await ask.record(false);
  for (let delay = timings.pollInitialMs; known === 'unknown' || (known === 'none' && claimed()); delay = Math.min(delay * 2, timings.pollMaxMs)) {
    await sleep(delay);
    if (routed && !saga.stuck && Date.now() - askingSince >= timings.stuckAfterMs) await stick(saga, `${why}; it cannot say yet whether it has the payout`);
    known = await ask.record(false);
  }
  if (routed && saga.stuck) saga.markStuck(false);
  if (known === 'none' || known.status === 'failed') return { refusal, why: `${why} and has ${known === 'none' ? 'no such payout' : 'failed it'}`, final };
  // The provider has it after all: wait for its outcome like any submitted payout.
  await moveTo(saga, 'SUBMITTED');
  return { submitted: known };
}

/** A later run of a saga that was awaiting its provider (continue-as-new): pick up where the last one stopped. */
function resumeWaiting(saga: PayoutState, resume: PayoutResume): void {
  saga.submissionStarted = true;
  saga.details.providerPayoutId = resume.providerPayoutId;
  saga.decision = { outcome: 'held', status: 'HELD', holdTransferId: saga.holdTransferId };
  saga.resumeFrom(resume, 'SUBMITTED');
}

/** Step 5's view of the saga, for the shared provider wait: a new run resumes with the hold and the provider's id. */
function waiting(saga: PayoutState, ask: ProviderChecks): WaitingSaga {
  return waitingSaga(saga, ask, (staffNote) => stick(saga, staffNote), saga.input.resume?.runs, async ({ timeline, ...position }) => {
    const { holdTransferId, details } = saga;
    const resume: PayoutResume = { timeline, holdTransferId, ...(details.providerPayoutId ? { providerPayoutId: details.providerPayoutId } : {}), ...(saga.attempt ? { attempt: saga.attempt } : {}), ...position };
    await continueAsNew<typeof payoutSaga>({ ...saga.input, resume });
  });
}

/** Marks the saga stuck for staff (search attribute and read model), with why. */
async function stick(saga: PayoutState, staffNote: string, note: 'awaiting_provider' | 'awaiting_review' = 'awaiting_provider'): Promise<void> {
  saga.markStuck(true);
  await moveTo(saga, saga.status, note, staffNote);
}

type ProviderChecks = ReturnType<typeof providerChecks>;

/** Asking the provider for its record of the payout, and what its record means for the saga. */
function providerChecks(saga: PayoutState) {
  const { payoutId, pollTaskQueue, timings } = saga.input;
  // Scheduled polls of a silent provider are background work, on the background task queue.
  const scheduledPolls = pollTaskQueue ? proxyActivities<Activities>({ ...PROVIDER_POLL_OPTIONS, taskQueue: pollTaskQueue }) : lookups;
  return providerRecordChecks<PayoutStatus, ProviderPayoutEvent, ProviderPayout>(saga, {
    sagaKind: 'payout',
    reference: payoutId,
    terms: saga.terms,
    fetch: (scheduled) => (scheduled ? scheduledPolls : lookups).fetchProviderPayout({ payoutId, ...saga.attemptRef() }),
    observedOf: (seen) => ({ status: seen.status, providerPayoutId: seen.providerPayoutId, amount: seen.amount ?? null, destination: seen.destination ?? null }),
    eventOf: (seen, claimed) => ({ ...eventFromRecord(seen.status, claimed), providerPayoutId: seen.providerPayoutId, failureCode: seen.failureCode, returnReason: seen.returnReason }),
    adopt: (seen) => {
      saga.details.providerPayoutId = seen.providerPayoutId;
    },
    stick: (staffNote) => stick(saga, staffNote),
    pollMaxMs: timings.pollMaxMs,
  });
}

/** Staff settle or fail a payout its provider leaves undecided; failing it first asks the provider. */
async function resolveByStaff(saga: PayoutState, ask: ProviderChecks, request: StaffResolution): Promise<PayoutView> {
  saga.resolving = true;
  if (request.outcome === 'fail') {
    // A payout the provider has paid is settled, not failed.
    const seen = await ask.record(false);
    if (seen === 'unknown') {
      saga.resolving = false;
      throw ApplicationFailure.nonRetryable('The provider cannot be asked right now; a payout it may have paid is not failed blind. Retry shortly.', PAYOUT_NOT_RESOLVABLE);
    }
    if (seen !== 'none' && (seen.status === 'settled' || seen.status === 'returned') && ask.agrees(seen)) {
      saga.learn(ask.eventOf(seen));
      throw ApplicationFailure.nonRetryable(`The provider reports this payout ${seen.status}; it is settled, not failed`, PAYOUT_NOT_RESOLVABLE);
    }
    // The provider may have answered while we asked: news that arrived meanwhile wins over staff.
    if (!saga.awaitingProvider()) throw ApplicationFailure.nonRetryable(`${saga.describe()}; it was decided while staff resolved it`, PAYOUT_NOT_RESOLVABLE);
  }
  saga.applyResolution(request);
  await condition(() => saga.status !== 'SUBMITTED');
  return saga.view();
}
