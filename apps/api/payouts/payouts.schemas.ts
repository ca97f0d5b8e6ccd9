import { z } from 'zod';
import { isValidIban, normalizeIban } from '../../../lib/iban';
import { accountIdSchema } from '../accounts/accounts.schemas';
import { moneySchema } from '../common/money';
import { operatorFieldsBody, operatorFieldsInput } from '../common/operator-metadata';
import { PAYOUT_STATUSES } from '../../../contracts/payout';
import { timelineEntrySchema } from '../common/timeline';
import { workflowTaskFailureBody } from '../ops/workflow-task-failures';

export const destinationSchema = z.discriminatedUnion('method', [
  z.strictObject({
    method: z.literal('bank_transfer'),
    iban: z
      .string()
      .max(42)
      .transform(normalizeIban)
      .refine(isValidIban, { message: 'not a valid IBAN (country, length, BBAN format and mod-97 checksum)', params: { problem: 'INVALID_DESTINATION' } }),
  }),
  z.strictObject({ method: z.literal('card'), token: z.string().regex(/^[A-Za-z0-9_:.-]{4,128}$/, 'a provider card token') }),
  z.strictObject({ method: z.literal('ewallet'), wallet_id: z.string().regex(/^[A-Za-z0-9_:.@-]{4,128}$/, 'an e-wallet id') }),
]);

export const createPayoutBody = z.strictObject({
  account_id: accountIdSchema,
  amount: moneySchema,
  destination: destinationSchema,
  ...operatorFieldsInput,
});
export type CreatePayoutRequest = z.infer<typeof createPayoutBody>;

export const payoutIdSchema = z.string().regex(/^po_[0-9a-f]{32}$/, 'a payout id (po_ and 32 hex digits)');

export const cancelPayoutBody = z.strictObject({ reason: z.string().min(1).max(500).optional() });

const moneyBody = z.object({ minor_units: z.number().int(), currency: z.string() });
export const payoutBody = z.object({
  payout_id: z.string(),
  account_id: z.string(),
  amount: moneyBody,
  destination: z.object({ method: z.string(), last4: z.string() }),
  provider: z.string(),
  status: z.enum(PAYOUT_STATUSES),
  cancellable: z.boolean(),
  stuck: z.boolean(),
  provider_payout_id: z.string().optional(),
  failure_code: z.string().optional(),
  return_reason: z.string().optional(),
  decline_code: z.string().optional(),
  requested_at: z.string(),
  timeline: z.array(timelineEntrySchema(PAYOUT_STATUSES)),
  review: z
    .object({ reason: z.enum(['amount', 'LIMIT_EXCEEDED', 'VELOCITY_LIMIT_EXCEEDED']), dual_approval: z.boolean() })
    .optional()
    .describe('staff tokens only: why the payout is held for review, and whether its approval takes two staff members'),
  workflow_task_failure: workflowTaskFailureBody.optional(),
  ...operatorFieldsBody,
});

export const payoutAcceptedBody = z.object({
  payout_id: z.string(),
  account_id: z.string(),
  amount: moneyBody,
  destination: z.object({ method: z.string(), last4: z.string() }),
  status: z.enum(PAYOUT_STATUSES),
  ...operatorFieldsBody,
});
