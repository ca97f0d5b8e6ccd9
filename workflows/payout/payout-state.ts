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
  PAYOUT_NOT_REVIEWABLE,
  type AuthorizationDecision,
  type CancelRequest,
  type MaskedDestination,
  type PayoutAttempt,
  type PayoutInput,
  type PayoutStateRecord,
  type PayoutStatus,
  type PayoutView,
  type ProviderPayoutEvent,
  type ReviewDecision,
  type ReviewReason,
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
  /** The saga has returned its final view (a query on a closed saga replays it to here). */
  ended = false;
  resolution?: StaffResolution;
  resolving = false;
  holdTransferId: number;
  /** Why this payout waits for staff review, once held (undefined: it is not reviewed). */
  reviewReason?: ReviewReason;
  /** The review, once staff gave it. */
  review?: ReviewDecision;
  /** The submission the saga is on (routed payouts); absent before the first, and for sagas started before routing. */
  attempt?: PayoutAttempt;
  readonly details: Pick<PayoutView, 'providerPayoutId' | 'failureCode' | 'returnReason' | 'declineCode'> = {};

  constructor(readonly input: PayoutInput) {
    super(input.fingerprint, PROVIDER_RANK);
    this.destination = maskDestination(input.destination);
    this.terms = { amount: input.amount, destination: this.destination };
    this.timeline = [{ at: input.requestedAt, status: 'REQUESTED' }];
    this.holdTransferId = input.resume?.holdTransferId ?? 0;
    if (input.resume?.attempt) this.attempt = input.resume.attempt;
  }

  /** Where provider calls about this payout go: the current attempt (else the activity reads where the payout is). */
  attemptRef(): { provider?: string; reference?: string } {
    return this.attempt ? { provider: this.attempt.provider, reference: this.attempt.reference } : {};
  }

  /** The submission's entry names its attempt: the timeline shows where each submission went. */
  override enter(next: PayoutStatus, note?: string, staffNote?: string): void {
    const submission = next === 'SUBMITTED' && this.status !== 'SUBMITTED' && this.attempt;
    super.enter(next, note, staffNote, submission ? { provider: this.attempt!.provider, attempt: this.attempt!.attempt } : undefined);
  }

  /** A webhook about an earlier attempt (another provider, or reference) is not news of this one. */
  override receive(event: ProviderPayoutEvent): void {
    const other = this.attempt && event.source === 'webhook' && ((event.provider !== undefined && event.provider !== this.attempt.provider) || (event.reference !== undefined && event.reference !== this.attempt.reference));
    if (!other) super.receive(event);
  }

  view(): PayoutView {
    const { input } = this;
    return {
      payoutId: input.payoutId,
      accountId: input.accountId,
      amount: input.amount,
      destination: this.destination,
      provider: this.attempt?.provider ?? input.provider,
      status: this.status,
      ...this.details,
      cancellable: this.cancellable(),
      stuck: this.stuck,
      requestedAt: input.requestedAt,
      timeline: [...this.timeline],
      ...(this.reviewReason ? { review: { reason: this.reviewReason, dualApproval: input.review?.dualApproval ?? false } } : {}),
    };
  }

  cancellable(): boolean {
    return !this.submissionStarted && (this.status === 'REQUESTED' || this.status === 'AUTHORIZED' || this.status === 'HELD' || this.status === 'PENDING_REVIEW');
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

  /** Once, in PENDING_REVIEW, with a reason; under dual approval only with a second staff member's approval. */
  checkReviewable(review: ReviewDecision): void {
    if (this.status !== 'PENDING_REVIEW' || this.review || this.cancelRequest) throw ApplicationFailure.nonRetryable(`Payout is ${this.status}; only a payout pending review can be reviewed`, PAYOUT_NOT_REVIEWABLE);
    if (!review.reason.trim()) throw ApplicationFailure.nonRetryable('a reason is required', PAYOUT_NOT_REVIEWABLE);
    if (this.input.review?.dualApproval && (!review.approvedBy || review.approvedBy === review.reviewer)) {
      throw ApplicationFailure.nonRetryable('this payout needs the approval of a second staff member', PAYOUT_NOT_REVIEWABLE);
    }
  }

  async applyReview(review: ReviewDecision): Promise<PayoutView> {
    this.review = review;
    await condition(() => this.status !== 'PENDING_REVIEW');
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
