import { Controller, Get, Inject } from '@nestjs/common';
import { z } from 'zod';
import { latestReconciliation, type ReconciliationRun } from '../../../lib/reconciliation-runs';
import type { Pool } from '../../../lib/db';
import { MISMATCH_KINDS } from '../../../contracts/reconciliation';
import { Roles } from '../auth/auth';
import { ProblemError } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { PG_POOL } from '../tokens';

const money = z.object({ minor_units: z.number().int(), currency: z.string() });
const providerItem = z.object({
  id: z.string(),
  kind: z.enum(['payout', 'deposit']),
  reference: z.string(),
  amount: money,
  status: z.string(),
  settled_at: z.string().optional(),
  returned_at: z.string().optional(),
  failure_code: z.string().optional(),
  return_reason: z.string().optional(),
  source: z.enum(['report', 'lookup']),
});
const ledgerFact = z.object({ transfer_id: z.number().int(), kind: z.string(), step: z.string().nullable(), amount: z.number().int(), currency: z.string(), created_at: z.string() });
const mismatch = z.object({
  kind: z.enum(MISMATCH_KINDS),
  item_kind: z.enum(['payout', 'deposit']).nullable().describe('null for ledger_invariant'),
  reference: z.string().describe('payout_id / deposit_id (`<payout id>@<provider>` for an earlier attempt of a payout that moved to another provider), or the invariant rule'),
  provider: z.string().nullable().describe('the provider whose record this finding is about; null for ledger_invariant'),
  provider_item: providerItem.nullable(),
  ledger_facts: z.union([z.array(ledgerFact), z.record(z.string(), z.unknown())]).describe("the reference's ledger transfers, or the invariant violation's detail"),
  detail: z.string(),
  recorded_at: z.string(),
});
const countsByKind = z.object(Object.fromEntries(MISMATCH_KINDS.map((k) => [k, z.number().int()])) as Record<(typeof MISMATCH_KINDS)[number], z.ZodNumber>);
export const reconciliationRunBody = z.object({
  run_id: z.string().describe('<workflow id>/<run id>'),
  workflow_id: z.string(),
  status: z.enum(['clean', 'mismatches']),
  window: z.object({ since: z.string(), until: z.string() }).describe('covered window [since, until): until is the action time minus the grace period'),
  action_time: z.string(),
  grace_seconds: z.number().int(),
  scope: z.array(z.string()).nullable().describe('null for a full (scheduled) run; the references a scoped run compared'),
  started_at: z.string(),
  finished_at: z.string(),
  counts: z.object({ provider_items: z.number().int(), ledger_movements: z.number().int(), looked_up: z.number().int(), carried_over: z.number().int(), mismatches: z.number().int() }),
  by_kind: countsByKind,
  by_provider: z
    .record(z.string(), z.object({ provider_items: z.number().int(), looked_up: z.number().int(), mismatches: z.number().int() }))
    .describe("each provider reconciled against its own settlement report: its report's items, references looked up there, findings about it"),
  invariant_violations: z.array(z.object({ rule: z.string(), detail: z.record(z.string(), z.unknown()) })),
  mismatches: z.array(mismatch),
});

/** The latest finished reconciliation run, or RECONCILIATION_NOT_FOUND before the first one. */
export async function latestReconciliationOrProblem(pool: Pool): Promise<ReconciliationRun> {
  const run = await latestReconciliation(pool);
  if (!run) throw new ProblemError('RECONCILIATION_NOT_FOUND', 'No reconciliation run has finished yet');
  return run;
}

/** Finance staff's view of reconciliation: what the last run compared and every mismatch it recorded. */
@Controller('v1/ops/reconciliation')
@Roles('staff')
export class ReconciliationController {
  constructor(@Inject(PG_POOL) private readonly pool: Pool) {}

  @Get('latest')
  latest(): Promise<ReconciliationRun> {
    return latestReconciliationOrProblem(this.pool);
  }
}

export const reconciliationRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/reconciliation/latest',
    summary: "The latest finished reconciliation run (ledger invariants and the provider's settlement report against the ledger) with its mismatches",
    tag: 'ops',
    auth: ['staff'],
    responses: {
      200: { description: 'The run and every mismatch it recorded', schema: reconciliationRunBody },
      401: { description: 'UNAUTHENTICATED' },
      403: { description: 'FORBIDDEN: staff only' },
      404: { description: 'RECONCILIATION_NOT_FOUND: no run has finished yet' },
    },
  },
];
