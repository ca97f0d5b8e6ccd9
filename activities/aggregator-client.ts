import { ApplicationFailure } from '@temporalio/common';

/**
 * HTTP calls to the payment aggregator (the sandbox in development), shared by the payout, deposit and
 * reconciliation activities. Network errors and 5xx are thrown as retryable (ProviderUnavailable); a
 * submission's other 4xx (but 408 and 429) is a final refusal (ProviderRejected).
 */
export type AggregatorResource = 'payouts' | 'deposits';

const DEFAULT_TIMEOUT_MS = 10_000;

/** The bearer token the aggregator requires (SANDBOX_API_TOKEN); set once per worker process by createActivities. */
let aggregatorToken: string | undefined;
export function useAggregatorToken(token: string | undefined): void {
  aggregatorToken = token;
}
/** The Authorization header every call to the aggregator carries (none when no token is configured). */
export function aggregatorAuthorization(): Record<string, string> {
  return aggregatorToken ? { authorization: `Bearer ${aggregatorToken}` } : {};
}

export function aggregatorBase(providerUrl: string): string {
  return providerUrl.replace(/\/$/, '');
}

/**
 * Submits with the platform's id as both Idempotency-Key and reference, so a retry after a timeout finds
 * the first submission instead of paying twice. Returns the aggregator's object.
 */
export async function submitToAggregator(base: string, resource: AggregatorResource, reference: string, body: Record<string, unknown>): Promise<unknown> {
  const noun = resource === 'payouts' ? 'payout' : 'deposit';
  const response = await fetch(`${base}/v1/${resource}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': reference, ...aggregatorAuthorization() },
    body: JSON.stringify({ reference, ...body }),
    signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS),
  });
  const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (response.ok) return answer;
  const error = (answer.error ?? {}) as { code?: string; message?: string };
  // The aggregator already has it (same reference under another key): it is ours.
  if (response.status === 409 && error.code === 'duplicate_reference' && answer[noun]) return answer[noun];
  if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
    throw ApplicationFailure.nonRetryable(`aggregator refused the ${noun}: ${error.code ?? response.status} ${error.message ?? ''}`.trim(), 'ProviderRejected', {
      code: error.code ?? `HTTP_${response.status}`,
    });
  }
  throw ApplicationFailure.retryable(`aggregator answered ${response.status} ${error.code ?? ''}`.trim(), 'ProviderUnavailable');
}

/** The aggregator's object for a reference; undefined when it has never seen it. */
export async function findAtAggregator(base: string, resource: AggregatorResource, reference: string, what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<unknown> {
  const response = await fetch(`${base}/v1/${resource}?reference=${encodeURIComponent(reference)}`, { headers: aggregatorAuthorization(), signal: AbortSignal.timeout(timeoutMs) });
  if (response.status === 404) return undefined;
  if (!response.ok) throw ApplicationFailure.retryable(`aggregator ${what} answered ${response.status}`, 'ProviderUnavailable');
  return response.json();
}
