import type { RouteDoc } from '../docs/openapi';
import { createDepositBody, depositAcceptedBody, depositBody } from './deposits.schemas';

export const depositRoutes: RouteDoc[] = [
  {
    method: 'post',
    path: '/v1/deposits',
    summary: 'Request a deposit: one saga per account-scoped Idempotency-Key; the account is credited when the provider confirms',
    tag: 'deposits',
    auth: 'any',
    idempotencyKey: true,
    body: createDepositBody,
    responses: {
      201: { description: 'The provider created the payment intent (status PENDING); the player pays at checkout_url', schema: depositAcceptedBody },
      202: { description: 'Accepted; the intent was not created within the sync deadline. Poll GET /v1/deposits/{deposit_id}', schema: depositAcceptedBody },
      400: { description: 'VALIDATION_FAILED, MALFORMED_JSON, IDEMPOTENCY_KEY_MISSING, IDEMPOTENCY_KEY_INVALID, IDEMPOTENCY_KEY_DUPLICATED' },
      403: { description: 'A player may deposit only into its own account' },
      404: { description: 'ACCOUNT_NOT_FOUND' },
      413: { description: 'Body too large' },
      415: { description: 'Not application/json' },
      422: { description: 'CURRENCY_MISMATCH, UNKNOWN_CURRENCY, INVALID_METADATA (metadata or reference; nothing written), IDEMPOTENCY_MISMATCH (also for the same key with other metadata or reference), LIMIT_EXCEEDED (over DEPOSIT_MAX_AMOUNT: nothing written; over the daily total or balance ceiling: status FAILED), DEPOSIT_REFUSED (the provider refused the intent; status FAILED)' },
      429: { description: 'RATE_LIMITED (the account or token subject is over its per-minute limit) or OVERLOADED (the platform is at capacity); nothing was recorded: retry after Retry-After with the same Idempotency-Key' },
      503: { description: 'READ_ONLY, SERVICE_UNAVAILABLE; retry after Retry-After with the same Idempotency-Key' },
    },
  },
  {
    method: 'get',
    path: '/v1/deposits/:depositId',
    summary: 'Current status and timeline of a deposit',
    tag: 'deposits',
    auth: 'any',
    responses: { 200: { description: 'The deposit', schema: depositBody }, 404: { description: 'DEPOSIT_NOT_FOUND' } },
  },
];
