import type { RouteDoc } from '../docs/openapi';
import { cancelPayoutBody, createPayoutBody, payoutAcceptedBody, payoutBody } from './payouts.schemas';

export const payoutRoutes: RouteDoc[] = [
  {
    method: 'post',
    path: '/v1/payouts',
    summary: 'Request a payout (withdrawal): one saga per account-scoped Idempotency-Key',
    tag: 'payouts',
    auth: 'any',
    idempotencyKey: true,
    body: createPayoutBody,
    responses: {
      201: { description: 'Authorized and the money held (status HELD)', schema: payoutAcceptedBody },
      202: { description: 'Accepted; the decision was not known within the sync deadline. Poll GET /v1/payouts/{payout_id}', schema: payoutAcceptedBody },
      400: { description: 'VALIDATION_FAILED, MALFORMED_JSON, IDEMPOTENCY_KEY_MISSING, IDEMPOTENCY_KEY_INVALID, IDEMPOTENCY_KEY_DUPLICATED' },
      403: { description: 'A player may pay out only from its own account' },
      404: { description: 'ACCOUNT_NOT_FOUND' },
      413: { description: 'Body too large' },
      415: { description: 'Not application/json' },
      422: { description: 'INSUFFICIENT_FUNDS, LIMIT_EXCEEDED, VELOCITY_LIMIT_EXCEEDED, CURRENCY_MISMATCH, UNKNOWN_CURRENCY, INVALID_DESTINATION, INVALID_METADATA (metadata or reference; nothing written), IDEMPOTENCY_MISMATCH (also for the same key with other metadata or reference)' },
      429: { description: 'RATE_LIMITED (the account or token subject is over its per-minute limit) or OVERLOADED (the platform is at capacity); nothing was recorded: retry after Retry-After with the same Idempotency-Key' },
      503: { description: 'PAYOUTS_PAUSED (new payouts paused by the operator), READ_ONLY, SERVICE_UNAVAILABLE; retry after Retry-After with the same Idempotency-Key' },
    },
  },
  {
    method: 'get',
    path: '/v1/payouts/:payoutId',
    summary: 'Current status and timeline of a payout',
    tag: 'payouts',
    auth: 'any',
    responses: { 200: { description: 'The payout', schema: payoutBody }, 404: { description: 'PAYOUT_NOT_FOUND' } },
  },
  {
    method: 'post',
    path: '/v1/payouts/:payoutId/cancel',
    summary: 'A player cancels its payout before it is submitted to the provider (its hold is voided), where reverse withdrawals are allowed (REVERSE_WITHDRAWALS)',
    tag: 'payouts',
    auth: ['player', 'service'],
    body: cancelPayoutBody,
    responses: {
      200: { description: 'Cancelled', schema: payoutBody },
      403: { description: 'REVERSE_WITHDRAWAL_FORBIDDEN: reverse withdrawals are forbidden (the default); staff may cancel at /v1/ops/payouts/{payoutId}/cancel' },
      404: { description: 'PAYOUT_NOT_FOUND' },
      409: { description: 'PAYOUT_NOT_CANCELLABLE' },
    },
  },
];
