/**
 * What a payout saga knows, and what its handlers do with it: the saga's story (payout.saga.ts) reads and
 * moves this state; queries, signals and update validators are one-line calls into it.
 */
import { ApplicationFailure, condition } from '@temporalio/workflow';
import {
  FINAL_PAYOUT_STATUSES,
  maskDestination,
  PAYOUT_NOT_CANCELLABLE,
  PAYOUT_NOT_RESOLVABLE,
  type AuthorizationDecision,
  type CancelRequest,
  type MaskedDestination,
  type PayoutInput,
  type PayoutStateRecord,
  type PayoutStatus,
  type PayoutView,
  type ProviderPayoutEvent,
  type StaffResolution,
  type TimelineEntry,
} from '../../contracts/payout';
import type { RequestedTerms } from '../../contracts/provider-records';
import { SagaState } from '../saga-state';

const PROVIDER_RANK = { pending: 0, settled: 1, failed: 1, returned: 2 } as const;

export class PayoutState extends SagaState<PayoutStatus, AuthorizationDecision, ProviderPayoutEvent> {
  status: PayoutStatus = 'REQUESTED';
  readonly timeline: TimelineEntry[];
  readonly terms: RequestedTerms;
  readonly destination: MaskedDestination;
  cancelRequest?: CancelRequest;
  submissionStarted = false;
  resolution?: StaffResolution;
  resolving = false;
  holdTransferId: number;
  readonly details: Pick<PayoutView, 'providerPayoutId' | 'failureCode' | 'returnReason' | 'declineCode'> = {};

  constructor(readonly input: PayoutInput) {
    super(input.fingerprint, PROVIDER_RANK);
    this.destination = maskDestination(input.destination);
    this.terms = { amount: input.amount, destination: this.destination };
    this.timeline = [{ at: input.requestedAt, status: 'REQUESTED' }];
    this.holdTransferId = input.resume?.holdTransferId ?? 0;
  }

  view(): PayoutView {
    const { input } = this;
    return {
      payoutId: input.payoutId,
      accountId: input.accountId,
      amount: input.amount,
      destination: this.destination,
      provider: input.provider,
      status: this.status,
      ...this.details,
      cancellable: this.cancellable(),
      stuck: this.stuck,
      requestedAt: input.requestedAt,
      timeline: [...this.timeline],
    };
  }

  cancellable(): boolean {
    return !this.submissionStarted && (this.status === 'REQUESTED' || this.status === 'AUTHORIZED' || this.status === 'HELD');
  }

  returned(): boolean {
    return this.providerView?.providerStatus === 'returned';
  }

  /** The read-model row of the state `next`, once entered (its version is its place in the timeline). */
  record(next: PayoutStatus): PayoutStateRecord {
    return { payoutId: this.input.payoutId, version: this.timeline.length + 1, status: next, ...this.details, stuck: this.stuck };
  }

  // ---- handlers ----

  checkCancellable(): void {
    if (!this.cancellable()) throw ApplicationFailure.nonRetryable(`Payout is ${this.status}${this.submissionStarted ? ' and submitted to the provider' : ''}`, PAYOUT_NOT_CANCELLABLE);
  }

  async cancel(request: CancelRequest): Promise<PayoutView> {
    this.cancelRequest ??= request;
    await condition(() => this.status === 'CANCELLED' || this.submissionStarted || FINAL_PAYOUT_STATUSES.includes(this.status));
    return this.view();
  }

  /** Exactly once: only a saga still awaiting its provider, with no outcome known, can be resolved by staff. */
  checkResolvable(request: StaffResolution): void {
    if (!this.awaitingProvider() || this.resolving) {
      throw ApplicationFailure.nonRetryable(`${this.describe()}; only a payout awaiting its provider can be resolved`, PAYOUT_NOT_RESOLVABLE);
    }
    if (!request.reason.trim()) throw ApplicationFailure.nonRetryable('a reason is required', PAYOUT_NOT_RESOLVABLE);
  }

  awaitingProvider(): boolean {
    return this.status === 'SUBMITTED' && (!this.providerView || this.providerView.providerStatus === 'pending');
  }

  describe(): string {
    return `Payout is ${this.status}${this.providerView ? ` (provider: ${this.providerView.providerStatus})` : ''}`;
  }

  /** Staff's outcome, applied as if the provider had said it. */
  applyResolution(request: StaffResolution): void {
    this.resolution = request;
    this.claim = undefined;
    this.providerView = {
      eventId: `staff:${request.actor}`,
      source: 'staff',
      providerStatus: request.outcome === 'settle' ? 'settled' : 'failed',
      ...(request.outcome === 'fail' ? { failureCode: 'resolved_by_staff' } : {}),
      occurredAt: new Date().toISOString(),
    };
  }
}
