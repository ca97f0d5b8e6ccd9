/**
 * What a deposit saga knows, and what its handlers do with it: the saga's story (deposit.saga.ts) reads and
 * moves this state; the query, the signal and the update are one-line calls into it.
 */
import type { RecordDepositStateInput } from '../../activities/deposits';
import type { DepositInput, DepositStatus, DepositTimelineEntry, DepositView, IntentDecision, ProviderDepositEvent } from '../../contracts/deposit';
import { isNews } from '../provider-wait';
import { SagaState } from '../saga-state';

/** The first final outcome wins; later ones are stale. */
const PROVIDER_RANK = { pending: 0, succeeded: 1, failed: 1 } as const;

export class DepositState extends SagaState<DepositStatus, IntentDecision> {
  status: DepositStatus = 'REQUESTED';
  readonly timeline: DepositTimelineEntry[];
  providerView?: ProviderDepositEvent;
  /** A webhook not yet confirmed by the provider's own record: a claim, never acted on by itself. */
  claim?: ProviderDepositEvent;
  readonly details: Pick<DepositView, 'checkoutUrl' | 'providerDepositId' | 'failureCode' | 'creditTransferId'> = {};

  constructor(readonly input: DepositInput) {
    super(input.fingerprint);
    this.timeline = [{ at: input.requestedAt, status: 'REQUESTED' }];
  }

  view(): DepositView {
    const { input } = this;
    return {
      depositId: input.depositId,
      accountId: input.accountId,
      amount: input.amount,
      provider: input.provider,
      status: this.status,
      ...this.details,
      stuck: this.stuck,
      requestedAt: input.requestedAt,
      timeline: [...this.timeline],
    };
  }

  decided(): boolean {
    return this.providerView !== undefined && this.providerView.providerStatus !== 'pending';
  }

  /** The read-model row of the current state, or of `next` once entered (its version is its place in the timeline). */
  record(next?: DepositStatus): RecordDepositStateInput {
    const { input } = this;
    return {
      depositId: input.depositId,
      accountId: input.accountId,
      amountMinor: input.amount.minor_units,
      currency: input.amount.currency,
      provider: input.provider,
      requestedAt: input.requestedAt,
      version: this.timeline.length + (next ? 1 : 0),
      status: next ?? this.status,
      ...this.details,
      stuck: this.stuck,
    };
  }

  // ---- handlers ----

  /** A callback may arrive before the intent step has returned: it is kept and checked after. */
  receive(event: ProviderDepositEvent): void {
    if (event.source === 'webhook') this.claim = event;
    else this.learn(event);
  }

  learn(event: ProviderDepositEvent): void {
    if (isNews(PROVIDER_RANK, event, this.providerView, 'pending')) this.providerView = event;
  }
}
