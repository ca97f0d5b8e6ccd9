import type { Pool } from '../../../lib/db';

/** What the inbox knows of a delivered event once it is stored. */
export interface StoredEvent {
  /** Received before (same provider and event id). */
  duplicate: boolean;
  /** Already signalled to its saga. */
  signalled: boolean;
  /** The body is the one first received under this event id. */
  sameBody: boolean;
}

/** The webhook inbox (table `webhook_events`): every verified provider event, once per provider event id. */
export class WebhookEventStore {
  constructor(private readonly pool: Pool) {}

  /** Stores the event unless its id was received before, and answers what the inbox knew of it. */
  async store(provider: string, event: { id: string; type: string; reference: string }, payload: string): Promise<StoredEvent> {
    const inserted = await this.pool.query(
      `INSERT INTO webhook_events (provider, event_id, event_type, reference, payload) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (provider, event_id) DO NOTHING`,
      [provider, event.id, event.type, event.reference, payload],
    );
    const { rows } = await this.pool.query<{ signalled: boolean; same: boolean }>(
      'SELECT signalled_at IS NOT NULL AS signalled, payload = $3::jsonb AS same FROM webhook_events WHERE provider = $1 AND event_id = $2',
      [provider, event.id, payload],
    );
    return { duplicate: inserted.rowCount === 0, signalled: rows[0]?.signalled === true, sameBody: rows[0]?.same !== false };
  }

  async countConflictingDelivery(provider: string, eventId: string): Promise<void> {
    await this.pool.query('UPDATE webhook_events SET conflicting_deliveries = conflicting_deliveries + 1 WHERE provider = $1 AND event_id = $2', [provider, eventId]);
  }

  async markSignalled(provider: string, eventId: string): Promise<void> {
    await this.pool.query('UPDATE webhook_events SET signalled_at = now() WHERE provider = $1 AND event_id = $2 AND signalled_at IS NULL', [provider, eventId]);
  }

  /** Whether the read model knows the reference as a payout or deposit (a saga that ran and closed). */
  async knows(kind: 'payout' | 'deposit', reference: string): Promise<boolean> {
    const sql = kind === 'payout' ? 'SELECT 1 FROM payouts WHERE payout_id = $1' : 'SELECT 1 FROM deposits WHERE deposit_id = $1';
    return (await this.pool.query(sql, [reference])).rowCount === 1;
  }
}
