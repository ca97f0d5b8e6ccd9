import type { RouteDoc } from '../docs/openapi';
import { depositHistoryBody, depositHistoryQuery, payoutHistoryBody, payoutHistoryQuery, statementBody, statementQuery } from './listings.schemas';

const refusals = {
  400: { description: 'VALIDATION_FAILED: a bad filter, limit or cursor (a cursor is the next_cursor of this listing, unchanged)' },
  403: { description: "FORBIDDEN: a player token may read only its own account's" },
  404: { description: 'ACCOUNT_NOT_FOUND' },
};

export const listingRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/accounts/:accountId/payouts',
    query: payoutHistoryQuery,
    summary: "An account's payouts, newest first (cursor pagination), from the read model: the fields GET /v1/payouts/{payout_id} gives the same reader, without the timeline",
    tag: 'accounts',
    auth: 'any',
    responses: { 200: { description: 'A page of payouts; next_cursor null on the last', schema: payoutHistoryBody }, ...refusals },
  },
  {
    method: 'get',
    path: '/v1/accounts/:accountId/deposits',
    query: depositHistoryQuery,
    summary: "An account's deposits, newest first (cursor pagination), from the read model: the fields GET /v1/deposits/{deposit_id} gives the same reader, without the timeline",
    tag: 'accounts',
    auth: 'any',
    responses: { 200: { description: 'A page of deposits; next_cursor null on the last', schema: depositHistoryBody }, ...refusals },
  },
  {
    method: 'get',
    path: '/v1/accounts/:accountId/statement',
    query: statementQuery,
    summary:
      "An account's ledger movements, oldest first, each with its effect and the balance after it. The running balance is the available balance (posted − held, as GET /v1/accounts/{id}/balance): a payout's hold lowers it when the money is held; posted and held are given too",
    tag: 'accounts',
    auth: 'any',
    responses: {
      200: { description: 'A page of movements; next_cursor null on the last', schema: statementBody },
      ...refusals,
      422: { description: 'CURRENCY_MISMATCH (not the account’s currency), UNKNOWN_CURRENCY' },
    },
  },
];
