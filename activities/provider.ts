import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import type { Pool } from '../lib/db';
import { DestinationUnreadable, type DestinationVault, type StoredDestination } from '../lib/destination-vault';
import { findAtAggregator, submitToAggregator } from './aggregator-client';
import type { ProviderRegistry, SkippedProvider } from './provider-registry';
import type { MaskedDestination, PayoutDestination, PayoutStateRecord } from '../contracts/payout';
import { writePayoutState } from './payout-state';
import type { RequestedTerms } from '../contracts/provider-records';

/** Which provider, under which reference, a call is about; absent: where the read model says the payout is. */
export interface PayoutAttemptRef {
  payoutId: string;
  provider?: string;
  reference?: string;
}

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
export function createProviderActivities(deps: { providers: ProviderRegistry; pool: Pool; destinations: DestinationVault; chaosBreak?: 'submission-key' }) {
  const { providers } = deps;

  /**
   * Where the payout is: the attempt a saga names, else (sagas started before routing, the return saga) the
   * read model's current provider and reference; a payout from before then was at `sandbox` under its id.
   */
  async function attemptOf(input: PayoutAttemptRef): Promise<{ provider: string; reference: string }> {
    if (input.provider) return { provider: input.provider, reference: input.reference ?? input.payoutId };
    const { rows } = await deps.pool.query<{ provider: string; provider_reference: string | null }>('SELECT provider, provider_reference FROM payouts WHERE payout_id = $1', [input.payoutId]);
    return { provider: rows[0]?.provider ?? 'sandbox', reference: rows[0]?.provider_reference ?? input.payoutId };
  }

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

  /**
   * Records a routed payout's attempt before the provider can have it, and makes it the payout's current one
   * in the read model; the attempt before it, if any, is marked superseded with why. Idempotent.
   */
  async function recordAttempt(payoutId: string, attempt: number, provider: string, reference: string, supersededWhy: string | undefined): Promise<void> {
    const { rows } = await deps.pool.query<{ provider: string; reference: string }>(
      `WITH attempt AS (
         INSERT INTO payout_attempts (payout_id, attempt, provider, reference) VALUES ($1, $2, $3, $4)
         ON CONFLICT (payout_id, attempt) DO UPDATE SET provider = payout_attempts.provider
         RETURNING provider, reference
       ), earlier AS (
         UPDATE payout_attempts SET superseded = $5 WHERE payout_id = $1 AND attempt = $2 - 1 AND $5::text IS NOT NULL AND superseded IS NULL
       ), current AS (
         -- Only as recorded, and a late retry of an earlier attempt never points the read model back at it.
         UPDATE payouts SET provider = $3, provider_reference = $4, updated_at = now()
          WHERE payout_id = $1
            AND EXISTS (SELECT 1 FROM attempt WHERE attempt.provider = $3 AND attempt.reference = $4)
            AND NOT EXISTS (SELECT 1 FROM payout_attempts later WHERE later.payout_id = $1 AND later.attempt > $2)
       )
       SELECT provider, reference FROM attempt`,
      [payoutId, attempt, provider, reference, supersededWhy ?? null],
    );
    // The same attempt recorded for another provider (a saga reset to before its routing): never sent to a second one.
    if (rows[0] && (rows[0].provider !== provider || rows[0].reference !== reference)) {
      throw ApplicationFailure.nonRetryable(`attempt ${attempt} of ${payoutId} was recorded for ${rows[0].provider} (${rows[0].reference}); not sent to ${provider}`, 'AttemptConflict');
    }
  }

  return {
    /**
     * Submits the payout (`destination` only from sagas started before destinations moved to PostgreSQL). A
     * routed payout's attempt is recorded first, so a provider never holds a reference the platform cannot place.
     */
    async submitPayoutToProvider(
      input: PayoutAttemptRef & {
        amount: { minor_units: number; currency: string };
        destination?: PayoutDestination;
        record?: PayoutStateRecord;
        attempt?: number;
        supersededWhy?: string;
        /** A retry of this activity starts no POST after this (the saga's failover limit less a margin). */
        retriesNotAfter?: string;
      },
    ): Promise<ProviderPayout> {
      const destination = input.destination ?? (await destinationOf(input.payoutId));
      const { provider, reference: key } = await attemptOf(input);
      if (input.attempt !== undefined) await recordAttempt(input.payoutId, input.attempt, provider, key, input.supersededWhy);
      if (input.retriesNotAfter && Context.current().info.attempt > 1 && Date.now() > Date.parse(input.retriesNotAfter)) {
        throw ApplicationFailure.nonRetryable(`too close to the failover limit to send ${key} to ${provider} again`, 'SubmissionWindowClosed');
      }
      // CHAOS_BREAK=submission-key (tests only): a retried attempt is a payout of its own, as a build that lost its key would send.
      const retry = deps.chaosBreak === 'submission-key' ? Context.current().info.attempt : 1;
      const reference = retry > 1 ? `${key}:${retry}` : key;
      const submitted = toProviderPayout((await providers.guarded(provider, 'submit', (aggregator) => submitToAggregator(aggregator, 'payouts', reference, { amount: input.amount, destination }))) as AggregatorPayoutBody);
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
    async fetchProviderPayout(input: PayoutAttemptRef): Promise<ProviderPayout | undefined> {
      const { provider, reference } = await attemptOf(input);
      const found = await providers.measured(provider, 'lookup', (aggregator) => findAtAggregator(aggregator, 'payouts', reference, 'status'));
      return found === undefined ? undefined : toProviderPayout(found as AggregatorPayoutBody);
    },

    /** The providers of a payout's route in the order to try them now (health and staff's switches), with those passed over. */
    async planPayoutRoute(input: { payoutId: string; route: string[] }): Promise<{ order: string[]; skipped: SkippedProvider[] }> {
      return providers.plan(input.route);
    },

  };
}
