/** What every saga's contract shares: money as JSON carries it, and the code of a reused Idempotency-Key. */

/** Money in JSON: integer minor units of an ISO 4217 currency. */
export interface MoneyAmount {
  minor_units: number;
  currency: string;
}

/** The same Idempotency-Key sent with another request: refused by the saga's update validator. */
export const IDEMPOTENCY_MISMATCH = 'IDEMPOTENCY_MISMATCH';
