import { randomBytes } from 'node:crypto';

/** The resources the sandbox exposes, as they appear in responses and in webhook `data.object`. */
export interface Money {
  minor_units: number;
  currency: string;
}

export type Destination = { method: 'bank_transfer'; iban: string } | { method: 'card'; token: string } | { method: 'ewallet'; wallet_id: string };

/** What leaves the sandbox about a destination: the method and the last 4 characters, never the full value. */
export interface MaskedDestination {
  method: Destination['method'];
  last4: string;
}

export type PayoutStatus = 'pending' | 'settled' | 'failed' | 'returned';
/** reversed: a succeeded deposit charged back (the full amount), the only way out of succeeded. */
export type DepositStatus = 'pending' | 'succeeded' | 'failed' | 'reversed';

export interface Payout {
  id: string;
  object: 'payout';
  reference: string;
  status: PayoutStatus;
  amount: Money;
  destination: MaskedDestination;
  metadata?: Record<string, unknown>;
  failure_code?: string;
  return_reason?: string;
  created_at: string;
  updated_at: string;
  settled_at?: string;
  failed_at?: string;
  returned_at?: string;
}

export interface Deposit {
  id: string;
  object: 'deposit';
  reference: string;
  status: DepositStatus;
  amount: Money;
  checkout_url: string;
  metadata?: Record<string, unknown>;
  failure_code?: string;
  created_at: string;
  updated_at: string;
  succeeded_at?: string;
  failed_at?: string;
  /** When a succeeded deposit was reversed (charged back), and why (e.g. `chargeback`). */
  reversed_at?: string;
  reversal_reason?: string;
}

export type WebhookEventType = 'payout.settled' | 'payout.failed' | 'payout.returned' | 'deposit.succeeded' | 'deposit.failed' | 'deposit.reversed';

export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  created_at: string;
  data: { object: Payout | Deposit };
}

export function randomId(prefix: 'po' | 'dp' | 'evt'): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

export function lastFour(value: string): string {
  return value.replace(/\s+/g, '').slice(-4);
}

export function maskDestination(destination: Destination): MaskedDestination {
  switch (destination.method) {
    case 'bank_transfer':
      return { method: 'bank_transfer', last4: lastFour(destination.iban) };
    case 'card':
      return { method: 'card', last4: lastFour(destination.token) };
    case 'ewallet':
      return { method: 'ewallet', last4: lastFour(destination.wallet_id) };
  }
}

/** A deep copy: events and idempotent replays must show the object as it was, not as it becomes. */
export function snapshot<T>(value: T): T {
  return structuredClone(value);
}

export { isValidIban } from '../../lib/iban';
