import { ActivityFailure, ApplicationFailure, allHandlersFinished, condition, continueAsNew, proxyActivities, proxyLocalActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { ProviderDeposit } from '../../activities/deposits';
import { depositEventSignal, depositStatusQuery, intentUpdate, type DepositInput, type DepositResume, type DepositStatus, type DepositView, type ProviderDepositEvent } from '../../contracts/deposit';
import { SA, startSearchAttributes } from '../../contracts/search-attributes';
import { awaitProviderOutcome, eventFromRecord, providerRecordChecks, waitingSaga, type WaitingSaga } from '../provider-wait';
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS, PROVIDER_LOOKUP_OPTIONS, PROVIDER_POLL_OPTIONS } from '../shared';
import { DepositState } from './deposit-state';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
const provider = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);
const lookups = proxyLocalActivities<Activities>(PROVIDER_LOOKUP_OPTIONS);

/**
 * A player's deposit: limits → the provider's payment intent → await the provider → credit the player once
 * from the provider's clearing account. Nothing moves before the provider's record confirms the payment, so
 * a failure has nothing to undo.
 */
export async function depositSaga(input: DepositInput): Promise<DepositView> {
  const saga = new DepositState(input);
  const ask = providerChecks(saga);
  setHandler(depositStatusQuery, () => saga.view());
  setHandler(intentUpdate, () => saga.decisionWhenKnown(), { validator: (fingerprint) => saga.checkFingerprint(fingerprint) });
  setHandler(depositEventSignal, (event) => saga.receive(event));
  // Set by the API when it starts the saga; a saga started another way adds them itself.
  if (workflowInfo().typedSearchAttributes.get(SA.AccountId) === undefined) upsertSearchAttributes(startSearchAttributes(input));

  if (input.resume) {
    resumeWaiting(saga, input.resume);
  } else {
    // 1. Limits (per deposit, per day, balance ceiling), under the account's lock, writing the REQUESTED row:
    //    a refused deposit never reaches the provider.
    const admission = await steps.admitDeposit({ depositId: input.depositId, accountId: input.accountId, amountMinor: input.amount.minor_units, currency: input.amount.currency, requestedAt: input.requestedAt, record: saga.record() });
    if (!admission.approved) return refuse(saga, admission.code, admission.detail, false);

    // 2. The payment intent at the provider (idempotent by deposit id): the player pays at its checkout_url.
    let intent: ProviderDeposit;
    try {
      intent = await provider.createDepositIntent({ depositId: input.depositId, amount: input.amount, record: saga.record('PENDING') });
    } catch (err) {
      if (!(err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === 'ProviderRejected')) throw err;
      return refuse(saga, String((err.cause.details?.[0] as { code?: string } | undefined)?.code ?? 'provider_rejected'), err.cause.message, true);
    }
    const created = { checkoutUrl: intent.checkoutUrl, providerDepositId: intent.providerDepositId };
    Object.assign(saga.details, created);
    saga.enter('PENDING');
    saga.decision = { outcome: 'created', status: 'PENDING', ...created };
    // The intent must be for the amount asked; a retried intent may also find the deposit already decided.
    await ask.judge(intent);
  }

  // 3. Await the provider: its callback (checked against its record), or our polls. Never assumed failed.
  await awaitProviderOutcome(waiting(saga, ask), input.timings, input.resume);
  const outcome = saga.providerView!;
  saga.details.providerDepositId ??= outcome.providerDepositId;

  // 4a. Failed: no money moved, nothing to undo.
  if (outcome.providerStatus === 'failed') {
    saga.details.failureCode = outcome.failureCode ?? 'provider_failed';
    await moveTo(saga, 'FAILED', saga.details.failureCode);
    return finish(saga);
  }

  // 4b. Succeeded: credit the player once (`<deposit id>:credit` is unique forever in the ledger).
  await credit(saga);
  saga.enter('CREDITED', `confirmed_by_${outcome.source}`);
  return finish(saga);
}

async function finish(saga: DepositState): Promise<DepositView> {
  await condition(allHandlersFinished);
  return saga.view();
}

/** Enters a state and mirrors it into the read model. */
async function moveTo(saga: DepositState, next: DepositStatus, note?: string, staffNote?: string): Promise<void> {
  saga.enter(next, note, staffNote);
  await steps.recordDepositState(saga.record());
}

/** Refused by the limits (whose step wrote the row) or by the provider: FAILED, the refusal the decision. */
async function refuse(saga: DepositState, code: string, detail: string, record: boolean): Promise<DepositView> {
  saga.details.failureCode = code;
  saga.decision = { outcome: 'refused', status: 'FAILED', code, detail };
  if (record) await moveTo(saga, 'FAILED', code);
  else saga.enter('FAILED', code);
  return finish(saga);
}

/** The credit (it writes CREDITED itself). A ledger that refuses it fails the saga, visibly: stuck for staff. */
async function credit(saga: DepositState): Promise<void> {
  const { input } = saga;
  try {
    const credited = await steps.creditDeposit({
      idempotencyKey: `${input.depositId}:credit`,
      depositId: input.depositId,
      accountId: input.accountId,
      amountMinor: input.amount.minor_units,
      currency: input.amount.currency,
      record: saga.record('CREDITED'),
    });
    saga.details.creditTransferId = credited.transferId;
  } catch (err) {
    // The provider has the player's money and the ledger refused the credit: never shown as still pending.
    saga.markStuck(true);
    await moveTo(saga, saga.status, 'credit_refused', `the ledger refused the credit: ${err instanceof ActivityFailure && err.cause ? err.cause.message : String(err)}`);
    throw err;
  }
}

/** A later run of a deposit that was awaiting its provider (continue-as-new): pick up where the last one stopped. */
function resumeWaiting(saga: DepositState, resume: DepositResume): void {
  Object.assign(saga.details, { checkoutUrl: resume.checkoutUrl, providerDepositId: resume.providerDepositId });
  saga.decision = { outcome: 'created', status: 'PENDING', checkoutUrl: resume.checkoutUrl, providerDepositId: resume.providerDepositId };
  saga.resumeFrom(resume, 'PENDING');
}

/** Step 3's view of the saga, for the shared provider wait: a new run resumes with the provider's intent. */
function waiting(saga: DepositState, ask: ProviderChecks): WaitingSaga {
  return waitingSaga(saga, ask, (staffNote) => stick(saga, staffNote), saga.input.resume?.runs, async ({ timeline, ...position }) => {
    const resume: DepositResume = { timeline, checkoutUrl: saga.details.checkoutUrl!, providerDepositId: saga.details.providerDepositId!, ...position };
    await continueAsNew<typeof depositSaga>({ ...saga.input, resume });
  });
}

async function stick(saga: DepositState, staffNote: string): Promise<void> {
  saga.markStuck(true);
  await moveTo(saga, saga.status, 'awaiting_provider', staffNote);
}

type ProviderChecks = ReturnType<typeof providerChecks>;

/** Asking the provider for its record of the deposit, and what its record means for the saga. */
function providerChecks(saga: DepositState) {
  const { depositId, pollTaskQueue, timings, amount } = saga.input;
  // Scheduled polls of a silent provider are background work, on the background task queue.
  const scheduledPolls = pollTaskQueue ? proxyActivities<Activities>({ ...PROVIDER_POLL_OPTIONS, taskQueue: pollTaskQueue }) : lookups;
  return providerRecordChecks<DepositStatus, ProviderDepositEvent, ProviderDeposit>(saga, {
    sagaKind: 'deposit',
    reference: depositId,
    terms: { amount },
    fetch: (scheduled) => (scheduled ? scheduledPolls : lookups).fetchProviderDeposit({ depositId }),
    observedOf: (seen) => ({ status: seen.status, providerDepositId: seen.providerDepositId, amount: seen.amount ?? null }),
    eventOf: (seen, claimed) => ({ ...eventFromRecord(seen.status, claimed), providerDepositId: seen.providerDepositId, failureCode: seen.failureCode }),
    stick: (staffNote) => stick(saga, staffNote),
    pollMaxMs: timings.pollMaxMs,
  });
}
