import { z } from 'zod';

/**
 * RFC 9457 problem details with a stable machine `code`. Every error the API returns is one of these,
 * and every code is listed here so clients and docs can rely on it.
 */
export const PROBLEM_CODES = {
  VALIDATION_FAILED: { status: 400, title: 'The request is not valid' },
  MALFORMED_JSON: { status: 400, title: 'The request body is not valid JSON' },
  IDEMPOTENCY_KEY_MISSING: { status: 400, title: 'Idempotency-Key header is required' },
  IDEMPOTENCY_KEY_INVALID: { status: 400, title: 'Idempotency-Key must be 1-255 printable ASCII characters' },
  IDEMPOTENCY_KEY_DUPLICATED: { status: 400, title: 'Exactly one Idempotency-Key header is allowed' },
  UNAUTHENTICATED: { status: 401, title: 'A valid bearer token is required' },
  WEBHOOK_SIGNATURE_INVALID: { status: 401, title: 'The webhook signature is not valid' },
  FORBIDDEN: { status: 403, title: 'This token may not do that' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  ACCOUNT_NOT_FOUND: { status: 404, title: 'No such account' },
  PAYOUT_NOT_FOUND: { status: 404, title: 'No such payout' },
  DEPOSIT_NOT_FOUND: { status: 404, title: 'No such deposit' },
  RECONCILIATION_NOT_FOUND: { status: 404, title: 'No reconciliation run has finished yet' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Content-Type must be application/json' },
  IDEMPOTENCY_MISMATCH: { status: 422, title: 'This Idempotency-Key was used with a different request' },
  CURRENCY_MISMATCH: { status: 422, title: 'The currency does not match the account' },
  UNKNOWN_CURRENCY: { status: 422, title: 'Unknown or unsupported currency' },
  INSUFFICIENT_FUNDS: { status: 422, title: 'Insufficient funds' },
  ACCOUNT_NOT_ACTIVE: { status: 422, title: 'The account is frozen' },
  OUTSTANDING_DEBT: { status: 422, title: 'The account owes a reversed deposit; it can withdraw once that is repaid' },
  INVALID_DESTINATION: { status: 422, title: 'The payout destination is not valid' },
  INVALID_METADATA: { status: 422, title: 'The metadata or reference is not valid' },
  DESTINATION_NOT_SUPPORTED: { status: 422, title: 'No payment provider takes payouts of this method and currency' },
  LIMIT_EXCEEDED: { status: 422, title: 'The request exceeds a limit' },
  VELOCITY_LIMIT_EXCEEDED: { status: 422, title: 'Too many payouts in a short time' },
  PAYOUT_DECLINED: { status: 422, title: 'The payout was declined' },
  DEPOSIT_REFUSED: { status: 422, title: 'The provider refused the deposit' },
  WEBHOOK_EVENT_CONFLICT: { status: 409, title: 'This webhook event id was received before with a different body' },
  RATE_LIMITED: { status: 429, title: 'Too many requests; retry after the time given in Retry-After' },
  OVERLOADED: { status: 429, title: 'The platform is at capacity right now; retry after the time given in Retry-After' },
  PAYOUTS_PAUSED: { status: 503, title: 'New payouts are paused by the operator; deposits and payouts in flight go on' },
  READ_ONLY: { status: 503, title: 'The platform is read-only for now; nothing can be changed' },
  SAGA_UNAVAILABLE: { status: 503, title: 'The saga cannot take actions right now; staff are alerted' },
  PAYOUT_NOT_CANCELLABLE: { status: 409, title: 'The payout can no longer be cancelled' },
  REVERSE_WITHDRAWAL_FORBIDDEN: { status: 403, title: 'A withdrawal, once requested, cannot be reversed by the player' },
  PAYOUT_NOT_RESOLVABLE: { status: 409, title: 'The payout is not awaiting its provider' },
  PAYOUT_POLL_IGNORED: { status: 409, title: 'This payout’s saga does not poll its provider in its current state' },
  PAYOUT_NOT_REVIEWABLE: { status: 409, title: 'The payout is not pending review' },
  DEPOSIT_NOT_REVERSIBLE: { status: 409, title: 'The deposit cannot be charged back' },
  APPROVAL_NOT_FOUND: { status: 404, title: 'No such approval request' },
  APPROVER_IS_REQUESTER: { status: 403, title: 'A request must be decided by another staff member than its requester' },
  APPROVAL_DECIDED: { status: 409, title: 'The approval request has already been decided' },
  APPROVAL_PENDING: { status: 409, title: 'An approval request for this action is already open' },
  APPROVAL_STALE: { status: 409, title: 'What the request was made for has changed since' },
  DEAD_LETTER_RESOLVED: { status: 409, title: 'The dead letter has already been replayed or skipped' },
  OUTBOX_ENDPOINT_NO_SECRET: { status: 409, title: 'The outbox endpoint has no signing secret yet; rotate its secret first' },
  ACCOUNT_EXISTS_WITH_DIFFERENT_CURRENCY: { status: 409, title: 'The account exists with a different currency' },
  ACCOUNT_ID_TAKEN: { status: 409, title: 'The account id is in use by a system account' },
  SERVICE_UNAVAILABLE: { status: 503, title: 'A dependency is unavailable' },
  INTERNAL_ERROR: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof PROBLEM_CODES;

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: ProblemCode;
  detail?: string;
  instance?: string;
  request_id?: string;
  errors?: { path: string; message: string }[];
  [extension: string]: unknown;
}

/** Seconds a client should wait before retrying, sent as Retry-After on every 429 and 503. */
export const DEFAULT_RETRY_AFTER_SECONDS: Record<number, number> = { 429: 1, 503: 5 };

export class ProblemError extends Error {
  readonly status: number;
  constructor(
    readonly code: ProblemCode,
    readonly detail?: string,
    readonly extensions: Record<string, unknown> = {},
    /** Overrides DEFAULT_RETRY_AFTER_SECONDS (e.g. the time left in a rate-limit window). */
    readonly retryAfterSeconds?: number,
  ) {
    super(detail ?? PROBLEM_CODES[code].title);
    this.status = PROBLEM_CODES[code].status;
  }
}

export function problemBody(code: ProblemCode, detail?: string, extensions: Record<string, unknown> = {}): ProblemBody {
  const { status, title } = PROBLEM_CODES[code];
  return { type: `/problems/${code.toLowerCase()}`, title, status, code, ...(detail ? { detail } : {}), ...extensions };
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Parses input with a zod schema or throws a 400 VALIDATION_FAILED naming each bad field. */
export function parseOrProblem<T extends z.ZodType>(schema: T, input: unknown, where: 'body' | 'query' | 'path' = 'body'): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  // A refinement may name a more precise code (e.g. UNKNOWN_CURRENCY); it wins when it is the only problem.
  const precise = new Set(result.error.issues.map((issue) => (issue as { params?: { problem?: ProblemCode } }).params?.problem));
  const [only] = precise;
  const code: ProblemCode = precise.size === 1 && only ? only : 'VALIDATION_FAILED';
  throw new ProblemError(code, `The ${where} has ${result.error.issues.length} problem(s)`, {
    errors: result.error.issues.map((issue) => ({ path: [where, ...issue.path.map(String)].join('.'), message: issue.message })),
  });
}
