import { v5 as uuidV5 } from 'uuid';
import type { PoolClient } from '../lib/db';
import type { Metadata, Transfer, TransferKind } from './types';

/**
 * Transactional outbox, writer side: the event every new ledger transfer publishes, inserted in the
 * transfer's own transaction (so an event exists iff its transfer committed). The type comes from the
 * transfer kind and the saga metadata: payout steps (metadata.payout_id) map by kind, a deposit credit
 * (metadata.deposit_id, step 'credit') is `deposit.credited`, its chargeback (step 'chargeback') `deposit.reversed`,
 * a debt repaid from a player's balance (step 'debt_collected') `debt.collected`; anything else is `ledger.transfer_posted`
 * (its payload's transfer.kind says what it was). Payload changes that break consumers bump the version.
 */
export const OUTBOX_SCHEMA_VERSION = 1;

export const OUTBOX_EVENT_TYPES = ['payout.held', 'payout.settled', 'payout.released', 'payout.refunded', 'deposit.credited', 'deposit.reversed', 'debt.collected', 'ledger.transfer_posted'] as const;
export type OutboxEventType = (typeof OUTBOX_EVENT_TYPES)[number];

const PAYOUT_EVENT_BY_KIND: Partial<Record<TransferKind, OutboxEventType>> = {
  hold: 'payout.held',
  post: 'payout.settled',
  void: 'payout.released', // failed or cancelled
  refund: 'payout.refunded',
};

export interface OutboxEventPayload {
  event_id: string;
  type: OutboxEventType;
  schema_version: number;
  occurred_at: string;
  account_id: string;
  idempotency_key: string;
  transfer: {
    id: number;
    kind: TransferKind;
    amount: { minor_units: number; currency: string };
    debit_account_id: string;
    credit_account_id: string;
    pending_id?: number;
    refund_of_id?: number;
  };
  payout_id?: string;
  deposit_id?: string;
  /** The operator's own reference and metadata of that payout or deposit (table operation_metadata), when it gave them. */
  reference?: string;
  metadata?: Record<string, string>;
}

/** What the operator attached to the payout or deposit on its request (see insertOutboxEvent). */
export interface OperatorFields {
  reference?: string;
  metadata?: Record<string, string>;
}

export function eventTypeOf(kind: TransferKind, metadata: Metadata): OutboxEventType {
  if (typeof metadata.payout_id === 'string') return PAYOUT_EVENT_BY_KIND[kind] ?? 'ledger.transfer_posted';
  if (kind === 'transfer' && typeof metadata.deposit_id === 'string') {
    if (metadata.step === 'credit') return 'deposit.credited';
    if (metadata.step === 'chargeback') return 'deposit.reversed';
    if (metadata.step === 'debt_collected') return 'debt.collected';
  }
  return 'ledger.transfer_posted';
}

/** The namespace of event ids (RFC 9562 name-based, SHA-1): fixed, so a transfer's event id never changes. */
const EVENT_ID_NAMESPACE = 'f3b1c9d2-6a4e-4c1b-9e57-2d8a0c6b4f10';

/**
 * A transfer's event id, derived from its idempotency key (unique in the ledger) rather than drawn at random: a
 * transfer made again under the same key, as after a failover to a standby that never saw the first one, publishes
 * the same event id, so consumers deduplicating by event id (webhook-id) apply it once.
 */
export function outboxEventIdOf(transferIdempotencyKey: string): string {
  return uuidV5(transferIdempotencyKey, EVENT_ID_NAMESPACE);
}

/** The event of a transfer; accountId is its ordering key (see insertOutboxEvent). */
export function buildOutboxEvent(transfer: Transfer, accountId: string, eventId: string = outboxEventIdOf(transfer.idempotencyKey), operator: OperatorFields = {}): OutboxEventPayload {
  const { metadata } = transfer;
  return {
    event_id: eventId,
    type: eventTypeOf(transfer.kind, metadata),
    schema_version: OUTBOX_SCHEMA_VERSION,
    occurred_at: transfer.createdAt,
    account_id: accountId,
    idempotency_key: transfer.idempotencyKey,
    transfer: {
      id: transfer.id,
      kind: transfer.kind,
      amount: { minor_units: transfer.amount, currency: transfer.currency },
      debit_account_id: transfer.debitAccountId,
      credit_account_id: transfer.creditAccountId,
      ...(transfer.pendingId !== null ? { pending_id: transfer.pendingId } : {}),
      ...(transfer.refundOfId !== null ? { refund_of_id: transfer.refundOfId } : {}),
    },
    ...(typeof metadata.payout_id === 'string' ? { payout_id: metadata.payout_id } : {}),
    ...(typeof metadata.deposit_id === 'string' ? { deposit_id: metadata.deposit_id } : {}),
    ...(operator.reference !== undefined ? { reference: operator.reference } : {}),
    ...(operator.metadata !== undefined ? { metadata: operator.metadata } : {}),
  };
}

/**
 * Inserts the transfer's event; runs inside the ledger command's transaction, right after the transfer.
 * The ordering key is the player side of the transfer (a player's receivable counts as its player; else the
 * debit account). The transaction-scoped
 * advisory lock on it makes event ids of one account follow commit order: a later writer for the account
 * takes its id only after the earlier one committed, so the publisher never sees event n+1 of an account
 * without event n. (Player balance rows are locked here already; the lock matters for system accounts.)
 * Whoever holds this lock only commits next, so it cannot take part in a deadlock.
 * The operator's fields of the transfer's payout or deposit come in the same round trip (written by the API
 * before its saga started, so before any of its transfers).
 */
export async function insertOutboxEvent(db: PoolClient, transfer: Transfer): Promise<OutboxEventPayload> {
  const { payout_id: payoutId, deposit_id: depositId } = transfer.metadata;
  const operationId = typeof payoutId === 'string' ? payoutId : typeof depositId === 'string' ? depositId : null;
  const { rows } = await db.query<{ account_id: string; reference: string | null; operator_metadata: Record<string, string> | null }>(
    `SELECT o.account_id, m.reference, m.metadata AS operator_metadata
       FROM (SELECT CASE WHEN d.kind = 'player' THEN d.id WHEN c.kind = 'player' THEN c.id
                         WHEN d.kind = 'player_receivable' THEN substr(d.id, length('system:receivable:') + 1)
                         ELSE d.id END AS account_id
               FROM ledger_accounts d, ledger_accounts c
              WHERE d.id = $1 AND c.id = $2) o
       CROSS JOIN pg_advisory_xact_lock(hashtextextended('outbox:' || o.account_id, 7))
       LEFT JOIN operation_metadata m ON m.resource_id = $3::text`,
    [transfer.debitAccountId, transfer.creditAccountId, operationId],
  );
  const row = rows[0];
  const accountId = row?.account_id;
  if (!accountId) throw new Error(`ledger: accounts of transfer ${transfer.id} cannot be read for its outbox event`);
  const operator = { ...(row.reference !== null ? { reference: row.reference } : {}), ...(row.operator_metadata !== null ? { metadata: row.operator_metadata } : {}) };
  const event = buildOutboxEvent(transfer, accountId, undefined, operator);
  await db.query(
    `INSERT INTO outbox_events (event_id, event_type, schema_version, account_id, idempotency_key, transfer_id, payload)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [event.event_id, event.type, event.schema_version, event.account_id, event.idempotency_key, transfer.id, JSON.stringify(event)],
  );
  return event;
}
