/**
 * Awaiting a provider's outcome, shared by the payout and deposit sagas. The provider decides; the saga only
 * learns of it: a webhook is a claim, checked at once against the provider's own record; staff may ask for a
 * poll now; otherwise the saga polls on a backoff. Never assumed failed: past `stuckAfterMs` the saga is
 * marked stuck for staff and keeps waiting, continuing as a new run when its history grows long.
 */
import { allHandlersFinished, condition } from '@temporalio/workflow';
import { historyIsLong } from './shared';

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

/** Provider states in the order they can happen: an event not ahead of what the saga knows is stale. */
export function isNews<S extends string>(rank: Record<S, number>, event: { providerStatus: S }, known: { providerStatus: S } | undefined, initial: S): boolean {
  return rank[event.providerStatus] > rank[known?.providerStatus ?? initial];
}

/** The event a saga learns from the provider's record: the webhook's own when the record bears its claim out. */
export function eventFromRecord<S extends string>(status: S, claimed: { eventId: string; providerStatus: string } | undefined): { eventId: string; source: 'webhook' | 'poll'; providerStatus: S; occurredAt: string } {
  const confirmed = claimed?.providerStatus === status ? claimed : undefined;
  return { eventId: confirmed?.eventId ?? `poll:${Date.now()}`, source: confirmed ? 'webhook' : 'poll', providerStatus: status, occurredAt: new Date().toISOString() };
}
