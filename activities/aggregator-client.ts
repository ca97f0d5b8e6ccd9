import { ApplicationFailure } from '@temporalio/common';

/**
 * HTTP calls to the payment aggregator (the sandbox in development), shared by the payout, deposit and
 * reconciliation activities. Network errors and 5xx are thrown as retryable (ProviderUnavailable); a
 * submission's other 4xx (but 401, 403, 408 and 429) is a final refusal (ProviderRejected).
 */
export type AggregatorResource = 'payouts' | 'deposits';

const DEFAULT_TIMEOUT_MS = 10_000;

/** Where the aggregator is, and the headers every call to it carries (its bearer token, SANDBOX_API_TOKEN). */
export interface Aggregator {
  url: string;
  headers: Record<string, string>;
}

export function aggregatorAt(providerUrl: string, token?: string): Aggregator {
  return { url: providerUrl.replace(/\/$/, ''), headers: token ? { authorization: `Bearer ${token}` } : {} };
}

/**
 * Submits with the platform's id as both Idempotency-Key and reference, so a retry after a timeout finds
 * the first submission instead of paying twice. Returns the aggregator's object.
 */
export async function submitToAggregator(aggregator: Aggregator, resource: AggregatorResource, reference: string, body: Record<string, unknown>): Promise<unknown> {
  const noun = resource === 'payouts' ? 'payout' : 'deposit';
  const response = await fetch(`${aggregator.url}/v1/${resource}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': reference, ...aggregator.headers },
    body: JSON.stringify({ reference, ...body }),
    signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS),
  });
  const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (response.ok) return answer;
  const error = (answer.error ?? {}) as { code?: string; message?: string };
  // The aggregator already has it (same reference under another key): it is ours.
  if (response.status === 409 && error.code === 'duplicate_reference' && answer[noun]) return answer[noun];
  // 401/403 say our credentials are wrong, not that the payout is: waited out (and alerted), never final.
  if (response.status >= 400 && response.status < 500 && ![401, 403, 408, 429].includes(response.status)) {
    throw ApplicationFailure.nonRetryable(`aggregator refused the ${noun}: ${error.code ?? response.status} ${error.message ?? ''}`.trim(), 'ProviderRejected', {
      code: error.code ?? `HTTP_${response.status}`,
    });
  }
  throw ApplicationFailure.retryable(`aggregator answered ${response.status} ${error.code ?? ''}`.trim(), 'ProviderUnavailable');
}

/** The aggregator's object for a reference; undefined when it has never seen it. */
export async function findAtAggregator(aggregator: Aggregator, resource: AggregatorResource, reference: string, what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<unknown> {
  const response = await fetch(`${aggregator.url}/v1/${resource}?reference=${encodeURIComponent(reference)}`, { headers: aggregator.headers, signal: AbortSignal.timeout(timeoutMs) });
  if (response.status === 404) return undefined;
  if (!response.ok) throw ApplicationFailure.retryable(`aggregator ${what} answered ${response.status}`, 'ProviderUnavailable');
  return response.json();
}
