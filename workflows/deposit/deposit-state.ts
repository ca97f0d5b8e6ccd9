/**
 * What a deposit saga knows, and what its handlers do with it: the saga's story (deposit.saga.ts) reads and
 * moves this state; the query, the signal and the update are one-line calls into it.
 */
import { ApplicationFailure, condition, upsertSearchAttributes } from '@temporalio/workflow';
import type { RecordDepositStateInput } from '../../activities/deposits';
import { IDEMPOTENCY_MISMATCH } from '../../contracts/common';
import type { DepositInput, DepositStatus, DepositTimelineEntry, DepositView, IntentDecision, ProviderDepositEvent } from '../../contracts/deposit';
import { SA } from '../../contracts/search-attributes';
import { isNews } from '../provider-wait';

/** The first final outcome wins; later ones are stale. */
const PROVIDER_RANK = { pending: 0, succeeded: 1, failed: 1 } as const;

export class DepositState {
  status: DepositStatus = 'REQUESTED';
  readonly timeline: DepositTimelineEntry[];
  decision?: IntentDecision;
  providerView?: ProviderDepositEvent;
  /** A webhook not yet confirmed by the provider's own record: a claim, never acted on by itself. */
  claim?: ProviderDepositEvent;
  stuck = false;
  readonly details: Pick<DepositView, 'checkoutUrl' | 'providerDepositId' | 'failureCode' | 'creditTransferId'> = {};

  constructor(readonly input: DepositInput) {
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

  /** Enters a state. `note` is a stable code a player may see; `staffNote` is free text for staff views only. */
  enter(next: DepositStatus, note?: string, staffNote?: string): void {
    this.status = next;
    this.timeline.push({ at: new Date().toISOString(), status: next, ...(note ? { note } : {}), ...(staffNote ? { staffNote } : {}) });
    upsertSearchAttributes([{ key: SA.Status, value: next }]);
  }

  markStuck(stuck: boolean): void {
    this.stuck = stuck;
    upsertSearchAttributes([{ key: SA.Stuck, value: stuck }]);
  }

  // ---- handlers ----

  checkFingerprint(fingerprint: string): void {
    if (fingerprint !== this.input.fingerprint) throw ApplicationFailure.nonRetryable('Idempotency-Key reused with a different request', IDEMPOTENCY_MISMATCH);
  }

  async decisionWhenKnown(): Promise<IntentDecision> {
    await condition(() => this.decision !== undefined);
    return this.decision!;
  }

  /** A callback may arrive before the intent step has returned: it is kept and checked after. */
  receive(event: ProviderDepositEvent): void {
    if (event.source === 'webhook') this.claim = event;
    else this.learn(event);
  }

  learn(event: ProviderDepositEvent): void {
    if (isNews(PROVIDER_RANK, event, this.providerView, 'pending')) this.providerView = event;
  }
}
