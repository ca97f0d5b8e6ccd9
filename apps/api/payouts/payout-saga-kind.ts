import type { z } from 'zod';
import { authorizationUpdate, maskDestination, PAYOUT_SAGA_TYPE, payoutStatusQuery, type AuthorizationDecision, type PayoutInput, type PayoutView } from '../../../contracts/payout';
import { startSearchAttributes } from '../../../contracts/search-attributes';
import type { StoredAnswer } from '../sagas/idempotency';
import { problemBody, type ProblemCode } from '../common/problem';
import { operatorFieldsOf } from '../common/operator-metadata';
import type { SagaKind } from '../sagas/idempotent-start';
import type { CreatePayoutRequest, payoutAcceptedBody } from './payouts.schemas';

/** A row of the payouts read model. */
export interface PayoutRow {
  payout_id: string;
  account_id: string;
  amount_minor: number;
  currency: string;
  destination_method: PayoutView['destination']['method'];
  destination_last4: string;
  provider: string;
  status: PayoutView['status'];
  provider_payout_id: string | null;
  decline_code: string | null;
  failure_code: string | null;
  stuck: boolean;
  requested_at: Date;
  updated_at: Date;
}

/** The payout saga as `POST /v1/payouts` starts it: answered 201 once the funds are held. */
export const PAYOUT_SAGA: SagaKind<CreatePayoutRequest, AuthorizationDecision, PayoutView, PayoutInput, 'payoutId'> = {
  operation: 'payout',
  idPrefix: 'po',
  workflowType: PAYOUT_SAGA_TYPE,
  idField: 'payoutId',
  decisionUpdate: authorizationUpdate,
  searchAttributes: startSearchAttributes,
  statusQuery: payoutStatusQuery,
  readModel: { table: 'payouts', idColumn: 'payout_id', toView: (row) => payoutViewOfRow(row as unknown as PayoutRow) },
  decisionOf(view) {
    if (view.status === 'DECLINED') return { outcome: 'declined', status: 'DECLINED', code: view.declineCode ?? 'DECLINED', detail: 'declined at authorization' };
    if (view.status === 'REQUESTED' || view.status === 'AUTHORIZED') return undefined;
    // The first answer came once the money was held, or held for review.
    return { outcome: 'held', status: view.timeline.some((entry) => entry.status === 'PENDING_REVIEW') ? 'PENDING_REVIEW' : 'HELD', holdTransferId: 0 };
  },
  answer(decision, request, payoutId, requestId): StoredAnswer {
    if (!decision) return { status: 202, body: JSON.stringify(summary(request, payoutId, 'REQUESTED')) };
    if (decision.outcome === 'held') return { status: 201, body: JSON.stringify(summary(request, payoutId, decision.status === 'PENDING_REVIEW' ? 'PENDING_REVIEW' : 'HELD')) };
    const code = DECLINE_PROBLEMS[decision.code] ?? 'PAYOUT_DECLINED';
    const problem = { ...problemBody(code, decision.detail, { payout_id: payoutId, payout_status: 'DECLINED' }), instance: '/v1/payouts', request_id: requestId };
    return { status: problem.status, body: JSON.stringify(problem) };
  },
};

/** A payout from its read-model row alone (past Temporal's retention, or while its saga cannot answer). */
export function payoutViewOfRow(row: PayoutRow): PayoutView {
  return {
    payoutId: row.payout_id,
    accountId: row.account_id,
    amount: { minor_units: row.amount_minor, currency: row.currency },
    destination: { method: row.destination_method, last4: row.destination_last4 },
    provider: row.provider,
    status: row.status,
    ...(row.provider_payout_id ? { providerPayoutId: row.provider_payout_id } : {}),
    ...(row.failure_code ? { failureCode: row.failure_code } : {}),
    ...(row.decline_code ? { declineCode: row.decline_code } : {}),
    cancellable: false,
    stuck: row.stuck,
    requestedAt: row.requested_at.toISOString(),
    timeline: [{ at: row.updated_at.toISOString(), status: row.status, note: 'read_model', staffNote: 'from the read model (the saga itself could not be read, or its history is no longer retained)' }],
  };
}

const DECLINE_PROBLEMS: Record<string, ProblemCode> = {
  INSUFFICIENT_FUNDS: 'INSUFFICIENT_FUNDS',
  ACCOUNT_NOT_FOUND: 'ACCOUNT_NOT_FOUND',
  ACCOUNT_NOT_ACTIVE: 'ACCOUNT_NOT_ACTIVE',
  OUTSTANDING_DEBT: 'OUTSTANDING_DEBT',
  CURRENCY_MISMATCH: 'CURRENCY_MISMATCH',
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  VELOCITY_LIMIT_EXCEEDED: 'VELOCITY_LIMIT_EXCEEDED',
};

function summary(request: CreatePayoutRequest, payoutId: string, status: z.infer<typeof payoutAcceptedBody>['status']): z.infer<typeof payoutAcceptedBody> {
  return { payout_id: payoutId, account_id: request.account_id, amount: request.amount, destination: maskDestination(request.destination), status, ...operatorFieldsOf(request) };
}
