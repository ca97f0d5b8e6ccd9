/**
 * What every saga's state shares: its status and timeline, the stuck mark staff filter on, and the first
 * decision the API waits for (through an update whose validator checks the request's fingerprint).
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
}

export abstract class SagaState<Status extends string, Decision> {
  abstract status: Status;
  abstract readonly timeline: SagaTimelineEntry<Status>[];
  decision?: Decision;
  stuck = false;

  constructor(private readonly fingerprint: string) {}

  /** Enters a state. `note` is a stable code a player may see; `staffNote` is free text for staff views only. */
  enter(next: Status, note?: string, staffNote?: string): void {
    this.status = next;
    this.timeline.push({ at: new Date().toISOString(), status: next, ...(note ? { note } : {}), ...(staffNote ? { staffNote } : {}) });
    upsertSearchAttributes([{ key: SA.Status, value: next }]);
  }

  markStuck(stuck: boolean): void {
    this.stuck = stuck;
    upsertSearchAttributes([{ key: SA.Stuck, value: stuck }]);
  }

  /** The decision update's validator: the same key with another request is refused, changing nothing. */
  checkFingerprint(fingerprint: string): void {
    if (fingerprint !== this.fingerprint) throw ApplicationFailure.nonRetryable('Idempotency-Key reused with a different request', IDEMPOTENCY_MISMATCH);
  }

  async decisionWhenKnown(): Promise<Decision> {
    await condition(() => this.decision !== undefined);
    return this.decision!;
  }
}
