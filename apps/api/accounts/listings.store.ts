/**
 * The SQL of the listings: payouts and deposits from their read models (tables `payouts`, `deposits`), newest
 * first by (requested_at, id), and an account's ledger movements with running balances. Services call these.
 */
import { inTransaction, type Pool } from '../../../lib/db';
import type { Balance } from '../../../ledger';
import type { OperatorFields } from '../common/operator-metadata';
import type { KeysetPosition } from '../common/pagination';
import type { PayoutRow } from '../payouts/payout-saga-kind';
import type { DepositRow } from '../deposits/deposit-saga-kind';

export interface ReadModelFilter {
  accountId?: string;
  statuses?: readonly string[];
  provider?: string;
  stuck?: boolean;
  from?: string;
  to?: string;
  /** The last row of the previous page: this page starts strictly below it. */
  after?: KeysetPosition;
  limit: number;
}

/** A read-model row as listed: its keyset position and the operator's own fields. */
export interface Listed<Row> {
  row: Row;
  position: KeysetPosition;
  operator: OperatorFields;
  /** Payouts only: a workflow task failure is marked for its saga (staff views). */
  workflowTaskFailing: boolean;
}

/** requested_at to the microsecond, in UTC: the cursor compares it back exactly. */
const POSITION_AT = `to_char(t.requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const TABLES = {
  payouts: { id: 'payout_id', failing: `EXISTS (SELECT 1 FROM workflow_task_failures w WHERE w.workflow_id = t.payout_id)` },
  deposits: { id: 'deposit_id', failing: 'false' },
} as const;

async function listReadModel<Row>(pool: Pool, table: keyof typeof TABLES, filter: ReadModelFilter): Promise<Listed<Row>[]> {
  const { id, failing } = TABLES[table]; // identifiers from the constant above, never from a request
  const values: unknown[] = [];
  const param = (value: unknown) => `$${values.push(value)}`;
  const where: string[] = [];
  if (filter.accountId !== undefined) where.push(`t.account_id = ${param(filter.accountId)}`);
  if (filter.statuses?.length) where.push(`t.status = ANY(${param(filter.statuses)}::text[])`);
  if (filter.provider !== undefined) where.push(`t.provider = ${param(filter.provider)}`);
  if (filter.stuck !== undefined) where.push(`t.stuck = ${param(filter.stuck)}`);
  if (filter.from !== undefined) where.push(`t.requested_at >= ${param(filter.from)}::timestamptz`);
  if (filter.to !== undefined) where.push(`t.requested_at < ${param(filter.to)}::timestamptz`);
  // Row comparison: the btree on (account_id | status, requested_at, id) serves it, scanned backwards.
  if (filter.after) where.push(`(t.requested_at, t.${id}) < (${param(filter.after.at)}::timestamptz, ${param(filter.after.id)}::text)`);
  const { rows } = await pool.query<Row & { position_at: string; operator_reference: string | null; operator_metadata: Record<string, string> | null; workflow_task_failing: boolean }>(
    `SELECT t.*, ${POSITION_AT} AS position_at, m.reference AS operator_reference, m.metadata AS operator_metadata, ${failing} AS workflow_task_failing
       FROM ${table} t LEFT JOIN operation_metadata m ON m.resource_id = t.${id}
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY t.requested_at DESC, t.${id} DESC
      LIMIT ${param(filter.limit)}`,
    values,
  );
  return rows.map(({ position_at, operator_reference, operator_metadata, workflow_task_failing, ...row }) => ({
    row: row as unknown as Row,
    position: { at: position_at, id: (row as Record<string, string>)[id]! },
    operator: { ...(operator_reference !== null ? { reference: operator_reference } : {}), ...(operator_metadata !== null ? { metadata: operator_metadata } : {}) },
    workflowTaskFailing: workflow_task_failing,
  }));
}

export const listPayoutRows = (pool: Pool, filter: ReadModelFilter) => listReadModel<PayoutRow>(pool, 'payouts', filter);
export const listDepositRows = (pool: Pool, filter: ReadModelFilter) => listReadModel<DepositRow>(pool, 'deposits', filter);

/** One ledger transfer on the account, with its effect on the account's balance and the balance after it. */
export interface MovementRow {
  id: number;
  kind: 'transfer' | 'hold' | 'post' | 'void' | 'refund';
  idempotency_key: string;
  metadata: Record<string, unknown>;
  created_at: Date;
  /** The account is the transfer's credit side (otherwise its debit side). */
  credit: boolean;
  posted_change: number;
  held_change: number;
  posted_after: number;
  held_after: number;
}

export interface StatementFilter {
  accountId: string;
  afterTransferId?: number;
  from?: string;
  to?: string;
  limit: number;
}

/**
 * The account's movements, oldest first, and its balance, read in one snapshot (REPEATABLE READ), so the
 * balance after the account's latest movement is exactly the balance read with it.
 *
 * Each transfer's effect, as ledger_apply_transfer (migrations/0002) applies it and getBalance reads it:
 * posted = credits posted − debits posted, held = debits pending (credits pending never count for a player).
 * A hold on the account adds its amount to held; its post takes the hold's whole amount off held and its own
 * amount (at most the hold's: the rest is released) off posted; its void takes it off held. A transfer or
 * refund moves posted. The running figures are window sums over the account's whole history, in transfer id
 * order (the order the account's balance row applied them: each takes its lock), then filtered: a page's
 * balances do not depend on the page, the range or the cursor.
 */
export async function accountStatement(pool: Pool, filter: StatementFilter): Promise<{ rows: MovementRow[]; balance: Balance | undefined }> {
  return inTransaction(
    pool,
    async (db) => {
      const values: unknown[] = [filter.accountId];
      const param = (value: unknown) => `$${values.push(value)}`;
      const where: string[] = [];
      if (filter.afterTransferId !== undefined) where.push(`id > ${param(filter.afterTransferId)}`);
      if (filter.from !== undefined) where.push(`created_at >= ${param(filter.from)}::timestamptz`);
      if (filter.to !== undefined) where.push(`created_at < ${param(filter.to)}::timestamptz`);
      const { rows } = await db.query<MovementRow>(
        `WITH moves AS (
           SELECT t.id, t.kind, t.idempotency_key, t.metadata, t.created_at, false AS credit,
                  CASE WHEN t.kind IN ('transfer', 'post', 'refund') THEN -t.amount ELSE 0 END AS posted_change,
                  CASE t.kind WHEN 'hold' THEN t.amount WHEN 'post' THEN -h.amount WHEN 'void' THEN -t.amount ELSE 0 END AS held_change
             FROM ledger_transfers t LEFT JOIN ledger_transfers h ON h.id = t.pending_id
            WHERE t.debit_account_id = $1
           UNION ALL
           SELECT t.id, t.kind, t.idempotency_key, t.metadata, t.created_at, true AS credit,
                  CASE WHEN t.kind IN ('transfer', 'post', 'refund') THEN t.amount ELSE 0 END AS posted_change,
                  0 AS held_change
             FROM ledger_transfers t
            WHERE t.credit_account_id = $1
         ), running AS (
           SELECT moves.*, sum(posted_change) OVER w AS posted_after, sum(held_change) OVER w AS held_after
             FROM moves WINDOW w AS (ORDER BY id ROWS UNBOUNDED PRECEDING)
         )
         SELECT id, kind, idempotency_key, metadata, created_at, credit, posted_change::bigint AS posted_change, held_change::bigint AS held_change,
                posted_after::bigint AS posted_after, held_after::bigint AS held_after
           FROM running
          ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
          ORDER BY id
          LIMIT ${param(filter.limit)}`,
        values,
      );
      const balance = await db.query<Balance>(
        `SELECT account_id, currency, (sum(credits_posted) - sum(debits_posted) - sum(debits_pending))::bigint AS available,
                sum(debits_pending)::bigint AS held, (sum(credits_posted) - sum(debits_posted))::bigint AS posted
           FROM ledger_balances WHERE account_id = $1 GROUP BY account_id, currency`,
        [filter.accountId],
      );
      return { rows, balance: balance.rows[0] };
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
}
