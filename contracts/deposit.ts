/**
 * The deposit saga's contract, shared by the workflow, the API and the webhook handler:
 * input, states, signals, queries and updates. No imports beyond the workflow SDK's definers,
 * so both the workflow bundle and ordinary Node code can load it.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { MoneyAmount } from './common';


/**
 * No EXPIRED: the aggregator owns the checkout's lifetime and reports an abandoned one as deposit.failed.
 * A deposit the provider never decides stays PENDING, is polled, and is marked stuck (PayoutStuck) for staff.
 */
/** The deposit saga's workflow type; sagas started before it run on as `depositWorkflow` (workflows/legacy). */
export const DEPOSIT_SAGA_TYPE = 'depositSaga';
export const DEPOSIT_SAGA_TYPES = [DEPOSIT_SAGA_TYPE, 'depositWorkflow'] as const;

export const DEPOSIT_STATUSES = ['REQUESTED', 'PENDING', 'CREDITED', 'FAILED', 'REVERSED'] as const;
export type DepositStatus = (typeof DEPOSIT_STATUSES)[number];
export const FINAL_DEPOSIT_STATUSES: readonly DepositStatus[] = ['CREDITED', 'FAILED', 'REVERSED'];

/** The workflow that takes a charged-back deposit back (after its saga closed): one per deposit, `<deposit id>:reversal`. */
export const DEPOSIT_REVERSAL_TYPE = 'depositReversalWorkflow';
export const depositReversalWorkflowId = (depositId: string) => `${depositId}:reversal`;

export interface DepositReversalInput {
  depositId: string;
  reason: string;
  /** provider: its deposit.reversed webhook, a claim checked against its record; staff: a four-eyes chargeback. */
  source: 'provider' | 'staff';
  /** The provider event that reported it. */
  eventId?: string;
  /** Staff: who asked and who approved. */
  requestedBy?: string;
  approvedBy?: string;
}

export interface DepositTimings {
  /** First status poll when no callback came; doubles up to pollMaxMs. */
  pollInitialMs: number;
  pollMaxMs: number;
  /** Waiting on the provider longer than this marks the saga stuck for staff. */
  stuckAfterMs: number;
  /** While awaiting the provider, continue as a new run past this many history events (default 10,000). */
  continueAsNewAfterEvents?: number;
}

/** What a deposit still awaiting its provider carries into its next run. */
export interface DepositResume {
  timeline: DepositTimelineEntry[];
  checkoutUrl: string;
  providerDepositId: string;
  waitingSince: string;
  stuck: boolean;
  pollDelayMs: number;
  runs: number;
}

export interface DepositInput {
  depositId: string;
  accountId: string;
  amount: MoneyAmount;
  provider: string;
  /** sha256 of the canonical request; a request with the same key but another fingerprint is refused. */
  fingerprint: string;
  requestedAt: string;
  timings: DepositTimings;
  /**
   * Task queue of the scheduled status polls of a silent provider: background work, polled by the worker's
   * small background pool so it never takes a slot of the money path. Absent (sagas started before):
   * polls run as local activities, as they always did.
   */
  pollTaskQueue?: string;
  /** Set only by the saga itself when it continues as new while awaiting its provider. */
  resume?: DepositResume;
}

export interface DepositTimelineEntry {
  at: string;
  status: DepositStatus;
  /** A stable code (e.g. confirmed_by_webhook): what a player may see. */
  note?: string;
  /** Free text for staff only; never shown to players. */
  staffNote?: string;
}

/** What the API answers with synchronously when it is known in time: the provider's checkout, or its refusal. */
export type IntentDecision =
  | { outcome: 'created'; status: DepositStatus; checkoutUrl: string; providerDepositId: string }
  | { outcome: 'refused'; status: 'FAILED'; code: string; detail: string };

export interface DepositView {
  depositId: string;
  accountId: string;
  amount: MoneyAmount;
  provider: string;
  status: DepositStatus;
  checkoutUrl?: string;
  providerDepositId?: string;
  failureCode?: string;
  creditTransferId?: number;
  stuck: boolean;
  requestedAt: string;
  timeline: DepositTimelineEntry[];
}

/** A provider's view of the deposit, from a webhook or from polling. */
export interface ProviderDepositEvent {
  /** Webhook event id, or `poll:<timestamp>` for a status poll. */
  eventId: string;
  source: 'webhook' | 'poll';
  providerStatus: 'pending' | 'succeeded' | 'failed';
  providerDepositId?: string;
  failureCode?: string;
  occurredAt: string;
}

/** Its own name (not the payout's 'providerEvent'), so a misrouted event can never be read as the other kind. */
export const depositEventSignal = defineSignal<[ProviderDepositEvent]>('depositProviderEvent');
export const depositStatusQuery = defineQuery<DepositView>('depositStatus');
/** Waits for and returns the intent decision; its update id carries the request fingerprint. */
export const intentUpdate = defineUpdate<IntentDecision, [string]>('intent');
