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
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS, PROVIDER_POLL_OPTIONS, historyIsLong, SA } from '../shared';
import { IDEMPOTENCY_MISMATCH } from '../payout/definitions';
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
} from './definitions';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
const provider = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);
const poller = proxyActivities<Activities>(PROVIDER_POLL_OPTIONS);


/** Provider states in the order they can happen; the first final outcome wins, later ones are stale. */
const PROVIDER_RANK = { pending: 0, succeeded: 1, failed: 1 } as const;

/**
 * A player's deposit: create the provider's payment intent → await the provider (webhook signal, or our
 * status polls with backoff; never assumed failed) → credit the player once from the provider's clearing
 * account. Nothing moves before the provider confirms, so a failure has nothing to compensate.
 */
export async function depositWorkflow(input: DepositInput): Promise<DepositView> {
  const { depositId, timings } = input;
  let status: DepositStatus = 'REQUESTED';
  const timeline: DepositTimelineEntry[] = [{ at: input.requestedAt, status }];
  let decision: IntentDecision | undefined;
  let providerView: ProviderDepositEvent | undefined;
  let stuck = false;
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
  setHandler(depositEventSignal, learn);

  upsertSearchAttributes([
    { key: SA.AccountId, value: input.accountId },
    { key: SA.Provider, value: input.provider },
    { key: SA.Currency, value: input.amount.currency },
    { key: SA.AmountMinor, value: input.amount.minor_units },
    { key: SA.PayoutStatus, value: status },
    { key: SA.PayoutStuck, value: false },
  ]);

  async function record(): Promise<void> {
    await steps.recordDepositState({
      depositId,
      accountId: input.accountId,
      amountMinor: input.amount.minor_units,
      currency: input.amount.currency,
      provider: input.provider,
      requestedAt: input.requestedAt,
      version: timeline.length,
      status,
      ...details,
      stuck,
    });
  }

  async function moveTo(next: DepositStatus, note?: string): Promise<void> {
    status = next;
    timeline.push({ at: new Date().toISOString(), status: next, ...(note ? { note } : {}) });
    upsertSearchAttributes([{ key: SA.PayoutStatus, value: next }]);
    await record();
  }

  async function finish(): Promise<DepositView> {
    await condition(allHandlersFinished);
    return view();
  }

  await record();

  if (input.resume) {
    // A later run of a deposit that was awaiting its provider: pick up where the previous run stopped.
    timeline.splice(0, timeline.length, ...input.resume.timeline);
    status = 'PENDING';
    stuck = input.resume.stuck;
    Object.assign(details, { checkoutUrl: input.resume.checkoutUrl, providerDepositId: input.resume.providerDepositId });
    decision = { outcome: 'created', status: 'PENDING', checkoutUrl: input.resume.checkoutUrl, providerDepositId: input.resume.providerDepositId };
    upsertSearchAttributes([
      { key: SA.PayoutStatus, value: status },
      { key: SA.PayoutStuck, value: stuck },
    ]);
  } else {
    // 0. Limits (per deposit, per day, balance ceiling), under the account's lock: a refused deposit never reaches the provider.
    if (patched('deposit-limits')) {
      const authorization = await steps.authorizeDeposit({ depositId, accountId: input.accountId, amountMinor: input.amount.minor_units, currency: input.amount.currency, requestedAt: input.requestedAt });
      if (!authorization.approved) {
        details.failureCode = authorization.code;
        decision = { outcome: 'refused', status: 'FAILED', code: authorization.code, detail: authorization.detail };
        await moveTo('FAILED', authorization.code);
        return finish();
      }
    }

    // 1. Payment intent at the provider (idempotent by deposit id): the player pays at its checkout_url.
    let created: { checkoutUrl: string; providerDepositId: string };
    try {
      const intent = await provider.createDepositIntent({ depositId, amount: input.amount });
      created = { checkoutUrl: intent.checkoutUrl, providerDepositId: intent.providerDepositId };
      Object.assign(details, created);
      // A retried intent may find the deposit already decided at the provider.
      if (intent.status !== 'pending') learn({ eventId: `intent:${depositId}`, source: 'poll', providerStatus: intent.status, failureCode: intent.failureCode, occurredAt: new Date().toISOString() });
    } catch (err) {
      if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === 'ProviderRejected') {
        details.failureCode = String((err.cause.details?.[0] as { code?: string } | undefined)?.code ?? 'provider_rejected');
        decision = { outcome: 'refused', status: 'FAILED', code: details.failureCode, detail: err.cause.message };
        await moveTo('FAILED', details.failureCode);
        return finish();
      }
      throw err;
    }
    await moveTo('PENDING');
    decision = { outcome: 'created', status: 'PENDING', ...created };
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
  const credit = await steps.creditDeposit({
    idempotencyKey: `${depositId}:credit`,
    depositId,
    accountId: input.accountId,
    amountMinor: input.amount.minor_units,
    currency: input.amount.currency,
  });
  details.creditTransferId = credit.transferId;
  await moveTo('CREDITED', `confirmed by ${outcome.source}`);
  return finish();

  async function awaitProviderOutcome(): Promise<void> {
    const waitingSince = input.resume ? Date.parse(input.resume.waitingSince) : Date.now();
    let pollDelay = input.resume?.pollDelayMs ?? timings.pollInitialMs;
    const decided = () => providerView !== undefined && providerView.providerStatus !== 'pending';
    while (!decided()) {
      const untilStuck = waitingSince + timings.stuckAfterMs - Date.now();
      const wait = stuck ? pollDelay : Math.max(1, Math.min(pollDelay, untilStuck));
      if (await condition(decided, wait)) break;
      if (!stuck && Date.now() - waitingSince >= timings.stuckAfterMs) {
        stuck = true;
        upsertSearchAttributes([{ key: SA.PayoutStuck, value: true }]);
        await moveTo(status, `no provider outcome after ${Math.round(timings.stuckAfterMs / 1000)}s`);
      }
      if (wait < pollDelay) continue; // woke up only to mark the saga stuck; poll on schedule
      try {
        const seen = await poller.fetchProviderDeposit({ depositId });
        if (seen && seen.status !== 'pending') {
          learn({ eventId: `poll:${Date.now()}`, source: 'poll', providerStatus: seen.status, providerDepositId: seen.providerDepositId, failureCode: seen.failureCode, occurredAt: new Date().toISOString() });
        }
      } catch {
        // The aggregator is unreachable: keep waiting, poll again later.
      }
      pollDelay = Math.min(pollDelay * 2, timings.pollMaxMs);
      if (!decided() && historyIsLong(timings.continueAsNewAfterEvents) && patched('continue-as-new-while-waiting')) await continueWaitingInNewRun(waitingSince, pollDelay);
    }
    if (stuck) {
      stuck = false;
      upsertSearchAttributes([{ key: SA.PayoutStuck, value: false }]);
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
