import { Body, Controller, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Ledger } from '../../../ledger';
import { inTransaction, type Pool } from '../../../lib/db';
import { accountIdSchema } from '../accounts/accounts.schemas';
import { Roles } from '../auth/auth';
import { parseOrProblem, ProblemError } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { LEDGER, PG_POOL } from '../tokens';
import { appendAudit, setAccountStatus } from './ops.stores';

const statusChange = z.strictObject({ reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000) });
const statusBody = z.object({ account_id: z.string(), status: z.enum(['active', 'frozen']), reason: z.string(), changed_by: z.string(), changed_at: z.string() });

/**
 * Finance staff freeze an account (its new payouts are declined at authorization with ACCOUNT_NOT_ACTIVE)
 * and unfreeze it. Payouts already held or submitted go on. Every change is audited.
 */
@Controller('v1/ops/accounts')
@Roles('staff')
export class AccountsOpsController {
  constructor(
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(LEDGER) private readonly ledger: Ledger,
  ) {}

  @Post(':accountId/freeze')
  @HttpCode(200)
  freeze(@Param('accountId') accountId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    return this.change(accountId, 'frozen', body, request);
  }

  @Post(':accountId/unfreeze')
  @HttpCode(200)
  unfreeze(@Param('accountId') accountId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    return this.change(accountId, 'active', body, request);
  }

  private async change(accountId: string, status: 'active' | 'frozen', body: unknown, request: FastifyRequest) {
    const id = parseOrProblem(accountIdSchema, accountId, 'path');
    const { reason } = parseOrProblem(statusChange, body);
    if (!(await this.ledger.getAccount(id))) throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${id}`);
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    const row = await inTransaction(this.pool, async (db) => {
      const changed = await setAccountStatus(db, id, status, reason, actor);
      await appendAudit(db, { actor, action: status === 'frozen' ? 'account:freeze' : 'account:unfreeze', target: id, reason, request: { reason }, outcome: 'applied', detail: `now ${status}` });
      return changed;
    });
    return statusBody.parse({ ...row, changed_at: row.changed_at.toISOString() });
  }
}

export const accountsOpsRoutes: RouteDoc[] = (['freeze', 'unfreeze'] as const).map((action) => ({
  method: 'post' as const,
  path: `/v1/ops/accounts/:accountId/${action}`,
  summary: action === 'freeze' ? 'Freeze an account: its new payouts are declined (ACCOUNT_NOT_ACTIVE); audited' : 'Unfreeze an account; audited',
  tag: 'ops',
  auth: ['staff'],
  body: statusChange,
  responses: { 200: { description: 'The account status', schema: statusBody }, 404: { description: 'ACCOUNT_NOT_FOUND' } },
}));
