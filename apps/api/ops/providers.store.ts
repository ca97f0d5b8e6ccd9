import type { Pool, PoolClient } from '../../../lib/db';

/** Staff's switches of the providers (table provider_controls); a provider without a row is enabled. */
export interface ProviderControlRow {
  provider: string;
  enabled: boolean;
  reason: string;
  actor: string;
  updated_at: Date;
}

export async function listProviderControls(db: Pool | PoolClient): Promise<Map<string, ProviderControlRow>> {
  const { rows } = await db.query<ProviderControlRow>('SELECT provider, enabled, reason, actor, updated_at FROM provider_controls');
  return new Map(rows.map((r) => [r.provider, r]));
}

export async function setProviderControl(db: PoolClient, provider: string, enabled: boolean, reason: string, actor: string): Promise<void> {
  await db.query(
    `INSERT INTO provider_controls (provider, enabled, reason, actor) VALUES ($1, $2, $3, $4)
     ON CONFLICT (provider) DO UPDATE SET enabled = excluded.enabled, reason = excluded.reason, actor = excluded.actor, updated_at = now()`,
    [provider, enabled, reason, actor],
  );
}
