import { z } from 'zod';

/**
 * Cursor pagination of the listings. A cursor is opaque to clients: base64url of a small JSON naming the
 * listing it belongs to (and the account, where the listing is an account's) and the last row given, as a
 * keyset position: (requested_at, id) newest first for payouts and deposits, the transfer id for a statement.
 * Keyset, not offset: rows inserted while a client pages (newer ones, above its position) neither repeat nor
 * push rows past it, so every row present throughout is seen exactly once.
 */
export type CursorScope = 'account_payouts' | 'account_deposits' | 'account_statement' | 'ops_payouts';

const keysetPosition = z.strictObject({
  /** requested_at to the microsecond (what PostgreSQL keeps; a JavaScript Date would drop the last three digits). */
  at: z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/),
  id: z.string().min(1).max(64),
});
const transferPosition = z.strictObject({ transfer_id: z.number().int().positive().max(Number.MAX_SAFE_INTEGER) });
const cursorBody = z.strictObject({ v: z.literal(1), s: z.string(), a: z.string().optional(), p: z.union([keysetPosition, transferPosition]) });

export type KeysetPosition = z.infer<typeof keysetPosition>;
export type TransferPosition = z.infer<typeof transferPosition>;
type Position = KeysetPosition | TransferPosition;

export function encodeCursor(scope: CursorScope, position: Position, accountId?: string): string {
  return Buffer.from(JSON.stringify({ v: 1, s: scope, ...(accountId !== undefined ? { a: accountId } : {}), p: position })).toString('base64url');
}

/** The `cursor` query parameter: decoded here, checked against its listing (and account) by `positionOf`. */
export const cursorParam = z
  .string()
  .max(512)
  .regex(/^[A-Za-z0-9_-]+$/, 'a cursor is the next_cursor of an earlier page')
  .transform((text, ctx) => {
    try {
      const parsed = cursorBody.safeParse(JSON.parse(Buffer.from(text, 'base64url').toString('utf8')));
      if (parsed.success) return parsed.data;
    } catch {
      // not JSON: refused below
    }
    ctx.addIssue({ code: 'custom', message: 'not a cursor of this API: pass the next_cursor of an earlier page unchanged' });
    return z.NEVER;
  })
  .optional()
  .describe('next_cursor of the previous page (opaque); omit for the first page');

export type DecodedCursor = z.infer<typeof cursorBody>;

/** The keyset position of a cursor, if it belongs to this listing (and account); otherwise undefined. */
export function keysetOf(cursor: DecodedCursor | undefined, scope: CursorScope, accountId?: string): KeysetPosition | undefined | 'foreign' {
  if (!cursor) return undefined;
  if (cursor.s !== scope || cursor.a !== accountId || !('at' in cursor.p)) return 'foreign';
  return cursor.p;
}

export function transferPositionOf(cursor: DecodedCursor | undefined, scope: CursorScope, accountId: string): TransferPosition | undefined | 'foreign' {
  if (!cursor) return undefined;
  if (cursor.s !== scope || cursor.a !== accountId || !('transfer_id' in cursor.p)) return 'foreign';
  return cursor.p;
}

/** `limit` of a player-facing listing: 1..100, default 20. */
export const pageLimit = z.coerce.number().int().min(1).max(100).default(20).describe('page size, 1-100 (default 20)');

const instant = z.iso.datetime({ offset: true });
export const fromParam = instant.optional().describe('ISO 8601 instant: rows at or after it');
export const toParam = instant.optional().describe('ISO 8601 instant: rows before it (exclusive)');

/** A comma-separated list of statuses (`status=SETTLED,RETURNED`). */
export function statusListParam<S extends readonly [string, ...string[]]>(statuses: S) {
  return z
    .string()
    .transform((text) => [...new Set(text.split(',').map((part) => part.trim()).filter(Boolean))])
    .pipe(z.array(z.enum(statuses)).min(1))
    .optional()
    .describe(`one status or several, comma-separated: ${statuses.join(', ')}`);
}

export const nextCursorBody = z.string().nullable().describe('pass as `cursor` for the next page; null: this is the last page');
