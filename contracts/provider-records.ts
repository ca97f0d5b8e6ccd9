/**
 * A provider's answer is a claim about money: before a saga moves money on it, the provider's own record
 * must agree with what the platform asked for, field by field. Pure and workflow-safe (no I/O): the
 * sagas call it on activity results, so the decision is recorded in, and replayed from, their history.
 */
import type { MoneyAmount } from './common';
import type { MaskedDestination } from './payout';

/** What the platform asked the provider to do. */
export interface RequestedTerms {
  amount: MoneyAmount;
  /** Payouts only: where the money goes (method and last 4 characters, all a provider shows of it). */
  destination?: MaskedDestination;
}

/** What the provider's record says of the same fields (anything missing counts as different). */
export interface RecordedTerms {
  amount?: { minor_units?: unknown; currency?: unknown };
  destination?: { method?: unknown; last4?: unknown };
}

export type TermsField = 'amount' | 'currency' | 'destination';

/** The fields where the provider's record differs from the request; empty when it agrees. */
export function differingTerms(requested: RequestedTerms, record: RecordedTerms): TermsField[] {
  const fields: TermsField[] = [];
  if (record.amount?.minor_units !== requested.amount.minor_units) fields.push('amount');
  if (record.amount?.currency !== requested.amount.currency) fields.push('currency');
  if (requested.destination && (record.destination?.method !== requested.destination.method || record.destination?.last4 !== requested.destination.last4)) {
    fields.push('destination');
  }
  return fields;
}

/** What a saga writes for staff when a claim or a record is not acted on (see recordProviderIncident). */
export interface ProviderIncident {
  sagaKind: 'payout' | 'deposit';
  reference: string;
  /**
   * record_mismatch: the provider's record differs from the request (amount, currency, destination);
   * claim_not_confirmed: a webhook's status is not (yet) in the provider's record;
   * claim_contradicted: the record holds another final status than the webhook claimed.
   */
  kind: 'record_mismatch' | 'claim_not_confirmed' | 'claim_contradicted';
  fields: ('status' | TermsField)[];
  expected: Record<string, unknown>;
  observed: Record<string, unknown>;
  eventId?: string;
}

/**
 * A webhook's claim checked against the provider's record (`observed.status`, 'none' when it has no such
 * item): undefined when they agree; otherwise the incident to write, with the status the webhook claimed.
 */
export function unconfirmedClaim(
  claimed: { eventId: string; providerStatus: string },
  observed: Record<string, unknown> & { status: string },
): (Pick<ProviderIncident, 'kind' | 'fields' | 'observed' | 'eventId'> & { claimedStatus: string }) | undefined {
  if (observed.status === claimed.providerStatus) return undefined;
  return {
    kind: observed.status === 'none' || observed.status === 'pending' ? 'claim_not_confirmed' : 'claim_contradicted',
    fields: ['status'],
    observed,
    eventId: claimed.eventId,
    claimedStatus: claimed.providerStatus,
  };
}
