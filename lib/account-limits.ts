import type { Queryable } from '../ledger/db';
import { limitInMinorUnits, type MoneyLimits } from './limits';

/**
 * One account's money limits: the global defaults (EUR-equivalent, converted to its currency) with what
 * finance staff set for that account on top (table account_limits, in its own currency). Amounts are
 * minor units; `payout_hourly_max_count` is a count.
 */
export const LIMIT_FIELDS = ['payout_max', 'payout_daily_max', 'payout_hourly_max_count', 'deposit_max', 'deposit_daily_max', 'max_balance'] as const;
export type LimitField = (typeof LIMIT_FIELDS)[number];
export type AccountLimits = Record<LimitField, number>;

/** The column of each field in account_limits. */
const COLUMN: Record<LimitField, string> = {
  payout_max: 'payout_max_minor',
  payout_daily_max: 'payout_daily_max_minor',
  payout_hourly_max_count: 'payout_hourly_max_count',
  deposit_max: 'deposit_max_minor',
  deposit_daily_max: 'deposit_daily_max_minor',
  max_balance: 'max_balance_minor',
};

export interface AccountLimitOverrides {
  values: Partial<AccountLimits>;
  reason: string;
  changedBy: string;
  changedAt: Date;
}

export function defaultLimits(limits: MoneyLimits, currency: string): AccountLimits {
  const minor = (eurMajor: number) => limitInMinorUnits(eurMajor, currency, limits.rates);
  return {
    payout_max: minor(limits.payoutMaxAmount),
    payout_daily_max: minor(limits.payoutDailyMaxAmount),
    payout_hourly_max_count: limits.payoutHourlyMaxCount,
    deposit_max: minor(limits.depositMaxAmount),
    deposit_daily_max: minor(limits.depositDailyMaxAmount),
    max_balance: minor(limits.accountMaxBalance),
  };
}

export async function readLimitOverrides(db: Queryable, accountId: string): Promise<AccountLimitOverrides | undefined> {
  const { rows } = await db.query<Record<string, string | number | null> & { reason: string; changed_by: string; changed_at: Date }>('SELECT * FROM account_limits WHERE account_id = $1', [accountId]);
  const row = rows[0];
  if (!row) return undefined;
  const values: Partial<AccountLimits> = {};
  for (const field of LIMIT_FIELDS) if (row[COLUMN[field]] !== null) values[field] = Number(row[COLUMN[field]]);
  return { values, reason: row.reason, changedBy: row.changed_by, changedAt: row.changed_at };
}

/** The limits that apply to this account now. */
export async function limitsOfAccount(db: Queryable, limits: MoneyLimits, accountId: string, currency: string): Promise<AccountLimits> {
  return { ...defaultLimits(limits, currency), ...(await readLimitOverrides(db, accountId))?.values };
}

/** Sets some of an account's limits (`null`: back to the default), leaving the others as they are. */
export async function setLimitOverrides(db: Queryable, accountId: string, changes: Partial<Record<LimitField, number | null>>, changedBy: string, reason: string): Promise<void> {
  const fields = LIMIT_FIELDS.filter((field) => changes[field] !== undefined);
  const columns = fields.map((field) => COLUMN[field]);
  await db.query(
    `INSERT INTO account_limits (account_id, reason, changed_by, changed_at${columns.map((c) => `, ${c}`).join('')})
     VALUES ($1, $2, $3, now()${fields.map((_, i) => `, $${i + 4}`).join('')})
     ON CONFLICT (account_id) DO UPDATE SET reason = EXCLUDED.reason, changed_by = EXCLUDED.changed_by, changed_at = EXCLUDED.changed_at${columns.map((c) => `, ${c} = EXCLUDED.${c}`).join('')}`,
    [accountId, reason, changedBy, ...fields.map((field) => changes[field])],
  );
}
