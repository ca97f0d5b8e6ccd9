import { Controller, Get, Inject, Query } from '@nestjs/common';
import { z } from 'zod';
import type { Pool } from '../../../lib/db';
import { Roles } from '../auth/auth';
import { parseOrProblem } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { PG_POOL } from '../tokens';
import { listIncidents } from './ops.stores';

const INCIDENT_KINDS = ['record_mismatch', 'claim_not_confirmed', 'claim_contradicted'] as const;

const listQuery = z.strictObject({
  reference: z.string().min(1).max(255).optional(),
  kind: z.enum(INCIDENT_KINDS).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

const incidentBody = z.object({
  id: z.number().int(),
  saga_kind: z.enum(['payout', 'deposit']),
  reference: z.string().describe('payout_id or deposit_id'),
  kind: z.enum(INCIDENT_KINDS).describe('record_mismatch: the provider record differs from the request; claim_not_confirmed / claim_contradicted: a webhook the record does not bear out'),
  fields: z.array(z.string()).describe('status, amount, currency, destination'),
  expected: z.record(z.string(), z.unknown()),
  observed: z.record(z.string(), z.unknown()),
  event_id: z.string().nullable(),
  created_at: z.string(),
});
const incidentList = z.object({ items: z.array(incidentBody) });

/** Provider claims and records the sagas refused to move money on, newest first, for staff to investigate. */
@Controller('v1/ops/incidents')
@Roles('staff')
export class IncidentsController {
  constructor(@Inject(PG_POOL) private readonly pool: Pool) {}

  @Get()
  async list(@Query() query: unknown): Promise<z.infer<typeof incidentList>> {
    const { reference, kind, limit } = parseOrProblem(listQuery, query ?? {}, 'query');
    return { items: await listIncidents(this.pool, { ...(reference ? { reference } : {}), ...(kind ? { kind } : {}), limit }) };
  }
}

export const incidentRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/incidents',
    query: listQuery,
    summary: 'Provider claims (webhooks) and provider records that disagreed with the source of truth and were not acted on (query: reference, kind, limit)',
    tag: 'ops',
    auth: ['staff'],
    responses: {
      200: { description: 'Incidents, newest first', schema: incidentList },
      400: { description: 'VALIDATION_FAILED' },
      401: { description: 'UNAUTHENTICATED' },
      403: { description: 'FORBIDDEN: staff only' },
    },
  },
];
