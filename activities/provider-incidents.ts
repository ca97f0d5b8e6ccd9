import { createHash } from 'node:crypto';
import { log } from '@temporalio/activity';
import type { Pool } from '../lib/db';
import type { ProviderIncident } from '../contracts/provider-records';

/**
 * Claims and records the sagas refused to act on, written for staff (GET /v1/ops/incidents, the
 * `provider_incidents_open` gauge) and logged as errors. Idempotent: the same saga, kind and observed
 * difference is one row however often the activity is retried or the provider repeats itself.
 */
export function createProviderIncidentActivities(pool: Pool) {
  return {
    async recordProviderIncident(incident: ProviderIncident): Promise<{ recorded: boolean }> {
      const fingerprint = createHash('sha256')
        .update(JSON.stringify([incident.kind, incident.fields, incident.observed, incident.eventId ?? null]))
        .digest('hex');
      const { rowCount } = await pool.query(
        `INSERT INTO provider_incidents (saga_kind, reference, kind, fields, expected, observed, event_id, fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (reference, fingerprint) DO NOTHING`,
        [incident.sagaKind, incident.reference, incident.kind, incident.fields, JSON.stringify(incident.expected), JSON.stringify(incident.observed), incident.eventId ?? null, fingerprint],
      );
      if (rowCount === 1) log.error('provider claim not acted on', { workflowId: incident.reference, incident: incident.kind, fields: incident.fields, eventId: incident.eventId });
      return { recorded: rowCount === 1 };
    },
  };
}
