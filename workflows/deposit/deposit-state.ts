/**
 * What a deposit saga knows, and what its handlers do with it: the saga's story (deposit.saga.ts) reads and
 * moves this state; the query, the signal and the update are one-line calls into it.
 */
import type { RecordDepositStateInput } from '../../activities/deposits';
import type { DepositInput, DepositStatus, DepositTimelineEntry, DepositView, IntentDecision, ProviderDepositEvent } from '../../contracts/deposit';
import { SagaState } from '../saga-state';

/** The first final outcome wins; later ones are stale. */
const PROVIDER_RANK = { pending: 0, succeeded: 1, failed: 1 } as const;

export class DepositState extends SagaState<DepositStatus, IntentDecision, ProviderDepositEvent> {
  status: DepositStatus = 'REQUESTED';
  readonly timeline: DepositTimelineEntry[];
  readonly details: Pick<DepositView, 'checkoutUrl' | 'providerDepositId' | 'failureCode' | 'creditTransferId'> = {};

  constructor(readonly input: DepositInput) {
    super(input.fingerprint, PROVIDER_RANK);
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
}
