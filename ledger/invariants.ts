import { inTransaction, type PoolClient } from '../lib/db';
import { isPool, type Queryable } from './db';

export interface InvariantViolation {
  rule: string;
  detail: Record<string, unknown>;
}

export interface InvariantReport {
  ok: boolean;
  violations: InvariantViolation[];
}

/** Violations reported per rule at most; one is enough to fail, a few help to diagnose. */
const LIMIT = 50;

/** Each rule is a query returning one row per violation. */
const RULES: { rule: string; sql: string }[] = [
  {
    // Double entry: per currency, what all accounts were debited equals what they were credited.
    rule: 'currency_sums_to_zero',
    sql: `SELECT currency,
                 (sum(credits_posted) - sum(debits_posted))::text AS posted_sum,
                 (sum(credits_pending) - sum(debits_pending))::text AS pending_sum
            FROM ledger_balances GROUP BY currency
          HAVING sum(credits_posted) <> sum(debits_posted) OR sum(credits_pending) <> sum(debits_pending)`,
  },
  {
    rule: 'balances_equal_transfers',
    sql: `WITH holds AS (
            SELECT h.debit_account_id, h.credit_account_id, h.amount
              FROM ledger_transfers h
             WHERE h.kind = 'hold' AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = h.id)
          ), effects (account_id, debits_pending, debits_posted, credits_pending, credits_posted) AS (
            SELECT debit_account_id, 0, amount, 0, 0 FROM ledger_transfers WHERE kind IN ('transfer', 'post', 'refund')
            UNION ALL SELECT credit_account_id, 0, 0, 0, amount FROM ledger_transfers WHERE kind IN ('transfer', 'post', 'refund')
            UNION ALL SELECT debit_account_id, amount, 0, 0, 0 FROM holds
            UNION ALL SELECT credit_account_id, 0, 0, amount, 0 FROM holds
          ), sums AS (
            SELECT account_id, sum(debits_pending) AS debits_pending, sum(debits_posted) AS debits_posted,
                   sum(credits_pending) AS credits_pending, sum(credits_posted) AS credits_posted
              FROM effects GROUP BY account_id
          ), b AS (
            SELECT account_id, sum(debits_pending) AS debits_pending, sum(debits_posted) AS debits_posted,
                   sum(credits_pending) AS credits_pending, sum(credits_posted) AS credits_posted
              FROM ledger_balances GROUP BY account_id
          )
          SELECT coalesce(b.account_id, s.account_id) AS account_id,
                 b.debits_pending::text AS stored_debits_pending, coalesce(s.debits_pending, 0)::text AS transfers_debits_pending,
                 b.debits_posted::text AS stored_debits_posted, coalesce(s.debits_posted, 0)::text AS transfers_debits_posted,
                 b.credits_pending::text AS stored_credits_pending, coalesce(s.credits_pending, 0)::text AS transfers_credits_pending,
                 b.credits_posted::text AS stored_credits_posted, coalesce(s.credits_posted, 0)::text AS transfers_credits_posted
            FROM b FULL JOIN sums s ON s.account_id = b.account_id
           WHERE b.account_id IS NULL
              OR b.debits_pending <> coalesce(s.debits_pending, 0) OR b.debits_posted <> coalesce(s.debits_posted, 0)
              OR b.credits_pending <> coalesce(s.credits_pending, 0) OR b.credits_posted <> coalesce(s.credits_posted, 0)`,
  },
  {
    // Players (and any account flagged like them) never have a negative available balance.
    rule: 'no_negative_available_balance',
    sql: `SELECT a.id AS account_id, a.kind, (sum(b.credits_posted) - sum(b.debits_posted) - sum(b.debits_pending))::text AS available
            FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id
           WHERE a.debits_must_not_exceed_credits OR a.kind = 'player'
           GROUP BY a.id, a.kind
          HAVING sum(b.credits_posted) - sum(b.debits_posted) - sum(b.debits_pending) < 0`,
  },
  {
    // Each account has slot 0; one that must not overdraw has only slot 0 (so its CHECK sees its whole balance).
    rule: 'balance_slots_complete',
    sql: `SELECT a.id AS account_id, count(b.slot)::int AS slots, bool_or(b.slot = 0) AS has_slot_zero
            FROM ledger_accounts a LEFT JOIN ledger_balances b ON b.account_id = a.id
           GROUP BY a.id, a.debits_must_not_exceed_credits
          HAVING NOT coalesce(bool_or(b.slot = 0), false)
              OR count(b.slot) <> CASE WHEN a.debits_must_not_exceed_credits THEN 1 ELSE ledger_balance_slots() END`,
  },
  {
    rule: 'players_must_not_overdraw',
    sql: `SELECT id AS account_id FROM ledger_accounts WHERE kind = 'player' AND NOT debits_must_not_exceed_credits`,
  },
  {
    rule: 'transfer_currency_matches_accounts',
    sql: `SELECT t.id AS transfer_id, t.currency, d.currency AS debit_currency, c.currency AS credit_currency
            FROM ledger_transfers t
            LEFT JOIN ledger_accounts d ON d.id = t.debit_account_id
            LEFT JOIN ledger_accounts c ON c.id = t.credit_account_id
           WHERE d.currency IS DISTINCT FROM t.currency OR c.currency IS DISTINCT FROM t.currency`,
  },
  {
    // A hold is resolved at most once: never posted twice, voided twice, or both posted and voided.
    rule: 'pending_resolved_at_most_once',
    sql: `SELECT pending_id, array_agg(kind ORDER BY id)::text AS resolutions, array_agg(id ORDER BY id)::text AS transfer_ids
            FROM ledger_transfers WHERE pending_id IS NOT NULL
           GROUP BY pending_id HAVING count(*) > 1`,
  },
  {
    rule: 'resolution_matches_hold',
    sql: `SELECT r.id AS transfer_id, r.kind, r.pending_id, p.kind AS pending_kind, r.amount::text AS amount, p.amount::text AS held
            FROM ledger_transfers r LEFT JOIN ledger_transfers p ON p.id = r.pending_id
           WHERE r.kind IN ('post', 'void')
             AND (p.kind IS DISTINCT FROM 'hold'
                  OR (p.debit_account_id, p.credit_account_id, p.currency) <> (r.debit_account_id, r.credit_account_id, r.currency)
                  OR (r.kind = 'post' AND r.amount > p.amount)
                  OR (r.kind = 'void' AND r.amount <> p.amount))`,
  },
  {
    rule: 'refunds_within_original',
    sql: `SELECT o.id AS transfer_id, o.kind, o.amount::text AS amount, sum(r.amount)::text AS refunded,
                 bool_or((r.debit_account_id, r.credit_account_id, r.currency) <> (o.credit_account_id, o.debit_account_id, o.currency)) AS not_reversed
            FROM ledger_transfers r JOIN ledger_transfers o ON o.id = r.refund_of_id
           WHERE r.kind = 'refund'
           GROUP BY o.id, o.kind, o.amount
          HAVING sum(r.amount) > o.amount OR o.kind NOT IN ('transfer', 'post')
              OR bool_or((r.debit_account_id, r.credit_account_id, r.currency) <> (o.credit_account_id, o.debit_account_id, o.currency))`,
  },
  {
    // Transactional outbox: every transfer written since the outbox exists has its event (at most one is a
    // UNIQUE constraint), naming the same command.
    rule: 'transfer_has_outbox_event',
    sql: `SELECT t.id AS transfer_id, t.kind, e.event_id::text AS event_id
            FROM ledger_transfers t LEFT JOIN outbox_events e ON e.transfer_id = t.id
           WHERE t.id > coalesce((SELECT last_transfer_id_before FROM outbox_origin), 0)
             AND (e.id IS NULL OR e.idempotency_key <> t.idempotency_key)`,
  },
];

export const INVARIANT_RULES: readonly string[] = RULES.map((r) => r.rule);

/**
 * Verifies the ledger's money invariants over the whole database. Given a pool, it reads one
 * consistent snapshot (REPEATABLE READ, read-only), so concurrent writers cannot cause false alarms.
 * Given a client, it runs inside that client's current transaction.
 */
export async function checkInvariants(db: Queryable): Promise<InvariantReport> {
  if (!isPool(db)) return runRules(db);
  return inTransaction(db, runRules, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
}

async function runRules(client: PoolClient): Promise<InvariantReport> {
  const violations: InvariantViolation[] = [];
  for (const { rule, sql } of RULES) {
    const { rows } = await client.query<Record<string, unknown>>(`${sql} LIMIT ${LIMIT}`);
    for (const detail of rows) violations.push({ rule, detail });
  }
  return { ok: violations.length === 0, violations };
}
