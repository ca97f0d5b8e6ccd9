import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import type { Pool } from '../lib/db';
import { DestinationUnreadable, type DestinationVault, type StoredDestination } from '../lib/destination-vault';
import { findAtAggregator, submitToAggregator, type Aggregator } from './aggregator-client';
import type { MaskedDestination, PayoutDestination, PayoutStateRecord } from '../contracts/payout';
import { writePayoutState } from './payout-state';
import type { RequestedTerms } from '../contracts/provider-records';

/** The aggregator's payout as the saga needs it. */
export interface ProviderPayout {
  providerPayoutId: string;
  status: 'pending' | 'settled' | 'failed' | 'returned';
  /** What the provider's record says it pays, and where: compared with the request before money moves. */
  amount?: { minor_units: number; currency: string };
  destination?: { method: string; last4: string };
  failureCode?: string;
  returnReason?: string;
  updatedAt?: string;
}

interface AggregatorPayoutBody {
  id: string;
  status: ProviderPayout['status'];
  amount?: { minor_units: number; currency: string };
  destination?: { method: string; last4: string };
  failure_code?: string;
  return_reason?: string;
  updated_at?: string;
}

function toProviderPayout(body: AggregatorPayoutBody): ProviderPayout {
  return {
    providerPayoutId: body.id,
    status: body.status,
    ...(body.amount ? { amount: { minor_units: body.amount.minor_units, currency: body.amount.currency } } : {}),
    ...(body.destination ? { destination: { method: body.destination.method, last4: body.destination.last4 } } : {}),
    failureCode: body.failure_code,
    returnReason: body.return_reason,
    updatedAt: body.updated_at,
  };
}

/** The payout's calls to the aggregator (see aggregator-client.ts for idempotency and error classes). */
export function createProviderActivities(deps: { aggregator: Aggregator; pool: Pool; destinations: DestinationVault; chaosBreak?: 'submission-key' }) {
  const base = deps.aggregator;

  /**
   * The full destination, kept out of workflow histories and encrypted at rest (payout_destinations):
   * decrypted here only. A row that does not authenticate is final; a missing key or a row not yet sealed
   * is retried until the operator fixes it.
   */
  async function destinationOf(payoutId: string): Promise<PayoutDestination> {
    const { rows } = await deps.pool.query<StoredDestination>('SELECT key_id, wrapped_key, ciphertext FROM payout_destinations WHERE payout_id = $1', [payoutId]);
    if (!rows[0]) throw ApplicationFailure.nonRetryable(`no destination stored for payout ${payoutId}`, 'DestinationMissing');
    try {
      return deps.destinations.open(payoutId, rows[0]);
    } catch (err) {
      if (!(err instanceof DestinationUnreadable)) throw err;
      if (err.reason === 'tampered') throw ApplicationFailure.nonRetryable(err.message, 'DestinationUndecryptable');
      throw ApplicationFailure.retryable(err.message, 'DestinationUnavailable');
    }
  }

  return {
    /** `destination` only from sagas started before destinations moved to PostgreSQL. */
    async submitPayoutToProvider(input: { payoutId: string; amount: { minor_units: number; currency: string }; destination?: PayoutDestination; record?: PayoutStateRecord }): Promise<ProviderPayout> {
      const destination = input.destination ?? (await destinationOf(input.payoutId));
      // CHAOS_BREAK=submission-key (tests only): a retried attempt is a payout of its own, as a build that lost its key would send.
      const attempt = deps.chaosBreak === 'submission-key' ? Context.current().info.attempt : 1;
      const reference = attempt > 1 ? `${input.payoutId}:${attempt}` : input.payoutId;
      const submitted = toProviderPayout((await submitToAggregator(base, 'payouts', reference, { amount: input.amount, destination })) as AggregatorPayoutBody);
      // The state the submission leads to (SUBMITTED), mirrored in the same activity once the provider has it.
      if (input.record) await writePayoutState(deps.pool, input.record);
      return submitted;
    },

    /** What the platform asked the provider to pay, from the read model (for sagas that no longer carry it). */
    async requestedPayoutTerms(input: { payoutId: string }): Promise<RequestedTerms | undefined> {
      const { rows } = await deps.pool.query<{ amount_minor: string | number; currency: string; destination_method: MaskedDestination['method']; destination_last4: string }>(
        'SELECT amount_minor, currency, destination_method, destination_last4 FROM payouts WHERE payout_id = $1',
        [input.payoutId],
      );
      const row = rows[0];
      if (!row) return undefined;
      return { amount: { minor_units: Number(row.amount_minor), currency: row.currency }, destination: { method: row.destination_method, last4: row.destination_last4 } };
    },

    /** The aggregator's current view of the payout; undefined when it has never seen it. */
    async fetchProviderPayout(input: { payoutId: string }): Promise<ProviderPayout | undefined> {
      const found = await findAtAggregator(base, 'payouts', input.payoutId, 'status');
      return found === undefined ? undefined : toProviderPayout(found as AggregatorPayoutBody);
    },
  };
}
