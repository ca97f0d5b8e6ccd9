import { z } from 'zod';
import { ACCOUNT_ID_PATTERN } from '../../../ledger';
import { currencySchema } from '../common/money';

export const accountIdSchema = z
  .string()
  .regex(ACCOUNT_ID_PATTERN, 'account ids are 1-128 characters of A-Z a-z 0-9 . _ : -')
  .refine((id) => !id.startsWith('system:'), 'the system: prefix is reserved');

export const createAccountBody = z.strictObject({
  account_id: accountIdSchema,
  currency: currencySchema,
});

export const accountBody = z.object({
  account_id: z.string(),
  currency: z.string(),
  created_at: z.string().describe('ISO 8601'),
});

export const balanceBody = z.object({
  account_id: z.string(),
  currency: z.string(),
  available: z.number().int().describe('posted − held, minor units'),
  held: z.number().int().describe('pending debits (payout holds), minor units'),
  posted: z.number().int().describe('posted credits − posted debits, minor units'),
});
