import { z } from 'zod';
import { timelineEntrySchema } from '../common/timeline';
import { workflowTaskFailureBody } from '../ops/workflow-task-failures';
import { DEPOSIT_STATUSES } from '../../../contracts/deposit';
import { accountIdSchema } from '../accounts/accounts.schemas';
import { moneySchema } from '../common/money';
import { operatorFieldsBody, operatorFieldsInput } from '../common/operator-metadata';

export const createDepositBody = z.strictObject({
  account_id: accountIdSchema,
  amount: moneySchema,
  ...operatorFieldsInput,
});
export type CreateDepositRequest = z.infer<typeof createDepositBody>;

export const depositIdSchema = z.string().regex(/^dp_[0-9a-f]{32}$/, 'a deposit id (dp_ and 32 hex digits)');

const moneyBody = z.object({ minor_units: z.number().int(), currency: z.string() });

/** POST's answer: 201 PENDING with the provider's checkout_url, or 202 REQUESTED when the intent was not created in time. */
export const depositAcceptedBody = z.object({
  deposit_id: z.string(),
  account_id: z.string(),
  amount: moneyBody,
  status: z.enum(DEPOSIT_STATUSES),
  checkout_url: z.string().optional().describe('Where the player pays; present once the provider has created the payment intent'),
  ...operatorFieldsBody,
});

export const depositBody = z.object({
  deposit_id: z.string(),
  account_id: z.string(),
  amount: moneyBody,
  provider: z.string(),
  status: z.enum(DEPOSIT_STATUSES),
  stuck: z.boolean(),
  checkout_url: z.string().optional(),
  provider_deposit_id: z.string().optional(),
  failure_code: z.string().optional(),
  requested_at: z.string(),
  timeline: z.array(timelineEntrySchema(DEPOSIT_STATUSES)),
  workflow_task_failure: workflowTaskFailureBody.optional(),
  ...operatorFieldsBody,
});
