import type { z } from 'zod';
import { DEPOSIT_SAGA_TYPE, depositStatusQuery, intentUpdate, type DepositInput, type DepositView, type IntentDecision } from '../../../contracts/deposit';
import { startSearchAttributes } from '../../../contracts/search-attributes';
import type { StoredAnswer } from '../sagas/idempotency';
import { problemBody } from '../common/problem';
import { operatorFieldsOf } from '../common/operator-metadata';
import type { SagaKind } from '../sagas/idempotent-start';
import type { CreateDepositRequest, depositAcceptedBody } from './deposits.schemas';

/** A row of the deposits read model. */
export interface DepositRow {
  deposit_id: string;
  account_id: string;
  amount_minor: string | number;
  currency: string;
  provider: string;
  status: DepositView['status'];
  checkout_url: string | null;
  provider_deposit_id: string | null;
  failure_code: string | null;
  stuck: boolean;
  requested_at: Date;
  updated_at: Date;
}

/** The deposit saga as `POST /v1/deposits` starts it: answered 201 with the provider's checkout. */
export const DEPOSIT_SAGA: SagaKind<CreateDepositRequest, IntentDecision, DepositView, DepositInput, 'depositId'> = {
  operation: 'deposit',
  idPrefix: 'dp',
  workflowType: DEPOSIT_SAGA_TYPE,
  idField: 'depositId',
  decisionUpdate: intentUpdate,
  searchAttributes: startSearchAttributes,
  statusQuery: depositStatusQuery,
  readModel: { table: 'deposits', idColumn: 'deposit_id', toView: (row) => depositViewOfRow(row as unknown as DepositRow) },
  decisionOf(view) {
    // The first answer was given when the intent was created, while the deposit was PENDING.
    if (view.checkoutUrl && view.providerDepositId) return { outcome: 'created', status: 'PENDING', checkoutUrl: view.checkoutUrl, providerDepositId: view.providerDepositId };
    if (view.status === 'FAILED') return { outcome: 'refused', status: 'FAILED', ...refusalOf(view.failureCode) };
    return undefined;
  },
  answer(decision, request, depositId, requestId): StoredAnswer {
    if (!decision) return { status: 202, body: JSON.stringify(summary(request, depositId, 'REQUESTED')) };
    if (decision.outcome === 'created') return { status: 201, body: JSON.stringify({ ...summary(request, depositId, decision.status), checkout_url: decision.checkoutUrl }) };
    // The platform's own limits are named as such; anything else was the provider's refusal.
    const code = decision.code === 'LIMIT_EXCEEDED' ? 'LIMIT_EXCEEDED' : 'DEPOSIT_REFUSED';
    const problem = {
      ...problemBody(code, decision.detail, { deposit_id: depositId, deposit_status: 'FAILED', failure_code: decision.code }),
      instance: '/v1/deposits',
      request_id: requestId,
    };
    return { status: problem.status, body: JSON.stringify(problem) };
  },
};

/** A deposit from its read-model row alone (while its saga cannot answer, or past Temporal's retention). */
export function depositViewOfRow(row: DepositRow): DepositView {
  return {
    depositId: row.deposit_id,
    accountId: row.account_id,
    amount: { minor_units: Number(row.amount_minor), currency: row.currency },
    provider: row.provider,
    status: row.status,
    ...(row.checkout_url ? { checkoutUrl: row.checkout_url } : {}),
    ...(row.provider_deposit_id ? { providerDepositId: row.provider_deposit_id } : {}),
    ...(row.failure_code ? { failureCode: row.failure_code } : {}),
    stuck: row.stuck,
    requestedAt: row.requested_at.toISOString(),
    timeline: [{ at: row.updated_at.toISOString(), status: row.status, note: 'read_model', staffNote: 'from the read model (the saga itself could not be read)' }],
  };
}

function summary(request: CreateDepositRequest, depositId: string, status: z.infer<typeof depositAcceptedBody>['status']): z.infer<typeof depositAcceptedBody> {
  return { deposit_id: depositId, account_id: request.account_id, amount: request.amount, status, ...operatorFieldsOf(request) };
}

/** A refusal rebuilt from a recorded failure code: the platform's limit, or the provider's refusal. */
function refusalOf(code: string | null | undefined): { code: string; detail: string } {
  return code === 'LIMIT_EXCEEDED' ? { code, detail: 'The deposit exceeds a limit' } : { code: code ?? 'provider_rejected', detail: 'refused by the provider' };
}
