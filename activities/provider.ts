import { ApplicationFailure } from '@temporalio/common';
import type { Pool } from '../lib/db';
import type { PayoutDestination } from '../workflows/payout/definitions';

/** The aggregator's payout as the saga needs it. */
export interface ProviderPayout {
  providerPayoutId: string;
  status: 'pending' | 'settled' | 'failed' | 'returned';
  failureCode?: string;
  returnReason?: string;
  updatedAt?: string;
}

interface AggregatorPayoutBody {
  id: string;
  status: ProviderPayout['status'];
  failure_code?: string;
  return_reason?: string;
  updated_at?: string;
}

const REQUEST_TIMEOUT_MS = 10_000;

function toProviderPayout(body: AggregatorPayoutBody): ProviderPayout {
  return { providerPayoutId: body.id, status: body.status, failureCode: body.failure_code, returnReason: body.return_reason, updatedAt: body.updated_at };
}

/**
 * HTTP client of the payment aggregator (the sandbox in development). Submission carries the payout id
 * as the aggregator's Idempotency-Key and reference, so a retry after a timeout finds the first submission
 * instead of paying twice. Network errors and 5xx are thrown as retryable; refusals are not retried.
 */
export function createProviderActivities(deps: { providerUrl: string; pool: Pool }) {
  const base = deps.providerUrl.replace(/\/$/, '');

  /** The full destination, kept out of workflow histories (payout_destinations). */
  async function destinationOf(payoutId: string): Promise<PayoutDestination> {
    const { rows } = await deps.pool.query<{ destination: PayoutDestination }>('SELECT destination FROM payout_destinations WHERE payout_id = $1', [payoutId]);
    if (!rows[0]) throw ApplicationFailure.nonRetryable(`no destination stored for payout ${payoutId}`, 'DestinationMissing');
    return rows[0].destination;
  }

  return {
    /** `destination` only from sagas started before destinations moved to PostgreSQL. */
    async submitPayoutToProvider(input: { payoutId: string; amount: { minor_units: number; currency: string }; destination?: PayoutDestination }): Promise<ProviderPayout> {
      const destination = input.destination ?? (await destinationOf(input.payoutId));
      const response = await fetch(`${base}/v1/payouts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': input.payoutId },
        body: JSON.stringify({ reference: input.payoutId, amount: input.amount, destination }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      if (response.ok) return toProviderPayout(body as unknown as AggregatorPayoutBody);
      const error = (body.error ?? {}) as { code?: string; message?: string };
      // The aggregator already has this payout (same reference under another key): it is ours.
      if (response.status === 409 && error.code === 'duplicate_reference' && body.payout) return toProviderPayout(body.payout as AggregatorPayoutBody);
      if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
        throw ApplicationFailure.nonRetryable(`aggregator refused the payout: ${error.code ?? response.status} ${error.message ?? ''}`.trim(), 'ProviderRejected', {
          code: error.code ?? `HTTP_${response.status}`,
        });
      }
      throw ApplicationFailure.retryable(`aggregator answered ${response.status} ${error.code ?? ''}`.trim(), 'ProviderUnavailable');
    },

    /** The aggregator's current view of the payout; undefined when it has never seen it. */
    async fetchProviderPayout(input: { payoutId: string }): Promise<ProviderPayout | undefined> {
      const response = await fetch(`${base}/v1/payouts?reference=${encodeURIComponent(input.payoutId)}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      if (response.status === 404) return undefined;
      if (!response.ok) throw ApplicationFailure.retryable(`aggregator status answered ${response.status}`, 'ProviderUnavailable');
      return toProviderPayout((await response.json()) as AggregatorPayoutBody);
    },
  };
}
