/**
 * The payout saga's contract, shared by the workflow, the API and the webhook handler:
 * input, states, signals, queries and updates. No imports beyond the workflow SDK's definers,
 * so both the workflow bundle and ordinary Node code can load it.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { MoneyAmount } from './common';


/**
 * The payout saga's workflow type. Sagas started before it run on as `payoutWorkflow` (workflows/legacy),
 * so listings and counts name both.
 */
export const PAYOUT_SAGA_TYPE = 'payoutSaga';
export const PAYOUT_SAGA_TYPES = [PAYOUT_SAGA_TYPE, 'payoutWorkflow'] as const;

export const PAYOUT_STATUSES = ['REQUESTED', 'AUTHORIZED', 'HELD', 'PENDING_REVIEW', 'SUBMITTED', 'SETTLED', 'DECLINED', 'FAILED', 'CANCELLED', 'RETURNED'] as const;
export type PayoutStatus = (typeof PAYOUT_STATUSES)[number];
/** States from which nothing moves any more (RETURNED too: the refund is the last movement). */
export const FINAL_PAYOUT_STATUSES: readonly PayoutStatus[] = ['DECLINED', 'FAILED', 'CANCELLED', 'RETURNED'];

export const PAYOUT_METHODS = ['bank_transfer', 'card', 'ewallet'] as const;
export type PayoutMethod = (typeof PAYOUT_METHODS)[number];

export type PayoutDestination = { method: 'bank_transfer'; iban: string } | { method: 'card'; token: string } | { method: 'ewallet'; wallet_id: string };

/** What a saga knows of its destination: the full one stays in PostgreSQL (payout_destinations). */
export interface MaskedDestination {
  method: PayoutDestination['method'];
  last4: string;
}

/** The method and last 4 characters: all a saga, a response or a log may show of a destination. */
export function maskDestination(destination: PayoutDestination | MaskedDestination): MaskedDestination {
  if ('last4' in destination) return destination;
  const value = destination.method === 'bank_transfer' ? destination.iban : destination.method === 'card' ? destination.token : destination.wallet_id;
  return { method: destination.method, last4: value.slice(-4) };
}

export interface PayoutTimings {
  /** Reversal window before submission, during which the player may cancel. */
  submitDelayMs: number;
  /** First status poll when no callback came; doubles up to pollMaxMs. */
  pollInitialMs: number;
  pollMaxMs: number;
  /** Waiting on the provider longer than this marks the saga stuck for staff. */
  stuckAfterMs: number;
  /** How long a settled payout stays open for a provider return. */
  returnWindowMs: number;
  /** While awaiting the provider, continue as a new run past this many history events (default 10,000). */
  continueAsNewAfterEvents?: number;
  /** A submission its provider leaves unanswered this long is checked there, and moves to the next provider of the route only if that one has no such payout or failed it. */
  failoverAfterMs?: number;
}

/** One submission of a payout: to which provider, under which reference (its idempotency key there). */
export interface PayoutAttempt {
  attempt: number;
  provider: string;
  reference: string;
}

/** The provider reference of attempt `n`: the payout id for the first, then `<payout id>:a<n>`. */
export function attemptReference(payoutId: string, attempt: number): string {
  return attempt === 1 ? payoutId : `${payoutId}:a${attempt}`;
}

/** The payout a provider reference is about (its webhooks carry the reference). */
export function payoutIdOfReference(reference: string): string {
  return reference.replace(/:a\d+$/, '');
}

/** What a saga still awaiting its provider carries into its next run (continue-as-new keeps history short). */
export interface PayoutResume {
  timeline: TimelineEntry[];
  holdTransferId: number;
  providerPayoutId?: string;
  /** When the wait for the provider began (stuck marking counts from here). */
  waitingSince: string;
  stuck: boolean;
  pollDelayMs: number;
  /** Runs so far, this one included. */
  runs: number;
  /** The attempt it is waiting on (routed payouts). */
  attempt?: PayoutAttempt;
}

export interface PayoutInput {
  payoutId: string;
  accountId: string;
  amount: MoneyAmount;
  /** Masked; sagas started before destinations moved to PostgreSQL carry the full one. */
  destination: MaskedDestination | PayoutDestination;
  /** The first provider of the route as planned at the request (at submission one that is unhealthy or disabled is passed over). */
  provider: string;
  /**
   * The providers this payout may go to, in order (PAYOUT_ROUTES): the first healthy one gets it, the others
   * are its fallbacks. Absent (sagas started before routing): `provider` only, never failed over.
   */
  route?: string[];
  /** sha256 of the canonical request; a request with the same key but another fingerprint is refused. */
  fingerprint: string;
  requestedAt: string;
  timings: PayoutTimings;
  /**
   * Task queue of the scheduled status polls of a silent provider: background work, polled by the worker's
   * small background pool so it never takes a slot of the money path. Absent (sagas started before):
   * polls run as local activities, as they always did.
   */
  pollTaskQueue?: string;
  /** Set only by the saga itself when it continues as new while awaiting its provider. */
  resume?: PayoutResume;
  /** When staff review payouts before they are paid (absent: sagas started before reviews, never reviewed). */
  review?: ReviewPolicy;
}

/**
 * Which payouts wait for a staff review once held (PENDING_REVIEW), set by the API at the start from its
 * settings: approve and the saga goes on to submit, reject and the hold is voided (DECLINED).
 */
export interface ReviewPolicy {
  /** A payout above this (minor units of its currency) is reviewed. */
  aboveMinor: number;
  /** This payout's approval takes two different staff members (above the dual-approval threshold, under four eyes). */
  dualApproval: boolean;
  /** A review waiting longer than this marks the saga stuck for staff (it keeps waiting). */
  slaMs: number;
  /** 'review': a payout over the daily or hourly limit is reviewed instead of declined. */
  onLimitBreach: 'decline' | 'review';
}

/** Why a payout waits for review: its amount, or a limit it would break (where limits send to review). */
export type ReviewReason = 'amount' | 'LIMIT_EXCEEDED' | 'VELOCITY_LIMIT_EXCEEDED';

/** What a player may be told when its payout is rejected at review: neutral codes, never the reviewer's reasoning. */
export const REVIEW_REJECTION_CODES = ['review_rejected', 'source_of_funds', 'identity_verification', 'responsible_gambling', 'payment_method'] as const;

/** A staff review of a payout in PENDING_REVIEW. */
export interface ReviewDecision {
  decision: 'approve' | 'reject';
  reviewer: string;
  reason: string;
  /** A rejection's stable code, the payout's decline code (what the player sees). */
  reasonCode?: string;
  /** Under dual approval: the second staff member, never the reviewer. */
  approvedBy?: string;
}

/**
 * A saga's state as the read model (table `payouts`) mirrors it. `version` is the state's place in the
 * timeline, so a late write never overwrites a newer state. Ledger steps take the state they lead to and
 * write it in the same local activity, after the step succeeded: one round trip instead of two.
 */
export interface PayoutStateRecord {
  payoutId: string;
  version: number;
  status: string;
  providerPayoutId?: string;
  failureCode?: string;
  declineCode?: string;
  stuck: boolean;
}


export interface TimelineEntry {
  at: string;
  status: PayoutStatus;
  /** A stable code (e.g. INSUFFICIENT_FUNDS, resolved_by_staff): what a player may see. */
  note?: string;
  /** Free text for staff only (who resolved or cancelled, and why); never shown to players. */
  staffNote?: string;
  /** A submission attempt's provider and number. */
  provider?: string;
  attempt?: number;
}

/** The authorization decision the API answers with synchronously when it is known in time. */
export type AuthorizationDecision =
  | { outcome: 'held'; status: PayoutStatus; holdTransferId: number }
  | { outcome: 'declined'; status: 'DECLINED'; code: string; detail: string };

export interface PayoutView {
  payoutId: string;
  accountId: string;
  amount: MoneyAmount;
  destination: { method: PayoutDestination['method']; last4: string };
  provider: string;
  status: PayoutStatus;
  providerPayoutId?: string;
  failureCode?: string;
  returnReason?: string;
  declineCode?: string;
  cancellable: boolean;
  stuck: boolean;
  requestedAt: string;
  timeline: TimelineEntry[];
  /** A payout held for staff review: why, and whether its approval takes two staff members. */
  review?: { reason: ReviewReason; dualApproval: boolean };
}

/** A provider's view of the payout, from a webhook or from polling. */
export interface ProviderPayoutEvent {
  /** Webhook event id, or `poll:<timestamp>` for a status poll. */
  eventId: string;
  source: 'webhook' | 'poll' | 'staff';
  providerStatus: 'pending' | 'settled' | 'failed' | 'returned';
  providerPayoutId?: string;
  failureCode?: string;
  returnReason?: string;
  occurredAt: string;
  /** A webhook's provider and reference: a claim about an earlier attempt is not this attempt's news. */
  provider?: string;
  reference?: string;
}

export interface CancelRequest {
  requestedBy: string;
  reason?: string;
}

export const providerEventSignal = defineSignal<[ProviderPayoutEvent]>('providerEvent');
export const payoutStatusQuery = defineQuery<PayoutView>('status');
/** Waits for and returns the authorization decision; its update id carries the request fingerprint. */
export const authorizationUpdate = defineUpdate<AuthorizationDecision, [string]>('authorization');
/** Accepted only before submission to the provider; answers with the payout's new view. */
export const cancelUpdate = defineUpdate<PayoutView, [CancelRequest]>('cancel');

/** Finance staff settle or fail a payout the provider leaves undecided; recorded with who and why. */
export interface StaffResolution {
  outcome: 'settle' | 'fail';
  /** Who asked for it. */
  actor: string;
  reason: string;
  /** Under four eyes: the other staff member who approved it. */
  approvedBy?: string;
}

/** Accepted only in PENDING_REVIEW, once (with a second staff member under dual approval); answers with the view after it. */
export const reviewUpdate = defineUpdate<PayoutView, [ReviewDecision]>('review');
export const PAYOUT_NOT_REVIEWABLE = 'PAYOUT_NOT_REVIEWABLE';

/** Accepted only while the saga awaits its provider (SUBMITTED); answers with the resolved view. */
export const staffResolveUpdate = defineUpdate<PayoutView, [StaffResolution]>('staffResolve');
/** Ask the saga to poll its provider now instead of at the next backoff step. */
export const pollProviderNowSignal = defineSignal('pollProviderNow');
/**
 * Whether the saga would act on that signal: `ignored` by one settled and in its return window that started before
 * such polls were answered there (it acts on the provider's webhook only), `finished` once the saga has ended.
 */
export type ProviderPollAnswer = 'acts' | 'ignored' | 'finished';
export const providerPollQuery = defineQuery<ProviderPollAnswer>('providerPoll');
export const PAYOUT_POLL_IGNORED = 'PAYOUT_POLL_IGNORED';

export const PAYOUT_NOT_RESOLVABLE = 'PAYOUT_NOT_RESOLVABLE';
export const PAYOUT_NOT_CANCELLABLE = 'PAYOUT_NOT_CANCELLABLE';
