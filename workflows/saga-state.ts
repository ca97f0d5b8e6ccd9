/**
 * What every saga's state shares: its status and timeline, the stuck mark staff filter on, the first
 * decision the API waits for (through an update whose validator checks the request's fingerprint), and
 * what it has learned from its provider (a webhook is a claim until the provider's record bears it out).
 */
import { ApplicationFailure, condition, upsertSearchAttributes } from '@temporalio/workflow';
import { IDEMPOTENCY_MISMATCH } from '../contracts/common';
import { SA } from '../contracts/search-attributes';

export interface SagaTimelineEntry<Status extends string> {
  at: string;
  status: Status;
  /** A stable code a player may see. */
  note?: string;
  /** Free text for staff only; never shown to players. */
  staffNote?: string;
  /** A payout's submission attempt: its provider and number. */
  provider?: string;
  attempt?: number;
}

/** An outcome reported by the provider (a webhook, or our poll of its record) or by staff. */
export interface ProviderEvent {
  eventId: string;
  source: 'webhook' | 'poll' | 'staff';
  providerStatus: string;
  occurredAt: string;
}

export abstract class SagaState<Status extends string, Decision, Event extends ProviderEvent> {
  abstract status: Status;
  abstract readonly timeline: SagaTimelineEntry<Status>[];
  decision?: Decision;
  stuck = false;
  /** The outcome as the provider's record (or staff) gives it: only news counts. */
  providerView?: Event;
  /** A webhook not yet confirmed by the provider's own record: a claim, never acted on by itself. */
  claim?: Event;
  /** Staff asked for a poll now rather than at the next backoff step. */
  pollRequested = false;

  constructor(
    private readonly fingerprint: string,
    /** Provider states in the order they can happen ('pending' first): an event not ahead of what is known is stale. */
    private readonly providerRank: Record<Event['providerStatus'] | 'pending', number>,
  ) {}

  /** Enters a state. `note` is a stable code a player may see; `staffNote` is free text for staff views only. */
  enter(next: Status, note?: string, staffNote?: string, attempt?: { provider: string; attempt: number }): void {
    this.status = next;
    this.timeline.push({ at: new Date().toISOString(), status: next, ...(note ? { note } : {}), ...(staffNote ? { staffNote } : {}), ...attempt });
    upsertSearchAttributes([{ key: SA.Status, value: next }]);
  }

  markStuck(stuck: boolean): void {
    this.stuck = stuck;
    upsertSearchAttributes([{ key: SA.Stuck, value: stuck }]);
  }

  /** A later run (continue-as-new) takes over the last one's timeline, state and stuck mark. */
  resumeFrom(resume: { timeline: SagaTimelineEntry<Status>[]; stuck: boolean }, status: Status): void {
    this.timeline.splice(0, this.timeline.length, ...resume.timeline);
    this.status = status;
    this.stuck = resume.stuck;
    upsertSearchAttributes([
      { key: SA.Status, value: status },
      { key: SA.Stuck, value: resume.stuck },
    ]);
  }

  /** The decision update's validator: the same key with another request is refused, changing nothing. */
  checkFingerprint(fingerprint: string): void {
    if (fingerprint !== this.fingerprint) throw ApplicationFailure.nonRetryable('Idempotency-Key reused with a different request', IDEMPOTENCY_MISMATCH);
  }

  async decisionWhenKnown(): Promise<Decision> {
    await condition(() => this.decision !== undefined);
    return this.decision!;
  }

  /** The provider (or staff) has decided the outcome. */
  decided(): boolean {
    return this.providerView !== undefined && this.providerView.providerStatus !== 'pending';
  }

  /** A webhook's claim is waiting to be checked, or a poll was asked for. */
  nudged(): boolean {
    return this.claim !== undefined || this.pollRequested;
  }

  /** A webhook is a claim: the saga asks the provider and acts on its record; polls and staff are learned. */
  receive(event: Event): void {
    if (event.source === 'webhook') this.claim = event;
    else this.learn(event);
  }

  learn(event: Event): void {
    const rank = this.providerRank as Record<string, number>;
    if (rank[event.providerStatus]! > rank[this.providerView?.providerStatus ?? 'pending']!) this.providerView = event;
  }

  requestPoll(): void {
    this.pollRequested = true;
  }
}
