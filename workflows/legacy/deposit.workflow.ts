/**
 * FROZEN. The deposit saga as it ran before depositSaga (workflows/deposit/deposit.saga.ts).
 * Every saga started since runs as that type; this code only finishes the deposits started before it, and
 * replays their recorded histories in CI (`*.v1.json` … `*.v4.json`). Its patch branches are the record of
 * how those sagas evolved: change nothing here. Remove it once no execution of its type is open
 * (`WorkflowType = 'depositWorkflow' AND ExecutionStatus = 'Running'` finds none) and its histories are retired.
 */
import {
  ActivityFailure,
  ApplicationFailure,
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
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS, PROVIDER_LOOKUP_OPTIONS, PROVIDER_POLL_OPTIONS, historyIsLong } from '../shared';
import { SA, startSearchAttributes } from '../../contracts/search-attributes';
import { IDEMPOTENCY_MISMATCH } from '../../contracts/common';
import { differingTerms, unconfirmedClaim, type ProviderIncident } from '../../contracts/provider-records';
import type { ProviderDeposit, RecordDepositStateInput } from '../../activities/deposits';
import {
  depositEventSignal,
  depositStatusQuery,
  intentUpdate,
  type DepositInput,
  type DepositResume,
  type DepositStatus,
  type DepositTimelineEntry,
  type DepositView,
  type IntentDecision,
  type ProviderDepositEvent,
} from '../../contracts/deposit';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
const provider = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);
const poller = proxyActivities<Activities>(PROVIDER_POLL_OPTIONS);
const lookups = proxyLocalActivities<Activities>(PROVIDER_LOOKUP_OPTIONS);


/** Provider states in the order they can happen; the first final outcome wins, later ones are stale. */
const PROVIDER_RANK = { pending: 0, succeeded: 1, failed: 1 } as const;

/** First re-ask of a provider that could not be asked to confirm a webhook's claim; doubles up to pollMaxMs. */
const CLAIM_RECHECK_MS = 1_000;

/**
 * A player's deposit: create the provider's payment intent → await the provider (webhook signal, or our
 * status polls with backoff; never assumed failed) → credit the player once from the provider's clearing
 * account. Nothing moves before the provider confirms, so a failure has nothing to compensate.
 */
export async function depositWorkflow(input: DepositInput): Promise<DepositView> {
  // Patch decisions are taken here, in the first activation, before any local activity result: a
  // patched() call right after a local activity can run one workflow task earlier on replay than it did
  // live, and answer false there (see the payout saga). Older sagas decide where they always did.
  const patchedAtStart = patched('patch-decisions-at-start');
  const patchedSince = (patchId: string) => patchedAtStart || patched(patchId);
  /** Fewer round trips (as in the payout saga): the REQUESTED row and the limits in one local step, the intent
   *  and the credit mirroring the state they lead to, the provider's record read locally, search attributes at start. */
  const leanSteps = patched('lean-saga-steps');
  const { depositId, timings } = input;
  const scheduledPolls = input.pollTaskQueue ? proxyActivities<Activities>({ ...PROVIDER_POLL_OPTIONS, taskQueue: input.pollTaskQueue }) : undefined;
  let status: DepositStatus = 'REQUESTED';
  const timeline: DepositTimelineEntry[] = [{ at: input.requestedAt, status }];
  let decision: IntentDecision | undefined;
  let providerView: ProviderDepositEvent | undefined;
  let stuck = false;
  /** A webhook not yet confirmed by the provider's own record: a claim, never acted on by itself. */
  let claim: ProviderDepositEvent | undefined;
  const details: Pick<DepositView, 'checkoutUrl' | 'providerDepositId' | 'failureCode' | 'creditTransferId'> = {};

  const view = (): DepositView => ({
    depositId,
    accountId: input.accountId,
    amount: input.amount,
    provider: input.provider,
    status,
    ...details,
    stuck,
    requestedAt: input.requestedAt,
    timeline: [...timeline],
  });

  const learn = (event: ProviderDepositEvent) => {
    if (PROVIDER_RANK[event.providerStatus] > PROVIDER_RANK[providerView?.providerStatus ?? 'pending']) providerView = event;
  };

  setHandler(depositStatusQuery, view);
  setHandler(
    intentUpdate,
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
  // A callback may arrive before the intent activity has returned: it is kept and acted on after.
  // A webhook is a claim: the saga asks the provider, and acts on its record (see checkProvider).
  setHandler(depositEventSignal, (event) => {
    if (event.source === 'webhook' && patchedSince('webhooks-confirmed-with-provider')) claim = event;
    else learn(event);
  });

  if (!leanSteps || workflowInfo().typedSearchAttributes.get(SA.AccountId) === undefined) upsertSearchAttributes(startSearchAttributes(input));

  /** The read-model row of the current state (`version` its place in the timeline). */
  const stateRecord = (version = timeline.length, current: DepositStatus = status): RecordDepositStateInput => ({
    depositId,
    accountId: input.accountId,
    amountMinor: input.amount.minor_units,
    currency: input.amount.currency,
    provider: input.provider,
    requestedAt: input.requestedAt,
    version,
    status: current,
    ...details,
    stuck,
  });
  /** The row of state `next`, once entered: for a step that mirrors the state it leads to. */
  const nextRecord = (next: DepositStatus) => stateRecord(timeline.length + 1, next);

  async function record(): Promise<void> {
    await steps.recordDepositState(stateRecord());
  }

  /** Enters a state in memory. `note` is a stable code a player may see; `staffNote` is free text for staff views only. */
  function enter(next: DepositStatus, note?: string, staffNote?: string): void {
    status = next;
    timeline.push({ at: new Date().toISOString(), status: next, ...(note ? { note } : {}), ...(staffNote ? { staffNote } : {}) });
    upsertSearchAttributes([{ key: SA.Status, value: next }]);
  }

  /** Enters a state and mirrors it into the read model. */
  async function moveTo(next: DepositStatus, note?: string, staffNote?: string): Promise<void> {
    enter(next, note, staffNote);
    await record();
  }

  async function finish(): Promise<DepositView> {
    await condition(allHandlersFinished);
    return view();
  }

  if (!leanSteps) await record();

  if (input.resume) {
    // A later run of a deposit that was awaiting its provider: pick up where the previous run stopped.
    timeline.splice(0, timeline.length, ...input.resume.timeline);
    status = 'PENDING';
    stuck = input.resume.stuck;
    Object.assign(details, { checkoutUrl: input.resume.checkoutUrl, providerDepositId: input.resume.providerDepositId });
    decision = { outcome: 'created', status: 'PENDING', checkoutUrl: input.resume.checkoutUrl, providerDepositId: input.resume.providerDepositId };
    upsertSearchAttributes([
      { key: SA.Status, value: status },
      { key: SA.Stuck, value: stuck },
    ]);
  } else {
    // 0. Limits (per deposit, per day, balance ceiling), under the account's lock: a refused deposit never reaches the provider.
    if (leanSteps) {
      const authorization = await steps.admitDeposit({ depositId, accountId: input.accountId, amountMinor: input.amount.minor_units, currency: input.amount.currency, requestedAt: input.requestedAt, record: stateRecord() });
      if (!authorization.approved) {
        details.failureCode = authorization.code;
        decision = { outcome: 'refused', status: 'FAILED', code: authorization.code, detail: authorization.detail };
        enter('FAILED', authorization.code);
        return finish();
      }
    } else if (patchedSince('deposit-limits')) {
      const authorization = await steps.authorizeDeposit({ depositId, accountId: input.accountId, amountMinor: input.amount.minor_units, currency: input.amount.currency, requestedAt: input.requestedAt });
      if (!authorization.approved) {
        details.failureCode = authorization.code;
        decision = { outcome: 'refused', status: 'FAILED', code: authorization.code, detail: authorization.detail };
        await moveTo('FAILED', authorization.code);
        return finish();
      }
    }

    // 1. Payment intent at the provider (idempotent by deposit id): the player pays at its checkout_url.
    let intentRecord: ProviderDeposit | undefined;
    let created: { checkoutUrl: string; providerDepositId: string };
    try {
      const intent = await provider.createDepositIntent({ depositId, amount: input.amount, ...(leanSteps ? { record: nextRecord('PENDING') } : {}) });
      created = { checkoutUrl: intent.checkoutUrl, providerDepositId: intent.providerDepositId };
      Object.assign(details, created);
      // A retried intent may find the deposit already decided at the provider (checked below once PENDING).
      if (patchedSince('provider-records-verified')) intentRecord = intent;
      else if (intent.status !== 'pending') learn({ eventId: `intent:${depositId}`, source: 'poll', providerStatus: intent.status, failureCode: intent.failureCode, occurredAt: new Date().toISOString() });
    } catch (err) {
      if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === 'ProviderRejected') {
        details.failureCode = String((err.cause.details?.[0] as { code?: string } | undefined)?.code ?? 'provider_rejected');
        decision = { outcome: 'refused', status: 'FAILED', code: details.failureCode, detail: err.cause.message };
        await moveTo('FAILED', details.failureCode);
        return finish();
      }
      throw err;
    }
    if (leanSteps) enter('PENDING');
    else await moveTo('PENDING');
    decision = { outcome: 'created', status: 'PENDING', ...created };
    // The intent must be for the amount we asked: another amount or currency is an incident, never a credit.
    await judge(intentRecord);
  }

  // 2. Await the provider: its callback, or our status polls with backoff.
  await awaitProviderOutcome();
  const outcome = providerView!;
  details.providerDepositId ??= outcome.providerDepositId;

  // 3a. Failed: no money moved, nothing to compensate.
  if (outcome.providerStatus === 'failed') {
    details.failureCode = outcome.failureCode ?? 'provider_failed';
    await moveTo('FAILED', details.failureCode);
    return finish();
  }

  // 3b. Succeeded: credit the player once (`<deposit id>:credit` is unique forever in the ledger).
  let credit: { transferId: number };
  try {
    credit = await steps.creditDeposit({
      idempotencyKey: `${depositId}:credit`,
      depositId,
      accountId: input.accountId,
      amountMinor: input.amount.minor_units,
      currency: input.amount.currency,
      ...(leanSteps ? { record: nextRecord('CREDITED') } : {}),
    });
  } catch (err) {
    // The provider has the player's money and the ledger refused the credit: the saga fails, and it shows
    // (stuck for staff, in the read model too), never as a deposit still pending at the provider.
    if (patchedSince('deposit-credit-refusal-shown')) {
      stuck = true;
      upsertSearchAttributes([{ key: SA.Stuck, value: true }]);
      await moveTo(status, 'credit_refused', `the ledger refused the credit: ${err instanceof ActivityFailure && err.cause ? err.cause.message : String(err)}`);
    }
    throw err;
  }
  details.creditTransferId = credit.transferId;
  if (leanSteps) enter('CREDITED', `confirmed_by_${outcome.source}`);
  else await moveTo('CREDITED', `confirmed_by_${outcome.source}`);
  return finish();

  async function awaitProviderOutcome(): Promise<void> {
    const waitingSince = input.resume ? Date.parse(input.resume.waitingSince) : Date.now();
    let pollDelay = input.resume?.pollDelayMs ?? timings.pollInitialMs;
    const decided = () => providerView !== undefined && providerView.providerStatus !== 'pending';
    while (!decided()) {
      const untilStuck = waitingSince + timings.stuckAfterMs - Date.now();
      const wait = stuck ? pollDelay : Math.max(1, Math.min(pollDelay, untilStuck));
      if (await condition(() => decided() || claim !== undefined, wait) && decided()) break;
      if (!stuck && Date.now() - waitingSince >= timings.stuckAfterMs) {
        stuck = true;
        upsertSearchAttributes([{ key: SA.Stuck, value: true }]);
        await moveTo(status, 'awaiting_provider', `no provider outcome after ${Math.round(timings.stuckAfterMs / 1000)}s`);
      }
      if (claim) {
        await checkProvider(); // a webhook's claim, checked now; the poll schedule is unchanged
        continue;
      }
      if (wait < pollDelay) continue; // woke up only to mark the saga stuck; poll on schedule
      await checkProvider(true);
      pollDelay = Math.min(pollDelay * 2, timings.pollMaxMs);
      if (!decided() && historyIsLong(timings.continueAsNewAfterEvents) && patchedSince('continue-as-new-while-waiting')) await continueWaitingInNewRun(waitingSince, pollDelay);
    }
    if (stuck) {
      stuck = false;
      upsertSearchAttributes([{ key: SA.Stuck, value: false }]);
    }
  }

  /**
   * Asks the provider for its record (a poll, or a webhook's claim to confirm) and acts on what it says.
   * A claim is re-asked, with backoff, until the provider can be asked.
   * A `scheduled` poll (no claim) is background work: it goes to the background task queue.
   */
  async function checkProvider(scheduled = false): Promise<void> {
    const claimed = claim;
    claim = undefined;
    let seen = await providerRecord(scheduled && !claimed);
    for (let delay = CLAIM_RECHECK_MS; claimed && seen === 'unknown'; delay = Math.min(delay * 2, timings.pollMaxMs)) {
      await sleep(delay);
      seen = await providerRecord();
    }
    if (seen !== 'unknown') await judge(seen, claimed);
  }

  /**
   * What the provider's record means for the saga: its status is learned only when it agrees with the
   * request (amount, currency); a webhook claim it does not bear out is written for staff.
   */
  async function judge(seen: ProviderDeposit | 'none' | undefined, claimed?: ProviderDepositEvent): Promise<void> {
    if (seen === undefined) return;
    const verify = patchedSince('provider-records-verified');
    const fields = verify && seen !== 'none' ? differingTerms({ amount: input.amount }, seen) : [];
    if (seen !== 'none' && fields.length > 0) {
      await reportIncident({ kind: 'record_mismatch', fields, observed: observedOf(seen), ...(claimed ? { eventId: claimed.eventId } : {}) });
      if (!stuck) {
        stuck = true;
        upsertSearchAttributes([{ key: SA.Stuck, value: true }]);
        await moveTo(status, 'awaiting_provider', `the provider's record differs from the deposit (${fields.join(', ')}); not acted on`);
      }
      return;
    }
    if (seen !== 'none' && seen.status !== 'pending') {
      const confirmed = claimed?.providerStatus === seen.status ? claimed : undefined;
      learn({
        eventId: confirmed?.eventId ?? `poll:${Date.now()}`,
        source: confirmed ? 'webhook' : 'poll',
        providerStatus: seen.status,
        providerDepositId: seen.providerDepositId,
        failureCode: seen.failureCode,
        occurredAt: new Date().toISOString(),
      });
    }
    const unconfirmed = claimed && unconfirmedClaim(claimed, seen === 'none' ? { status: 'none' } : observedOf(seen));
    if (unconfirmed) await reportIncident(unconfirmed);
  }

  async function reportIncident(incident: Pick<ProviderIncident, 'kind' | 'fields' | 'observed' | 'eventId'> & { claimedStatus?: string }): Promise<void> {
    const { claimedStatus, ...rest } = incident;
    await steps.recordProviderIncident({ sagaKind: 'deposit', reference: depositId, expected: { amount: input.amount, ...(claimedStatus ? { status: claimedStatus } : {}) }, ...rest });
  }

  function observedOf(seen: ProviderDeposit): Record<string, unknown> & { status: string } {
    return { status: seen.status, providerDepositId: seen.providerDepositId, amount: seen.amount ?? null };
  }

  /** The provider's record of this deposit: 'none' when it has never seen it, 'unknown' when it cannot be asked. */
  async function providerRecord(scheduled = false): Promise<ProviderDeposit | 'none' | 'unknown'> {
    try {
      const via = scheduled && scheduledPolls ? scheduledPolls : leanSteps ? lookups : poller;
      return (await via.fetchProviderDeposit({ depositId })) ?? 'none';
    } catch {
      return 'unknown'; // the aggregator is unreachable: keep waiting, ask again later
    }
  }

  async function continueWaitingInNewRun(since: number, pollDelayMs: number): Promise<never> {
    await condition(allHandlersFinished);
    const resume: DepositResume = {
      timeline: [...timeline],
      checkoutUrl: details.checkoutUrl!,
      providerDepositId: details.providerDepositId!,
      waitingSince: new Date(since).toISOString(),
      stuck,
      pollDelayMs,
      runs: (input.resume?.runs ?? 1) + 1,
    };
    return continueAsNew<typeof depositWorkflow>({ ...input, resume });
  }
}
