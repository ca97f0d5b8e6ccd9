import { z } from 'zod';

/** Every input of the sandbox, validated with zod. Unknown fields are refused so platform typos surface here. */

export const idempotencyKeySchema = z.string().regex(/^[\x20-\x7E]{1,255}$/, 'must be 1-255 printable ASCII characters');

const reference = z.string().regex(/^[\x20-\x7E]{1,255}$/, 'must be 1-255 printable ASCII characters');
const code = z.string().regex(/^[a-z0-9_]{1,64}$/, 'must be 1-64 characters of a-z, 0-9 and _');
const durationMs = z.number().int().min(0).max(3_600_000);

export const moneySchema = z.strictObject({
  minor_units: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be 3 uppercase letters'),
});

export const destinationSchema = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('bank_transfer'), iban: z.string().min(1).max(64) }),
  z.strictObject({ method: z.literal('card'), token: z.string().min(1).max(255) }),
  z.strictObject({ method: z.literal('ewallet'), wallet_id: z.string().min(1).max(255) }),
]);

const metadata = z.record(z.string(), z.unknown());

export const payoutRequestSchema = z.strictObject({
  reference,
  amount: moneySchema,
  destination: destinationSchema,
  metadata: metadata.optional(),
});
export type PayoutRequest = z.infer<typeof payoutRequestSchema>;

export const depositRequestSchema = z.strictObject({
  reference,
  amount: moneySchema,
  metadata: metadata.optional(),
});
export type DepositRequest = z.infer<typeof depositRequestSchema>;

export const referenceQuerySchema = z.strictObject({ reference });
export const eventsQuerySchema = z.strictObject({ reference: reference.optional() });
export const idParamsSchema = z.strictObject({ id: z.string().min(1).max(100) });
export const referenceParamsSchema = z.strictObject({ reference });

const isoDateTime = z.iso.datetime({ offset: true });
export const settlementReportQuerySchema = z
  .strictObject({ since: isoDateTime, until: isoDateTime.optional() })
  .refine((q) => q.until === undefined || Date.parse(q.since) <= Date.parse(q.until), { message: 'since must not be after until' });

export const resolvePayoutSchema = z.strictObject({
  outcome: z.enum(['settle', 'fail', 'return']),
  failure_code: code.optional(),
  return_reason: code.optional(),
  /** false: change the status silently, as a provider that never calls back would. */
  send_webhook: z.boolean().default(true),
});
export type ResolvePayout = z.infer<typeof resolvePayoutSchema>;

export const resolveDepositSchema = z.strictObject({
  outcome: z.enum(['succeed', 'fail']),
  failure_code: code.optional(),
  send_webhook: z.boolean().default(true),
});
export type ResolveDeposit = z.infer<typeof resolveDepositSchema>;

/** A chargeback of a succeeded deposit (its full amount); repeated on a reversed one, it changes and sends nothing. */
export const reverseDepositSchema = z.strictObject({
  reason: code.default('chargeback'),
  /** false: reverse silently (no deposit.reversed webhook); the status endpoint and the report still show it. */
  send_webhook: z.boolean().default(true),
});
export type ReverseDeposit = z.infer<typeof reverseDepositSchema>;

/** The checkout page's secret (from the deposit's checkout_url) and the player's choice there. */
const checkoutSecret = z.string().regex(/^[0-9a-f]{32}$/);
export const checkoutQuerySchema = z.strictObject({ secret: checkoutSecret });
export const checkoutActionSchema = z.strictObject({ secret: checkoutSecret, outcome: z.enum(['succeed', 'fail']) });

/**
 * Scripted outcomes. `callback_delay_ms` (every scenario) overrides the server's default delay before the
 * outcome; the other parameters belong to their scenario.
 *
 * `reverse_after_ms` (deposits only; settle, never_callback, duplicate_callback, slow, error_then_ok): once
 * the deposit has succeeded, it is reversed (charged back, reason `chargeback`) that many ms later, announced
 * as the success was: a deposit.reversed webhook (twice for duplicate_callback, plus a distinct id with
 * also_distinct_id; none for never_callback). Nothing is reversed when the deposit fails. A payout whose
 * scenario names it is refused (400 invalid_scenario).
 */
const common = { callback_delay_ms: durationMs.optional() };
/** Deposits only: reversed (chargeback) this many ms after succeeding, see above. */
const reversal = { reverse_after_ms: durationMs.optional() };
const finalOutcome = z.enum(['settle', 'fail']);

export const scenarioSchema = z.discriminatedUnion('scenario', [
  z.strictObject({ scenario: z.literal('settle'), ...reversal, ...common }),
  z.strictObject({ scenario: z.literal('fail'), failure_code: code.optional(), ...common }),
  z.strictObject({ scenario: z.literal('never_callback'), outcome: finalOutcome.optional(), failure_code: code.optional(), ...reversal, ...common }),
  z.strictObject({ scenario: z.literal('stay_pending'), ...common }),
  z.strictObject({
    scenario: z.literal('duplicate_callback'),
    outcome: finalOutcome.optional(),
    failure_code: code.optional(),
    /** Besides the same event twice, a third delivery: same content under a new event id. */
    also_distinct_id: z.boolean().optional(),
    ...reversal,
    ...common,
  }),
  z.strictObject({ scenario: z.literal('out_of_order'), return_reason: code.optional(), return_delay_ms: durationMs.optional(), ...common }),
  z.strictObject({ scenario: z.literal('return_after_settlement'), return_reason: code.optional(), return_delay_ms: durationMs.optional(), ...common }),
  z.strictObject({ scenario: z.literal('slow'), delay_ms: durationMs.optional(), ...reversal, ...common }),
  z.strictObject({ scenario: z.literal('error_then_ok'), fail_attempts: z.number().int().min(1).max(100).optional(), ...reversal, ...common }),
  z.strictObject({ scenario: z.literal('reject'), ...common }),
  /**
   * Payouts only. The payout is created and proceeds as `settle`, but the submission is answered with `status`
   * (default 500): `{error:{code:'internal_error'}}` for 5xx, `{error:{code:'invalid_request'}}` for 4xx. So are
   * the next submissions with that reference (same Idempotency-Key or not), up to error_attempts in all
   * (default: every one); after that, the usual answers (the idempotent replay, or 409 duplicate_reference).
   */
  z.strictObject({
    scenario: z.literal('accept_then_error'),
    status: z.number().int().min(400).max(599).optional(),
    error_attempts: z.number().int().min(1).max(100).optional(),
    ...common,
  }),
]);
export type Scenario = z.infer<typeof scenarioSchema>;
export type ScenarioName = Scenario['scenario'];

/** POST /sandbox/outage: `off` ends an outage; `error`/`timeout` start one, until `off` or for duration_ms. */
export const outageRequestSchema = z
  .strictObject({ mode: z.enum(['error', 'timeout', 'off']), duration_ms: z.number().int().min(1).max(3_600_000).optional() })
  .refine((body) => body.mode !== 'off' || body.duration_ms === undefined, { message: 'duration_ms is for error and timeout only', path: ['duration_ms'] });
export type OutageRequest = z.infer<typeof outageRequestSchema>;

/** Human-readable zod issues for the error message. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message)).join('; ');
}
