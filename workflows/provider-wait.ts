/**
 * Awaiting a provider's outcome, shared by the payout and deposit sagas. The provider decides; the saga only
 * learns of it: a webhook is a claim, checked at once against the provider's own record; staff may ask for a
 * poll now; otherwise the saga polls on a backoff. Never assumed failed: past `stuckAfterMs` the saga is
 * marked stuck for staff and keeps waiting, continuing as a new run when its history grows long.
 */
import { allHandlersFinished, condition, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { differingTerms, unconfirmedClaim, type ProviderIncident, type RecordedTerms, type RequestedTerms } from '../contracts/provider-records';
import type { ProviderEvent, SagaState, SagaTimelineEntry } from './saga-state';
import { historyIsLong, LEDGER_STEP_OPTIONS } from './shared';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);

export interface ProviderWaitTimings {
  /** First status poll when no callback came; doubles up to pollMaxMs. */
  pollInitialMs: number;
  pollMaxMs: number;
  /** Waiting on the provider longer than this marks the saga stuck for staff. */
  stuckAfterMs: number;
  /** Continue as a new run past this many history events (default 10,000). */
  continueAsNewAfterEvents?: number;
}

/** Where a wait stands: carried into the next run when the saga continues as new. */
export interface WaitPosition {
  waitingSince: string;
  pollDelayMs: number;
}

/** What the wait needs of a saga's state. */
export interface WaitingSaga {
  readonly stuck: boolean;
  /** The provider (or staff) has decided the outcome. */
  decided(): boolean;
  /** A webhook's claim is waiting to be checked, or a poll was asked for. */
  nudged(): boolean;
  /** Asks the provider for its record and acts on what it says; `scheduled` polls are background work. */
  check(scheduled: boolean): Promise<void>;
  markStuck(staffNote: string): Promise<void>;
  clearStuck(): void;
  /** Continues the saga as a new run that resumes this wait at `position`. */
  continueAsNew(position: WaitPosition): Promise<void>;
}

export async function awaitProviderOutcome(saga: WaitingSaga, timings: ProviderWaitTimings, resumed?: WaitPosition): Promise<void> {
  const waitingSince = resumed ? Date.parse(resumed.waitingSince) : Date.now();
  const stuckAt = waitingSince + timings.stuckAfterMs;
  let pollDelayMs = resumed?.pollDelayMs ?? timings.pollInitialMs;
  let nextPollAt = Date.now() + pollDelayMs;
  while (!saga.decided()) {
    const wakeAt = saga.stuck ? nextPollAt : Math.min(nextPollAt, stuckAt);
    await condition(() => saga.decided() || saga.nudged(), Math.max(1, wakeAt - Date.now()));
    if (saga.decided()) break;
    if (!saga.stuck && Date.now() >= stuckAt) await saga.markStuck(`no provider outcome after ${Math.round(timings.stuckAfterMs / 1000)}s`);
    if (saga.nudged()) {
      await saga.check(false); // a claim or a requested poll, checked now; the poll schedule stays
    } else if (Date.now() >= nextPollAt) {
      await saga.check(true);
      pollDelayMs = Math.min(pollDelayMs * 2, timings.pollMaxMs);
      nextPollAt = Date.now() + pollDelayMs;
    }
    if (!saga.decided() && historyIsLong(timings.continueAsNewAfterEvents)) {
      // A staff action in progress waits for this saga to act on it: never wait for it to finish first.
      await condition(() => allHandlersFinished() || saga.decided());
      if (!saga.decided()) await saga.continueAsNew({ waitingSince: new Date(waitingSince).toISOString(), pollDelayMs });
    }
  }
  if (saga.stuck) saga.clearStuck();
}

/** First re-ask of a provider that could not be asked to confirm a webhook's claim; doubles up to pollMaxMs. */
const CLAIM_RECHECK_MS = 1_000;

/**
 * The provider's record, read for a check: 'none' when it has never seen the item, 'unknown' when it cannot be
 * asked. A webhook's claim is re-asked with backoff until the provider answers or `settled()` (staff decided).
 */
export async function readProviderRecord<R>(
  read: (scheduled: boolean) => Promise<R | 'none' | 'unknown'>,
  opts: { scheduled: boolean; forClaim: boolean; settled: () => boolean; pollMaxMs: number },
): Promise<R | 'none' | 'unknown'> {
  let seen = await read(opts.scheduled && !opts.forClaim);
  for (let delay = CLAIM_RECHECK_MS; opts.forClaim && seen === 'unknown' && !opts.settled(); delay = Math.min(delay * 2, opts.pollMaxMs)) {
    if (await condition(opts.settled, delay)) break;
    seen = await read(false);
  }
  return seen;
}

/** The event a saga learns from the provider's record: the webhook's own when the record bears its claim out. */
export function eventFromRecord<S extends string>(status: S, claimed: { eventId: string; providerStatus: string } | undefined): { eventId: string; source: 'webhook' | 'poll'; providerStatus: S; occurredAt: string } {
  const confirmed = claimed?.providerStatus === status ? claimed : undefined;
  return { eventId: confirmed?.eventId ?? `poll:${Date.now()}`, source: confirmed ? 'webhook' : 'poll', providerStatus: status, occurredAt: new Date().toISOString() };
}

/** A provider's record of a saga's item: its status, and the terms it must agree with the request on. */
export type ProviderRecord = RecordedTerms & { status: string };

/** Every saga's resume carries these; each adds its own fields. */
export interface WaitResume<Status extends string> extends WaitPosition {
  timeline: SagaTimelineEntry<Status>[];
  stuck: boolean;
  runs: number;
}

export interface RecordChecksOf<R extends ProviderRecord, E> {
  sagaKind: ProviderIncident['sagaKind'];
  reference: string;
  /** What the provider's record must agree with (amount, currency, and a payout's destination). */
  terms: RequestedTerms;
  /** The provider's record, null or undefined when it has none; `scheduled` polls are background work (their own queue). */
  fetch(scheduled: boolean): Promise<R | null | undefined>;
  /** The record's fields as written into an incident. */
  observedOf(seen: R): Record<string, unknown> & { status: string };
  /** The event learned from an agreeing record (the webhook's own when the record bears its claim out). */
  eventOf(seen: R, claimed?: E): E;
  /** An agreeing record is adopted (its provider id) before its status is learned. */
  adopt?(seen: R): void;
  /** Marks the saga stuck for staff, with why. */
  stick(staffNote: string): Promise<void>;
  pollMaxMs: number;
}

/** Asking the provider for its record, and what its record means for the saga. */
export function providerRecordChecks<Status extends string, E extends ProviderEvent, R extends ProviderRecord>(saga: SagaState<Status, unknown, E>, of: RecordChecksOf<R, E>) {
  /** The provider's record: 'none' when it has never seen the item, 'unknown' when it cannot be asked. */
  async function record(scheduled: boolean): Promise<R | 'none' | 'unknown'> {
    try {
      return (await of.fetch(scheduled)) ?? 'none';
    } catch {
      return 'unknown'; // the provider is unreachable: keep waiting, ask again later
    }
  }

  const reportIncident = ({ claimedStatus, ...incident }: Pick<ProviderIncident, 'kind' | 'fields' | 'observed' | 'eventId'> & { claimedStatus?: string }) =>
    steps.recordProviderIncident({ sagaKind: of.sagaKind, reference: of.reference, expected: { ...of.terms, ...(claimedStatus ? { status: claimedStatus } : {}) }, ...incident });

  /**
   * The record's status is learned only when it agrees with the request (amount, currency, destination): one
   * that differs is an incident for staff and the saga waits, stuck. A webhook claim it does not bear out is
   * written for staff too.
   */
  async function judge(seen: R | 'none', claimed?: E): Promise<void> {
    const fields = seen === 'none' ? [] : differingTerms(of.terms, seen);
    if (seen !== 'none' && fields.length > 0) {
      await reportIncident({ kind: 'record_mismatch', fields, observed: of.observedOf(seen), ...(claimed ? { eventId: claimed.eventId } : {}) });
      if (!saga.stuck) await of.stick(`the provider's record differs from the ${of.sagaKind} (${fields.join(', ')}); not acted on`);
      return;
    }
    if (seen !== 'none') {
      of.adopt?.(seen);
      if (seen.status !== 'pending') saga.learn(of.eventOf(seen, claimed));
    }
    const unconfirmed = claimed && unconfirmedClaim(claimed, seen === 'none' ? { status: 'none' } : of.observedOf(seen));
    if (unconfirmed) await reportIncident(unconfirmed);
  }

  return {
    record,
    judge,
    eventOf: of.eventOf,
    agrees: (seen: R) => differingTerms(of.terms, seen).length === 0,
    /** A check: the webhook claim waiting (if any), a requested poll, or a `scheduled` one. */
    async check(scheduled: boolean, settled: () => boolean = () => saga.decided()): Promise<void> {
      const claimed = saga.claim;
      saga.claim = undefined;
      saga.pollRequested = false;
      const seen = await readProviderRecord(record, { scheduled, forClaim: claimed !== undefined, settled, pollMaxMs: of.pollMaxMs });
      if (seen !== 'unknown') await judge(seen, claimed);
    },
  };
}

/** The saga as the provider wait sees it; `restart` continues it as a new run from the common resume fields. */
export function waitingSaga<Status extends string, E extends ProviderEvent>(
  saga: SagaState<Status, unknown, E>,
  checks: { check(scheduled: boolean): Promise<void> },
  stick: (staffNote: string) => Promise<void>,
  runsSoFar: number | undefined,
  restart: (resume: WaitResume<Status>) => Promise<void>,
): WaitingSaga {
  return {
    get stuck() {
      return saga.stuck;
    },
    decided: () => saga.decided(),
    nudged: () => saga.nudged(),
    check: (scheduled) => checks.check(scheduled),
    markStuck: stick,
    clearStuck: () => saga.markStuck(false),
    continueAsNew: (position) => restart({ timeline: [...saga.timeline], ...position, stuck: saga.stuck, runs: (runsSoFar ?? 1) + 1 }),
  };
}
