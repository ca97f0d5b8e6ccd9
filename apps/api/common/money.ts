import { z } from 'zod';
import { isKnownCurrency } from '../../../ledger';

/** ISO 4217 alphabetic code of a currency the ledger knows (with its minor-unit exponent). */
export const currencySchema = z
  .string()
  .regex(/^[A-Z]{3}$/, 'an ISO 4217 code: three upper-case letters')
  .refine(isKnownCurrency, { message: 'unknown or unsupported ISO 4217 currency', params: { problem: 'UNKNOWN_CURRENCY' } });

/** Money in JSON: integer minor units (never floats) of a known currency. */
export const moneySchema = z.strictObject({
  minor_units: z.number().int('minor_units must be an integer number of minor units').positive('minor_units must be positive').max(Number.MAX_SAFE_INTEGER, 'minor_units must be a safe integer'),
  currency: currencySchema,
});
